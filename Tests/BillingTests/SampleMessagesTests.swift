import Billing
import BillingTestSupport
import Foundation
import TestFixtures
import Testing
import Wire

@Suite("The sample messages in the reference format")
struct SampleMessagesTests {
    /// Every message of a sample file (a single message or an array of them).
    static func messages(_ path: String) throws -> [Message] {
        try Fixtures.messages(path).map { try Message.decode($0).get() }
    }

    /// Folds every message of every `InternalMessages/` file under `directory`, in file order,
    /// seven minutes apart; the number of messages folded.
    static func foldAll(in directory: String) throws -> Int {
        let files = Fixtures.files("InternalMessages", in: directory)
        #expect(files.count >= 14)
        var state = PartitionState(partition: 0)
        var sequence: UInt64 = 0
        var time = at("2024-05-14T10:00:00Z")
        for file in files {
            for message in try Self.messages(file) {
                sequence += 1
                time = time.adding(microseconds: 7 * 60_000_000)
                state.apply(BillingRecord(partition: 0, sequence: sequence, enqueuedTime: time, message: message))
            }
        }
        #expect(state.lastSequence == sequence)
        #expect(try PartitionState(snapshot: state.snapshot()) == state)
        return Int(sequence)
    }

    @Test("every internal message sample decodes and folds without trouble, in file order")
    func foldAll() throws {
        #expect(try Self.foldAll(in: Fixtures.directory) >= 20)
    }

    @Test(
        "every internal message sample of the reference's own files folds without trouble",
        .enabled(if: Fixtures.referenceDirectory != nil, Comment(rawValue: Fixtures.referenceMissing)))
    func foldAllReference() throws {
        #expect(try Self.foldAll(in: Fixtures.referenceDirectory ?? "") >= 20)
    }

    /// Folds a client SDK's message sequence (two purchases, two deletions, usage of the deleted
    /// and of an unknown subscription, three removals): the unprocessable count after each, and
    /// the state.
    static func sdkSequence(_ path: String) throws -> (counts: [Int], state: PartitionState) {
        var state = PartitionState(partition: 0)
        var counts: [Int] = []
        for (index, message) in try Self.messages(path).enumerated() {
            let time = at("2024-05-14T10:00:00Z").adding(microseconds: Int64(index) * 60_000_000)
            state.apply(BillingRecord(partition: 0, sequence: UInt64(index), enqueuedTime: time, message: message))
            counts.append(state.unprocessable.count)
        }
        return (counts, state)
    }

    @Test("a client's messages: two purchases, two deletions, usage of deleted and unknown subscriptions, then their removal")
    func sdkMessages() throws {
        let (counts, state) = try Self.sdkSequence(Fixtures.path("InternalMessages/AllInOne client messages.json"))
        // Purchases, one deletion of a held subscription, then a deletion and two usages of
        // subscriptions this partition does not have; the removals clear them.
        #expect(counts == [0, 0, 0, 1, 2, 3, 0, 0, 0])
        #expect(state.subscriptionCount == 1)
        let storage = state.subscriptionJSON(ResourceName(resourceId: "3f6e2b1c-8d4a-4e5f-9a7b-2c1d0e9f8a76"))?["meters"]?.arrayValue?[1]
        #expect(storage?["included"] == "Infinite")
    }

    @Test(
        "the reference's own SDK messages give the same bookkeeping",
        .enabled(if: Fixtures.referenceDirectory != nil, Comment(rawValue: Fixtures.referenceMissing)))
    func sdkMessagesReference() throws {
        let path = Fixtures.path("InternalMessages/AllInOne-SDK-Sent-Messages.json", in: Fixtures.referenceDirectory ?? "")
        let (counts, state) = try Self.sdkSequence(path)
        #expect(counts == [0, 0, 0, 1, 2, 3, 0, 0, 0])
        #expect(state.subscriptionCount == 1)
    }

    @Test("the marketplace's batch answer settles the matching pending items: one accepted, one conflict, the rest not ours")
    func marketplaceReply() throws {
        let reply = try Fixtures.json(Fixtures.path("MarketplaceMessages/batch response.json"))
        let results = try #require(reply["result"]?.arrayValue)
        #expect(reply["count"]?.intValue == results.count)
        let subscription = "3f6e2b1c-8d4a-4e5f-9a7b-2c1d0e9f8a76"
        var fold = Fold()
        fold.apply(
            Messages.purchase(
                subscription, start: "2024-05-01T08:30:00Z", planId: "contoso_monthly", dimensions: ["api": Messages.simple("api_calls")]),
            at: "2024-05-13T21:00:00Z")
        fold.apply(Messages.usage(subscription, "api", "12"), at: "2024-05-13T22:10:00Z")
        fold.apply(Messages.usage(subscription, "api", "12"), at: "2024-05-14T03:10:00Z")
        fold.ping(at: "2024-05-14T04:00:00Z")
        #expect(fold.state.pending.count == 2)
        for result in results {
            fold.apply(["type": "UsageSubmittedToAPI", "value": ["result": result]], at: "2024-05-14T09:13:00Z")
        }
        #expect(fold.state.pending.isEmpty)
        #expect(fold.state.accepted == 1)
        #expect(fold.state.conflicts.map(\.acceptedQuantity) == [Quantity(7)])
        #expect(fold.state.rejected.isEmpty)
    }

    @Test("each marketplace answer of the samples, applied to its pending item, settles it as its status says")
    func singleAnswers() throws {
        let subscription = "3f6e2b1c-8d4a-4e5f-9a7b-2c1d0e9f8a76"
        let cases: [(file: String, usageAt: String, accepted: Int, conflicts: Int, rejected: Int)] = [
            ("accepted.json", "2024-05-14T03:10:00Z", 1, 0, 0),
            ("duplicate.json", "2024-05-13T22:10:00Z", 0, 1, 0),
        ]
        for entry in cases {
            let result = try Fixtures.json(Fixtures.path("MarketplaceMessages/" + entry.file))
            var fold = Fold()
            fold.apply(
                Messages.purchase(
                    subscription, start: "2024-05-01T08:30:00Z", planId: "contoso_monthly",
                    dimensions: ["api": Messages.simple("api_calls")]),
                at: "2024-05-13T21:00:00Z")
            fold.apply(Messages.usage(subscription, "api", "12"), at: entry.usageAt)
            fold.ping(at: "2024-05-14T04:00:00Z")
            #expect(fold.state.pending.count == 1, "\(entry.file)")
            fold.apply(["type": "UsageSubmittedToAPI", "value": ["result": result]], at: "2024-05-14T09:13:00Z")
            #expect(fold.state.pending.isEmpty, "\(entry.file)")
            #expect(fold.state.accepted == entry.accepted, "\(entry.file)")
            #expect(fold.state.conflicts.count == entry.conflicts, "\(entry.file)")
            #expect(fold.state.rejected.count == entry.rejected, "\(entry.file)")
        }
    }
}
