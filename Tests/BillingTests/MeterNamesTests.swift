import BillingTestSupport
import Testing
import Wire

@testable import Billing

/// `Subscription.meterNames`, the list a meter is found by, shared between subscriptions; the
/// record's `meterHint` that reading ahead finds it with; and the pending slots' stored hash.
@Suite("Finding a subscription's meters")
struct MeterNamesTests {
    static let dimensions: JSONValue = [
        "cpu": Messages.simple("cpu", included: .number("3")), "gb": Messages.waterfall([("gb-1", "5"), ("gb-2", "10")]),
    ]

    static func names(_ state: PartitionState, _ key: String) -> [String] { state.subscriptions[key]!.meterNames }
    static func meters(_ state: PartitionState, _ key: String) -> [String] { state.subscriptions[key]!.meters.map(\.name) }
    static func storage(_ names: [String]) -> UnsafeRawPointer? { names.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) } }

    /// A fold of `count` purchases, `s-0`, `s-1`…, of the plan of `dimensions`.
    static func bought(_ count: Int) -> Fold {
        var fold = Fold()
        for index in 0..<count {
            fold.apply(
                Messages.purchase("s-\(index)", start: "2024-01-01T00:00:00Z", dimensions: Self.dimensions), at: "2024-02-01T00:00:00Z")
        }
        return fold
    }

    @Test("subscriptions bought under one plan share one list of their meters' names, in the meters' order")
    func purchasesShareTheirNames() {
        var fold = Self.bought(3)
        fold.apply(
            Messages.purchase("other", start: "2024-01-01T00:00:00Z", dimensions: ["disk": Messages.simple("disk")]),
            at: "2024-02-01T00:00:00Z")
        for index in 0..<3 { #expect(Self.names(fold.state, "s-\(index)") == Self.meters(fold.state, "s-\(index)")) }
        #expect(Self.storage(Self.names(fold.state, "s-0")) == Self.storage(Self.names(fold.state, "s-1")))
        #expect(Self.storage(Self.names(fold.state, "s-0")) == Self.storage(Self.names(fold.state, "s-2")))
        #expect(Self.names(fold.state, "other") == ["disk"])
        #expect(fold.state.sharedMeterNames.count == 2)
    }

    @Test("subscriptions bought under one plan share one copy of each waterfall meter's tiers")
    func purchasesShareTheirTiers() throws {
        let fold = Self.bought(3)
        func tiers(_ key: String) -> [Meter.Tier]? {
            for meter in fold.state.subscriptions[key]!.meters { if case .waterfall(let tiers) = meter.rule { return tiers } }
            return nil
        }
        let first = try #require(tiers("s-0"))
        #expect(first.map(\.dimension) == ["gb-1", "gb-2"])
        for index in 1..<3 {
            let other = try #require(tiers("s-\(index)"))
            #expect(other == first)
            #expect(other.withUnsafeBufferPointer { $0.baseAddress } == first.withUnsafeBufferPointer { $0.baseAddress })
        }
        let restored = try PartitionState(binarySnapshot: fold.state.binarySnapshot())
        #expect(restored == fold.state)
        #expect(restored.sharedTiers.count == 1)
    }

    @Test("a plan change and a purchase after a deletion give the subscription its new meters' names")
    func namesFollowTheMeters() {
        var fold = Fold()
        fold.apply(Messages.purchase("s-1", start: "2024-01-01T00:00:00Z", dimensions: Self.dimensions), at: "2024-02-01T00:00:00Z")
        fold.apply(
            Messages.planChange("s-1", planId: "bigger", dimensions: ["disk": Messages.simple("disk"), "cpu": Messages.simple("cpu")]),
            at: "2024-02-01T01:00:00Z")
        #expect(Self.names(fold.state, "s-1") == Self.meters(fold.state, "s-1"))
        #expect(Set(Self.names(fold.state, "s-1")) == ["disk", "cpu"])
        fold.apply(Messages.usage("s-1", "disk", "4"), at: "2024-02-01T01:10:00Z")
        #expect(fold.state.unprocessable.count == 0, "usage of the new meter is billed")
        fold.apply(Messages.deletion("s-1"), at: "2024-02-01T02:00:00Z")
        fold.apply(
            Messages.purchase("s-1", start: "2024-02-02T00:00:00Z", dimensions: ["net": Messages.simple("net")]), at: "2024-02-02T00:00:00Z"
        )
        #expect(Self.names(fold.state, "s-1") == Self.meters(fold.state, "s-1"))
    }

    @Test("a restored snapshot's subscriptions share their names again")
    func restoredStatesShare() throws {
        let fold = Self.bought(2)
        let restored = try PartitionState(binarySnapshot: fold.state.binarySnapshot())
        #expect(Self.names(restored, "s-0") == Self.meters(restored, "s-0"))
        #expect(Self.storage(Self.names(restored, "s-0")) == Self.storage(Self.names(restored, "s-1")))
    }

    @Test("the shared lists stop at their limit; a subscription past it keeps its own list and is billed")
    func sharedListsAreBounded() {
        var fold = Fold()
        let count = PartitionState.sharedListsLimit + 5
        for index in 0..<count {
            fold.apply(
                Messages.purchase("s-\(index)", start: "2024-01-01T00:00:00Z", dimensions: ["m-\(index)": Messages.simple("d")]),
                at: "2024-02-01T00:00:00Z")
        }
        #expect(fold.state.sharedMeterNames.count == PartitionState.sharedListsLimit)
        let last = "s-\(count - 1)"
        #expect(Self.names(fold.state, last) == ["m-\(count - 1)"])
        fold.apply(Messages.usage(last, "m-\(count - 1)", "2"), at: "2024-02-01T00:10:00Z")
        #expect(fold.state.unprocessable.count == 0)
    }

    @Test("a list of names that no longer matches the meters still finds the right meter, or none")
    func staleNamesFallBack() {
        var fold = Fold()
        fold.apply(Messages.purchase("s-1", start: "2024-01-01T00:00:00Z", dimensions: Self.dimensions), at: "2024-02-01T00:00:00Z")
        var subscription = fold.state.subscriptions["s-1"]!
        let meters = subscription.meters.map(\.name)
        for stale in [[String](), meters.reversed(), ["gb"], ["x", "y"], meters + ["extra"]] {
            subscription.meterNames = stale
            for name in meters + ["unknown"] {
                #expect(subscription.meterIndex(named: name) == meters.firstIndex(of: name), "\(stale), \(name)")
            }
        }
    }

    @Test("a usage record's meter hint is the same for equal names and differs for other names")
    func meterHints() {
        func record(_ meter: String) -> BillingRecord {
            BillingRecord(
                partition: 0, sequence: 1, enqueuedTime: at("2024-02-01T00:00:00Z"),
                message: try! Message.decode(Messages.usage("s", meter, "1")).get())
        }
        let names = ["cpu", "gb", "nodecount1", "nodecount2", "a-name-of-15-by", "a"]
        let hints = names.map { record($0).meterHint }
        #expect(Set(hints).count == names.count)
        #expect(!hints.contains(0))
        for (name, hint) in zip(names, hints) {
            #expect(BillingRecord.meterHint(String(decoding: Array(name.utf8), as: UTF8.self)) == hint, "\(name)")
        }
        #expect(record("cpu").meterHint == record("cpu").meterHint)
        #expect(
            BillingRecord(
                partition: 0, sequence: 1, enqueuedTime: at("2024-02-01T00:00:00Z"),
                message: try! Message.decode(Messages.deletion("s")).get()
            ).meterHint == 0)
    }

    @Test("reading ahead finds the position of the record's meter in a subscription in place, or none")
    func meterFoundInPlace() {
        var fold = Fold()
        fold.apply(Messages.purchase("s-1", start: "2024-01-01T00:00:00Z", dimensions: Self.dimensions), at: "2024-02-01T00:00:00Z")
        var subscription = fold.state.subscriptions["s-1"]!
        let names = subscription.meterNames
        withUnsafePointer(to: &subscription) { pointer in
            let raw = UnsafeRawPointer(pointer)
            for (position, name) in names.enumerated() {
                #expect(PartitionState.meter(BillingRecord.meterHint(name), of: raw) == position, "\(name)")
            }
            #expect(PartitionState.meter(BillingRecord.meterHint("unknown"), of: raw) == nil)
        }
    }

    @Test("pending slots are equal and hash alike exactly when their subscription, dimension and hour are")
    func slotsCompareByTheirParts() {
        let hour = at("2024-02-01T00:00:00Z")
        // Longer than a string holds in itself: the two are distinct copies.
        let name = "a-subscription-named-at-length"
        let slot = PartitionState.Slot(subscription: name, dimension: "cpu", hour: hour)
        let same = PartitionState.Slot(subscription: String(decoding: Array(name.utf8), as: UTF8.self), dimension: "cpu", hour: hour)
        #expect(slot == same)
        #expect(slot.hashValue == same.hashValue)
        let others = [
            PartitionState.Slot(subscription: "s-2", dimension: "cpu", hour: hour),
            PartitionState.Slot(subscription: name, dimension: "gb", hour: hour),
            PartitionState.Slot(subscription: name, dimension: "cpu", hour: hour.adding(microseconds: Timestamp.microsecondsPerHour)),
        ]
        for other in others { #expect(slot != other) }
        #expect(Set(others + [slot, same]).count == 4)
    }
}
