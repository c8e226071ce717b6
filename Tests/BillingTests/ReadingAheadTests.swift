import BillingTestSupport
import Testing
import Wire

@testable import Billing

/// `PartitionState.prefetch`: a hint, so folding with it must give exactly what folding without it gives.
@Suite("Reading the records ahead")
struct ReadingAheadTests {
    /// Purchases (one named by its URI only, one renamed to an alias), usage of known and unknown
    /// subscriptions and meters, deletions and removals, over several hours.
    static func log() -> [BillingRecord] {
        var fold = Fold()
        let dimensions: JSONValue = [
            "cpu": Messages.simple("cpu", included: .number("3")), "gb": Messages.waterfall([("gb-1", "5"), ("gb-2", "10")]),
        ]
        for index in 0..<40 {
            fold.apply(
                Messages.purchase("s-\(index)", start: "2024-01-0\(1 + index % 9)T00:00:00Z", dimensions: dimensions),
                at: "2024-02-01T00:00:00Z")
        }
        fold.apply(
            Messages.purchase(nil, resourceUri: "/subscriptions/u-1", start: "2024-01-05T00:00:00Z", dimensions: dimensions),
            at: "2024-02-01T00:00:00Z")
        fold.apply(
            Messages.purchase("s-3", resourceUri: "/subscriptions/alias-3", start: "2024-01-04T00:00:00Z", dimensions: dimensions),
            at: "2024-02-01T00:01:00Z")
        var random: UInt64 = 7
        for index in 0..<2_000 {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let pick = Int(random >> 33)
            let minute = 2 + index / 20
            let time = at("2024-02-01T00:00:00Z").adding(microseconds: Int64(minute) * 60_000_000)
            let message: JSONValue
            switch pick % 23 {
            case 0: message = Messages.usage("nobody-\(pick % 5)", "cpu", "1")
            case 1: message = Messages.usage(nil, resourceUri: "/subscriptions/u-1", "gb", "2.5")
            case 2: message = Messages.usage(nil, resourceUri: "/subscriptions/alias-3", "cpu", "1")
            case 3: message = Messages.usage("s-\(pick % 40)", "no-such-meter", "1")
            case 4 where index % 400 == 4: message = Messages.deletion("s-\(pick % 40)")
            default: message = Messages.usage("s-\(pick % 40)", pick % 2 == 0 ? "cpu" : "gb", "\(pick % 7).25")
            }
            fold.apply(message, at: time)
        }
        return fold.records
    }

    @Test("folding with every step of reading ahead gives the state and effects folding without it gives")
    func sameFold() {
        let records = Self.log()
        var plain = PartitionState(partition: 0)
        plain.effects = []
        var ahead = PartitionState(partition: 0)
        ahead.effects = []
        // Read ahead with a few subscriptions too (by default only from thousands).
        ahead.readAheadFrom = 0
        // Per record, as text in order: hours close in the order of a set, which two states may not share.
        var plainEffects: [[String]] = []
        var aheadEffects: [[String]] = []
        records.withUnsafeBufferPointer { buffer in
            for index in buffer.indices {
                plain.apply(buffer[index])
                plainEffects.append((plain.effects ?? []).map { "\($0)" }.sorted())
                plain.effects = []
                for step in 0..<PartitionState.readAheadSteps {
                    let target = index + PartitionState.readAheadSteps - step
                    if target < buffer.count { ahead.prefetch(buffer.baseAddress! + target, step: step) }
                }
                if index == 0 {
                    for step in 0..<PartitionState.readAheadSteps { ahead.prefetch(buffer.baseAddress!, step: step) }
                }
                ahead.apply(buffer[index])
                aheadEffects.append((ahead.effects ?? []).map { "\($0)" }.sorted())
                ahead.effects = []
            }
        }
        #expect(ahead == plain)
        #expect(aheadEffects.count == plainEffects.count)
        for (index, (one, other)) in zip(aheadEffects, plainEffects).enumerated() where one != other {
            Issue.record("record \(index): \(one) against \(other)")
            break
        }
        #expect(plain.unprocessable.count > 0, "the log has records that cannot be billed")
        #expect(plain.subscriptionCount > 30)
    }

    @Test(
        "a walk gives each element every step, in order, one visit apart, in the `readAheadSteps` visits before its own",
        arguments: [0, 1, 2, 3, 4, 9])
    func stepsOfAWalk(count: Int) {
        var steps: [(element: Int, step: Int, visit: Int)] = []
        for position in 0..<count {
            for (element, step) in PartitionState.stepsAhead(before: position, of: count) { steps.append((element, step, position)) }
        }
        #expect(steps.allSatisfy { $0.element < count && $0.element > $0.visit })
        for element in 0..<count {
            let mine = steps.filter { $0.element == element }
            // Step s before visiting the element `readAheadSteps - s` places behind it, when the walk has it.
            let expected = (0..<PartitionState.readAheadSteps).filter { element - PartitionState.readAheadSteps + $0 >= 0 }
            #expect(mine.map(\.step) == expected, "element \(element)")
            #expect(mine.map(\.visit) == expected.map { element - PartitionState.readAheadSteps + $0 }, "element \(element)")
        }
    }

    /// A fold of one purchase, `s-1`, with one meter, `cpu`.
    static func oneSubscription() -> Fold {
        var fold = Fold()
        fold.apply(
            Messages.purchase("s-1", start: "2024-01-01T00:00:00Z", dimensions: ["cpu": Messages.simple("cpu")]), at: "2024-02-01T00:00:00Z"
        )
        return fold
    }

    @Test("a record carrying the hash of another name still finds its subscription, read ahead or not")
    func wrongHashFallsBack() {
        let fold = Self.oneSubscription()
        var state = fold.state
        state.readAheadFrom = 0
        var usage = BillingRecord(
            partition: 0, sequence: 2, enqueuedTime: at("2024-02-01T00:01:00Z"),
            message: try! Message.decode(Messages.usage("s-1", "cpu", "2")).get())
        #expect(usage.nameHash == DenseTable<String, Subscription>.hash("s-1"))
        var plain = state
        plain.apply(usage)
        usage.nameHash = DenseTable<String, Subscription>.hash("someone-else")
        for step in 0..<PartitionState.readAheadSteps { withUnsafePointer(to: &usage) { state.prefetch($0, step: step) } }
        state.apply(usage)
        #expect(state.unprocessable.count == fold.state.unprocessable.count, "s-1 was found")
        #expect(state == plain)
    }

    @Test("lookups for a read model find a subscription's terms, period and meter from a right hint, a wrong one, or none")
    func hintedLookups() {
        let fold = Self.oneSubscription()
        var state = fold.state
        let right = DenseTable<String, Subscription>.hash("s-1")
        let wrong = DenseTable<String, Subscription>.hash("someone-else")
        for hint in [right, wrong, nil] {
            #expect(state.termsInPlace(ofKey: "s-1", hint: hint)?.planId == state.termsInPlace(ofKey: "s-1")?.planId)
            #expect(state.periodInPlace(ofKey: "s-1", hint: hint) == state.periodInPlace(ofKey: "s-1"))
            #expect(state.meterKind(ofKey: "s-1", meterName: "cpu", hint: hint) == .sum)
            #expect(state.termsInPlace(ofKey: "nobody", hint: hint) == nil)
        }
        #expect(state.periodInPlace(ofKey: "s-1") != nil)
    }

    @Test("a record carries the hash of its usage's resourceId, and 0 when it has none")
    func recordsCarryTheirNamesHash() {
        func record(_ message: JSONValue) -> BillingRecord {
            BillingRecord(partition: 0, sequence: 1, enqueuedTime: at("2024-02-01T00:00:00Z"), message: try! Message.decode(message).get())
        }
        #expect(record(Messages.usage("s-9", "cpu", "1")).nameHash == DenseTable<String, Subscription>.hash("s-9"))
        #expect(record(Messages.usage(nil, resourceUri: "/subscriptions/u-1", "cpu", "1")).nameHash == 0)
        #expect(record(Messages.deletion("s-9")).nameHash == 0)
        #expect(
            record(Messages.purchase("s-9", start: "2024-01-01T00:00:00Z", dimensions: ["cpu": Messages.simple("cpu")])).nameHash == 0)
    }
}
