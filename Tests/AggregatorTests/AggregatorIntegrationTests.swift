import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meter-aggregator with meter-ingest over their sockets", .serialized)
struct AggregatorIntegrationTests {
    static func purchase(_ resourceId: String, start: String) throws -> JSONValue {
        try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(resourceId)","subscriptionStart":"\#(start)","renewalInterval":"Monthly","plan":{"planId":"mail-plan","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":1000}}}}}}"#
        )
    }

    static func advance(_ ingest: IngestProcess, to time: String) throws {
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": .string(time)])))
    }

    static func send(_ ingest: IngestProcess, _ events: [JSONValue]) throws {
        let response = try ingest.client().call(appendRequest(events))
        for result in response["results"]?.arrayValue ?? [] {
            #expect(result["status"] == "accepted", "\(JSONWriter.string(result))")
        }
    }

    /// (dimension, hour, quantity) of every pending item, oldest first.
    static func pending(_ aggregator: AggregatorProcess) throws -> [String] {
        let items = try aggregator.client().call("pending")["items"]?.arrayValue ?? []
        return items.map { item in
            let quantity: String
            if case .number(let text)? = item["quantity"] { quantity = text } else { quantity = "?" }
            return
                "\(item["resourceId"]?.stringValue ?? "?") \(item["dimension"]?.stringValue ?? "?") \(item["effectiveStartTime"]?.stringValue ?? "?") \(quantity)"
        }
    }

    /// The scenario: bought on Jan 31 with 1,000 e-mails included; overage in two hours; the
    /// renewal on Feb 29 refills; overage again after the renewal.
    static func runScenario(_ ingest: IngestProcess) throws {
        try advance(ingest, to: "2024-01-31T09:00:00Z")
        try send(ingest, [try purchase("agg-a", start: "2024-01-31T09:00:00Z")])
        try send(ingest, [usage("agg-a", "600", meter: "email"), usage("agg-a", "600", meter: "email")])
        try advance(ingest, to: "2024-01-31T10:30:00Z")
        try send(ingest, [usage("agg-a", "50", meter: "email")])
        try advance(ingest, to: "2024-02-29T00:00:01Z")
        try send(ingest, [usage("agg-a", "999", meter: "email"), usage("agg-a", "2", meter: "email")])
        try advance(ingest, to: "2024-02-29T01:00:00Z")
    }

    static let expectedPending = [
        "agg-a emails 2024-01-31T09:00:00Z 200", "agg-a emails 2024-01-31T10:00:00Z 50", "agg-a emails 2024-02-29T00:00:00Z 1",
    ]

    @Test("purchases and usage across hours and a renewal give exactly the expected pending items, also after SIGKILL and restart")
    func scenarioSurvivesKill() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        var aggregator = try AggregatorProcess(home: home, environment: ["METERING_AGGREGATOR_SNAPSHOT_RECORDS": "4"])
        try Self.runScenario(ingest)
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(try Self.pending(aggregator) == Self.expectedPending)
        let stateBefore = try aggregator.client().call(Request(op: "state", fields: JSONObject(["resourceId": "agg-a"])))
        aggregator.kill(SIGKILL)

        aggregator = try AggregatorProcess(home: home)
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(try Self.pending(aggregator) == Self.expectedPending)
        let stateAfter = try aggregator.client().call(Request(op: "state", fields: JSONObject(["resourceId": "agg-a"])))
        #expect(stateAfter["subscription"] == stateBefore["subscription"])
        let snapshots = try FileManager.default.subpathsOfDirectory(atPath: home.path + "/data/aggregator").filter {
            $0.hasSuffix(".snapshot")
        }
        #expect(!snapshots.isEmpty)
    }

    /// (partition, position, records folded since start) of every partition, as `status` lists them.
    static func partitions(_ aggregator: AggregatorProcess) throws -> [(partition: Int, position: Int, applied: Int)] {
        try (aggregator.client().call("status")["partitions"]?.arrayValue ?? []).map { partition in
            func number(_ name: String) -> Int {
                if case .number(let text)? = partition[name] { return Int(text) ?? -1 }
                return -1
            }
            return (number("partition"), number("position"), number("recordsApplied"))
        }
    }

    @Test("after SIGTERM every partition comes back from its own snapshot, read in parallel: in order, at its position, nothing replayed")
    func partitionsRestoreInParallel() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        var aggregator = try AggregatorProcess(home: home)
        try Self.advance(ingest, to: "2024-01-31T09:00:00Z")
        let names = (0..<12).map { "agg-p\($0)" }
        try Self.send(ingest, try names.map { try Self.purchase($0, start: "2024-01-31T09:00:00Z") })
        try Self.send(ingest, names.map { usage($0, "1200", meter: "email") })
        try Self.advance(ingest, to: "2024-01-31T10:00:00Z")
        try aggregator.waitUntilCaughtUp(with: ingest)
        let pending = try Self.pending(aggregator)
        #expect(pending.count == 12, "each subscription's 200 e-mails of overage")
        let before = try Self.partitions(aggregator)
        #expect(before.filter { $0.position > 0 }.count >= 2, "the subscriptions are spread over several partitions")

        aggregator.kill(SIGTERM)
        aggregator = try AggregatorProcess(home: home)
        try aggregator.waitUntilCaughtUp(with: ingest)
        let after = try Self.partitions(aggregator)
        #expect(after.map(\.partition) == Array(0..<before.count))
        #expect(after.map(\.position) == before.map(\.position))
        #expect(after.allSatisfy { $0.applied == 0 }, "nothing folded again: every state came from its snapshot")
        #expect(try Self.pending(aggregator) == pending)
    }

    @Test("catching up through hours of log time writes no snapshot per hour: only the record count could ask for one")
    func noHourlySnapshotsWhileCatchingUp() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "1"])
        try Self.advance(ingest, to: "2024-01-31T00:00:00Z")
        try Self.send(ingest, [try Self.purchase("agg-a", start: "2024-01-31T00:00:00Z")])
        // 12,000 records two hours apart in three runs: a follower's answers (5,000 records each)
        // end in hours 2 and 4, so a snapshot per hour of log time would come with the second.
        for hour in ["00", "02", "04"] {
            try Self.advance(ingest, to: "2024-01-31T\(hour):00:00Z")
            for _ in 0..<4 { try Self.send(ingest, (0..<1_000).map { _ in usage("agg-a", "1", meter: "email") }) }
        }
        let aggregator = try AggregatorProcess(home: home)
        try aggregator.waitUntilCaughtUp(with: ingest)
        let partition = try #require(try aggregator.client().call("status")["partitions"]?.arrayValue?.first)
        #expect((partition["position"]?.intValue ?? 0) >= 12_001)
        #expect(partition["snapshotSequence"] == .null, "no snapshot while catching up: \(JSONWriter.string(partition))")
    }

    @Test("a damaged newest snapshot falls back to an older one or a replay, never to wrong numbers")
    func damagedSnapshot() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        var aggregator = try AggregatorProcess(home: home, environment: ["METERING_AGGREGATOR_SNAPSHOT_RECORDS": "2"])
        try Self.runScenario(ingest)
        try aggregator.waitUntilCaughtUp(with: ingest)
        aggregator.kill(SIGTERM)
        let root = home.path + "/data/aggregator"
        for path in try FileManager.default.subpathsOfDirectory(atPath: root) where path.hasSuffix(".snapshot") {
            let full = root + "/" + path
            var bytes = try #require(FileManager.default.contents(atPath: full))
            bytes[bytes.count - 10] ^= 0x55
            try bytes.write(to: URL(fileURLWithPath: full))
        }
        aggregator = try AggregatorProcess(home: home)
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(try Self.pending(aggregator) == Self.expectedPending)
        let damaged = try FileManager.default.subpathsOfDirectory(atPath: root).filter { $0.hasSuffix(".damaged") }
        #expect(!damaged.isEmpty)
    }

    @Test("a marketplace outcome appended to the log settles its pending item")
    func outcomeSettlesItem() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let aggregator = try AggregatorProcess(home: home)
        try Self.runScenario(ingest)
        try aggregator.waitUntilCaughtUp(with: ingest)
        let outcome = try JSONParser.parse(
            #"{"type":"UsageSubmittedToAPI","value":{"httpHeaders":{"xMsRequestId":"r","xMsCorrelationId":"c"},"result":{"resourceId":"agg-a","effectiveStartTime":"2024-01-31T09:00:00Z","planId":"mail-plan","dimension":"emails","quantity":200,"status":"Accepted","usageEventId":"u","messageTime":"2024-02-29T01:00:00Z"}}}"#
        )
        let appended = try ingest.admin().call(appendRequest([outcome]))
        #expect(appended["results"]?.arrayValue?.first?["status"] == "accepted")
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(try Self.pending(aggregator) == Array(Self.expectedPending.dropFirst()))
        let status = try aggregator.client().call("status")
        let accepted = status["partitions"]?.arrayValue?.compactMap { $0["accepted"]?.intValue }.reduce(0, +)
        #expect(accepted == 1)
    }

    @Test("pending reports age and at-risk items, state answers for either name, and unknown ops are refused")
    func operations() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let aggregator = try AggregatorProcess(home: home)
        try Self.runScenario(ingest)
        try Self.advance(ingest, to: "2024-02-29T22:00:00Z")
        try aggregator.waitUntilCaughtUp(with: ingest)
        let items = try aggregator.client().call("pending")["items"]?.arrayValue ?? []
        #expect(items.first?["atRisk"] == .bool(true))
        #expect(items.last?["atRisk"] == .bool(true))
        #expect(items.last?["ageSeconds"]?.intValue == 22 * 3600)
        let status = try aggregator.client().call("status")
        #expect(status["partitions"]?.arrayValue?.compactMap { $0["atRisk"]?.intValue }.reduce(0, +) == 3)
        #expect(throws: UnixClient.Failure.self) {
            try aggregator.client().call(Request(op: "state", fields: JSONObject(["resourceId": "nobody"])))
        }
        #expect(throws: UnixClient.Failure.self) { try aggregator.client().call("drop") }
    }
}
