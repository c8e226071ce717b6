import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Unprocessable records in bounded space")
struct UnprocessableLedgerTests {
    static let start = at("2024-01-10T00:00:00Z")

    /// A fold with one subscription `s` (meter `m`), ready for records that cannot be billed.
    static func bought() -> Fold {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-01-10T00:00:00Z", dimensions: ["m": Messages.simple("dim")]), at: start)
        return fold
    }

    static func groupCounts(_ ledger: UnprocessableLedger) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: ledger.groups.map { ("\($0.subscription ?? "-")/\($0.reason.rawValue)", $0.count) })
    }

    @Test("20,000 records for 1,500 unknown subscriptions are counted exactly in bounded groups and examples; the snapshot does not grow")
    func floodStaysBounded() throws {
        var fold = Self.bought()
        var snapshotSizes: [Int] = []
        for index in 0..<20_000 {
            fold.apply(Messages.usage("ghost-\(index % 1500)", "m", "1"), at: Self.start.adding(microseconds: Int64(index)))
            if index == 4_999 || index == 19_999 { snapshotSizes.append(JSONWriter.bytes(fold.state.snapshot()).count) }
        }
        let ledger = fold.state.unprocessable
        #expect(ledger.count == 20_000)
        #expect(ledger.groups.reduce(0) { $0 + $1.count } == 20_000)
        #expect(ledger.groups.count == UnprocessableLedger.maximumGroups + 1)
        // The first 1,000 names are listed; the other 500 are counted together.
        let unlisted = try #require(ledger.groups.first { $0.subscription == nil })
        #expect(unlisted.reason == .unknownSubscription)
        #expect(unlisted.count == (0..<20_000).filter { $0 % 1500 >= 1000 }.count)
        #expect(ledger.groups.first { $0.subscription == "ghost-7" }?.count == 14)
        #expect(ledger.examples.count == UnprocessableLedger.maximumExamples)
        #expect(ledger.examples.last?.sequence == 20_001)
        #expect(ledger.examples.first?.sequence == 20_001 - UInt64(UnprocessableLedger.maximumExamples) + 1)
        #expect(snapshotSizes[1] < 400_000, "\(snapshotSizes)")
        #expect(snapshotSizes[1] - snapshotSizes[0] < 20_000, "\(snapshotSizes)")
        let restored = try PartitionState(snapshot: fold.state.snapshot())
        #expect(restored == fold.state)
    }

    @Test("a huge event, a long name and a long reason are kept cut down, never whole")
    func largeRecordsAreCut() throws {
        var fold = Self.bought()
        let longName = String(repeating: "n", count: 50_000)
        var properties: [String: String] = [:]
        for index in 0..<200 { properties["key-\(index)"] = String(repeating: "v", count: 500) }
        fold.apply(Messages.usage(longName, "m", "1", properties: properties), at: Self.start)
        fold.apply(Messages.usage("s", String(repeating: "x", count: 5000), "2"), at: Self.start)
        let ledger = fold.state.unprocessable
        #expect(ledger.groups.map(\.subscription) == [nil, "s"])
        let example = try #require(ledger.examples.first)
        #expect(example.event?["truncated"] == true)
        #expect(JSONWriter.bytes(try #require(example.event)).count < UnprocessableLedger.maximumEventBytes)
        #expect(example.reason.utf8.count <= UnprocessableLedger.maximumReasonBytes)
        #expect(ledger.examples.allSatisfy { $0.reason.utf8.count <= UnprocessableLedger.maximumReasonBytes })
        #expect(ledger.groups.allSatisfy { $0.latestReason.utf8.count <= UnprocessableLedger.maximumReasonBytes })
    }

    @Test("records are counted by subscription and reason: unknown subscription, deleted, unknown meter, overflow, unknown deletion")
    func reasons() {
        var fold = Self.bought()
        fold.apply(Messages.usage("nobody", "m", "1"), at: Self.start)
        fold.apply(Messages.usage("s", "other", "1"), at: Self.start)
        fold.apply(Messages.usage("s", "m", Quantity.largest.description), at: Self.start)
        fold.apply(Messages.usage("s", "m", "1"), at: Self.start)
        fold.apply(Messages.deletion("nobody"), at: Self.start)
        fold.apply(Messages.deletion("s"), at: Self.start)
        fold.apply(Messages.usage("s", "m", "1"), at: Self.start)
        #expect(
            Self.groupCounts(fold.state.unprocessable) == [
                "nobody/unknownSubscription": 1, "s/unknownMeter": 1, "s/overflow": 1, "nobody/unknownDeletion": 1,
                "s/deletedSubscription": 1,
            ])
    }

    /// The records a removal leaves, computed the slow way: every record kept whole.
    struct Model {
        var records: [(sequence: UInt64, key: String)] = []
        var counts: [String: Int] { records.reduce(into: [:]) { $0[$1.key, default: 0] += 1 } }
    }

    @Test("removals keep the counts exact when the rule says so, and never below what is really outstanding")
    func removalsAgainstWholeRecords() {
        for seed in UInt64(0)..<30 {
            var generator = SplitMix64(seed: seed)
            var fold = Self.bought()
            var model = Model()
            var inexact = false
            for step in 0..<600 {
                let choice = generator.next() % 100
                if choice < 85 {
                    let name = "g\(generator.next() % 7)"
                    let meter = generator.next() % 2 == 0
                    fold.apply(meter ? Messages.usage("s", name, "1") : Messages.usage(name, "m", "1"), at: Self.start)
                    model.records.append((fold.sequence, meter ? "s/unknownMeter" : "\(name)/unknownSubscription"))
                } else if choice < 93 {
                    let examples = fold.state.unprocessable.examples
                    // A held sequence most of the time, else any.
                    let sequence =
                        generator.next() % 3 != 0
                        ? examples.randomElement(using: &generator)?.sequence ?? 0 : generator.next() % (fold.sequence + 1)
                    if model.records.contains(where: { $0.sequence == sequence }) && !examples.contains(where: { $0.sequence == sequence })
                    {
                        inexact = true
                    }
                    fold.apply(Messages.removal(JSONObject.Member("exactly", .number(String(sequence)))), at: Self.start)
                    model.records.removeAll { $0.sequence == sequence }
                } else if choice < 99 {
                    let ledger = fold.state.unprocessable
                    let sequence = generator.next() % (fold.sequence + 1)
                    let oldest = ledger.examples.first?.sequence
                    if !(ledger.count == 0 || (oldest.map { sequence + 1 >= $0 } ?? false)) { inexact = true }
                    fold.apply(Messages.removal(JSONObject.Member("beforeIncluding", .number(String(sequence)))), at: Self.start)
                    model.records.removeAll { $0.sequence <= sequence }
                } else {
                    fold.apply(Messages.removal(JSONObject.Member("all", "all")), at: Self.start)
                    model.records.removeAll()
                    inexact = false
                }
                let ledger = fold.state.unprocessable
                let counts = Self.groupCounts(ledger)
                #expect(ledger.count == counts.values.reduce(0, +), "seed \(seed) step \(step)")
                #expect(ledger.examples.count <= UnprocessableLedger.maximumExamples)
                #expect(ledger.count >= model.records.count, "seed \(seed) step \(step): below what is outstanding")
                for (key, count) in model.counts { #expect((counts[key] ?? 0) >= count, "seed \(seed) step \(step) \(key)") }
                if !inexact { #expect(counts == model.counts, "seed \(seed) step \(step)") }
                #expect(ledger.examples.map(\.sequence) == model.records.suffix(ledger.examples.count).map(\.sequence))
            }
        }
    }

    @Test("a snapshot of the earlier format, which listed every record, loads with the records counted")
    func earlierFormatLoads() throws {
        var fold = Self.bought()
        for index in 0..<150 { fold.apply(Messages.usage("ghost-\(index % 3)", "m", "1"), at: Self.start) }
        fold.apply(Messages.usage("s", "nometer", "1"), at: Self.start)
        fold.apply(Messages.deletion("nobody"), at: Self.start)
        // The earlier format: the same state, its unprocessable records as a list of whole records.
        guard case .object(var root) = fold.state.snapshot() else { return }
        root["format"] = "metering-billing-partition/1"
        root["unprocessable"] = .array(
            fold.records.compactMap { record -> JSONValue? in
                guard case .usageReported(let usage) = record.message.body else {
                    guard case .subscriptionDeleted = record.message.body else { return nil }
                    return [
                        "sequence": .number(String(record.sequence)), "enqueuedTime": .string(record.enqueuedTime.iso8601),
                        "reason": "SubscriptionDeleted for nobody, which partition 0 has no subscription for",
                        "event": ["type": "SubscriptionDeleted", "value": ["resourceId": "nobody"]],
                    ]
                }
                let reason =
                    usage.resource.resourceId == "s"
                    ? "subscription s has no meter \"nometer\"; plan plan has \"m\""
                    : "no subscription \(usage.resource) in partition 0: usage needs its SubscriptionPurchased first"
                return [
                    "sequence": .number(String(record.sequence)), "enqueuedTime": .string(record.enqueuedTime.iso8601),
                    "reason": .string(reason),
                    "event": ["type": "UsageReported", "value": ["resourceId": .string(usage.resource.resourceId ?? ""), "quantity": 1]],
                ]
            })
        let restored = try PartitionState(snapshot: .object(root))
        #expect(restored.unprocessable.count == 152)
        #expect(
            Self.groupCounts(restored.unprocessable) == [
                "ghost-0/unknownSubscription": 50, "ghost-1/unknownSubscription": 50, "ghost-2/unknownSubscription": 50,
                "s/unknownMeter": 1, "nobody/unknownDeletion": 1,
            ])
        #expect(restored.unprocessable.examples.map(\.sequence) == fold.state.unprocessable.examples.map(\.sequence))
        // Written again, it is in the current format.
        #expect(restored.snapshot()["format"] == .string(PartitionState.snapshotFormat))
    }
}
