import Billing
import BillingTestSupport
import Foundation
import Testing
import Wire

@Suite("The reference's sample messages")
struct SampleMessagesTests {
    /// `shared/samples/mba/`, found from this file: the package root is three levels up.
    static let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("../shared/samples/mba").standardized

    /// Every message of a sample file (a single message or an array of them).
    static func messages(_ file: URL) throws -> [Message] {
        let json = try JSONParser.parse(Array(try Data(contentsOf: file)))
        return try (json.arrayValue ?? [json]).map { try Message.decode($0).get() }
    }

    static func files(_ folder: String) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: samples.appendingPathComponent(folder), includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }.sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    @Test("every internal message sample decodes and folds without trouble, in file order")
    func foldAll() throws {
        let files = try Self.files("InternalMessages")
        #expect(files.count >= 14)
        var state = PartitionState(partition: 0)
        var sequence: UInt64 = 0
        var time = at("2022-09-19T13:00:00Z")
        for file in files {
            for message in try Self.messages(file) {
                sequence += 1
                time = time.adding(microseconds: 7 * 60_000_000)
                state.apply(BillingRecord(partition: 0, sequence: sequence, enqueuedTime: time, message: message))
            }
        }
        #expect(state.lastSequence == sequence)
        #expect(try PartitionState(snapshot: state.snapshot()) == state)
    }

    @Test("the SDK's messages: two purchases, two deletions, usage of deleted and unknown subscriptions, then their removal")
    func sdkMessages() throws {
        let messages = try Self.messages(Self.samples.appendingPathComponent("InternalMessages/AllInOne-SDK-Sent-Messages.json"))
        var state = PartitionState(partition: 0)
        var counts: [Int] = []
        for (index, message) in messages.enumerated() {
            let time = at("2022-09-19T13:00:00Z").adding(microseconds: Int64(index) * 60_000_000)
            state.apply(BillingRecord(partition: 0, sequence: UInt64(index), enqueuedTime: time, message: message))
            counts.append(state.unprocessable.count)
        }
        // Purchases, one deletion of a held subscription, then a deletion and two usages of
        // subscriptions this partition does not have; the removals clear them.
        #expect(counts == [0, 0, 0, 1, 2, 3, 0, 0, 0])
        #expect(state.subscriptionCount == 1)
        let cpu = state.subscriptionJSON(ResourceName(resourceId: "fdc778a6-1281-40e4-cade-4a5fc11f5440"))?["meters"]?.arrayValue?[1]
        #expect(cpu?["included"] == "Infinite")
    }

    @Test("the marketplace's captured batch reply settles the matching pending items")
    func marketplaceReply() throws {
        let file = Self.samples.appendingPathComponent("MarketplaceMessages/MarketplaceBatchResponseDTO.json")
        let reply = try JSONParser.parse(Array(try Data(contentsOf: file)))
        let results = try #require(reply["result"]?.arrayValue)
        var fold = Fold()
        fold.apply(
            Messages.purchase(
                "fdc778a6-1281-40e4-cade-4a5fc11f5440", start: "2021-11-04T16:12:26Z", planId: "free_monthly_yearly",
                dimensions: ["dta": Messages.simple("datasourcecharge")]), at: "2021-12-13T19:00:00Z")
        fold.apply(Messages.usage("fdc778a6-1281-40e4-cade-4a5fc11f5440", "dta", "9"), at: "2021-12-13T20:10:00Z")
        fold.apply(Messages.usage("fdc778a6-1281-40e4-cade-4a5fc11f5440", "dta", "9"), at: "2021-12-14T01:10:00Z")
        fold.ping(at: "2021-12-14T02:00:00Z")
        #expect(fold.state.pending.count == 2)
        for result in results {
            fold.apply(["type": "UsageSubmittedToAPI", "value": ["result": result]], at: "2021-12-14T21:00:00Z")
        }
        #expect(fold.state.pending.isEmpty)
        #expect(fold.state.accepted == 1)
        #expect(fold.state.conflicts.map(\.acceptedQuantity) == [Quantity(5)])
        #expect(fold.state.rejected.isEmpty)
    }
}
