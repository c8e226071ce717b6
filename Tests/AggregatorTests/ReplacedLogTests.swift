import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The aggregator and the query service hold state folded from one log. When that log loses
/// records (and an operator accepts the loss, or restores an older copy), new records reuse the
/// old sequence numbers: a follower that went on from its old position would never fold them.
/// Each must refuse, say so, exit non-zero, and fold the log exactly once after `meterctl rebuild`.
@Suite("Followers of a log that lost records", .serialized)
struct ReplacedLogTests {
    static let plan =
        #"{"planId":"p","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":10}}}"#

    static func environment(_ home: StackHome) -> [String: String] {
        ["METERING_HOME": home.path, "METERING_CLOCK": "manual", "PATH": "/usr/bin:/bin"]
    }

    /// Starts a folding process that must refuse: its status says why while it lingers, then it
    /// exits with status 78 and the reason in its log.
    static func expectRefusal(_ process: () throws -> ServerProcess, socket: String, _ needle: String) throws {
        let started: ServerProcess
        do {
            started = try process()
        } catch {
            Issue.record("the process did not serve its socket before refusing: \(error)")
            return
        }
        var sawStatus = false
        let deadline = Date().addingTimeInterval(30)
        while started.process.isRunning && Date() < deadline {
            if let status = try? UnixClient(path: socket).call("status"), let refused = status["refused"]?.stringValue {
                #expect(refused.contains(needle))
                sawStatus = true
            }
            usleep(50_000)
        }
        started.process.waitUntilExit()
        #expect(sawStatus, "status never said why folding stopped")
        #expect(started.process.terminationStatus == 78)
        let errors = started.readErrors()
        #expect(errors.contains("error: refusing to fold") && errors.contains(needle), "\(errors)")
    }

    /// The sum of the usage quantities of `resource` in ingest's log.
    static func usageInLog(_ ingest: IngestProcess, _ resource: String) throws -> Int {
        try readAll(ingest.client(), partitions: 1).filter { $0["event"]?["type"] == "UsageReported" }
            .filter { $0["event"]?["value"]?["resourceId"]?.stringValue == resource }
            .reduce(0) { $0 + ($1["event"]?["value"]?["quantity"]?.intValue ?? 0) }
    }

    static func consumed(_ query: QueryProcess, _ resource: String) throws -> String? {
        let runRate = try query.client().call(Request(op: "runrate", fields: JSONObject(["resourceId": .string(resource)])))
        guard case .number(let text)? = runRate["meters"]?.arrayValue?.first?["consumed"] else { return nil }
        return text
    }

    @Test("after a loss is accepted, aggregator and query refuse the new identity, exit 78, and once rebuilt fold every new record")
    func acceptedLoss() throws {
        let home = StackHome()
        let settings = ["METERING_PARTITIONS": "1", "METERING_SEGMENT_BYTES": "65536"]
        do {
            let ingest = try IngestProcess(home: home, environment: settings)
            _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-03-01T00:00:00Z"])))
            let aggregator = try AggregatorProcess(home: home)
            let query = try QueryProcess(home: home)
            let purchase = try JSONParser.parse(
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"sub-a","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(Self.plan)}}}"#
            )
            _ = try ingest.client().call(appendRequest([purchase]))
            for batch in 0..<15 {
                _ = try ingest.client().call(appendRequest((0..<200).map { usage("sub-a", "1", id: "old-\(batch)-\($0)", meter: "email") }))
            }
            try aggregator.waitUntilCaughtUp(with: ingest, timeout: 60)
            try query.waitUntilCaughtUp(with: ingest, timeout: 60)
            #expect(try Self.consumed(query, "sub-a") == "3000")
            aggregator.kill(SIGTERM)
            query.kill(SIGTERM)
            ingest.kill(SIGTERM)
        }
        // A damaged middle segment, moved aside with everything after it, and the loss accepted.
        let wal = home.path + "/data/log/wal"
        let segments = try FileManager.default.contentsOfDirectory(atPath: wal).filter { $0.hasSuffix(".wal") }.sorted()
        #expect(segments.count >= 3)
        for name in segments.dropFirst() {
            try FileManager.default.moveItem(atPath: "\(wal)/\(name)", toPath: "\(wal)/\(name).aside")
        }
        let accepted = try runToEnd("meterctl", ["log", "accept-loss", "--yes"], environment: Self.environment(home))
        #expect(accepted.status == 0, "\(accepted.errors)")

        let ingest = try IngestProcess(home: home, environment: settings)
        _ = try ingest.client().call(appendRequest((0..<300).map { usage("sub-a", "1", id: "new-\($0)", meter: "email") }))
        try Self.expectRefusal({ try AggregatorProcess(home: home) }, socket: home.aggregatorSocket, "the log was replaced")
        try Self.expectRefusal({ try QueryProcess(home: home) }, socket: home.querySocket, "the log was replaced")

        for target in ["aggregator", "query"] {
            let rebuilt = try runToEnd("meterctl", ["rebuild", target], environment: Self.environment(home))
            #expect(rebuilt.status == 0, "\(rebuilt.errors)")
        }
        let aggregator = try AggregatorProcess(home: home)
        let query = try QueryProcess(home: home)
        try aggregator.waitUntilCaughtUp(with: ingest, timeout: 60)
        try query.waitUntilCaughtUp(with: ingest, timeout: 60)
        let expected = try Self.usageInLog(ingest, "sub-a")
        #expect(expected > 300 && expected < 3300)
        #expect(try Self.consumed(query, "sub-a") == String(expected))
        let positions = try aggregator.client().call("status")["partitions"]?.arrayValue?.first?["position"]?.intValue
        #expect(positions == (try ingest.client().call("status")["partitions"]?.arrayValue?.first?["nextSequence"]?.intValue))
    }

    @Test("a log restored from an older copy is refused by followers that folded past its end, and rebuilding refuses while they run")
    func restoredOlderLog() throws {
        let home = StackHome()
        let backup = home.path + "/backup-log"
        do {
            let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "1"])
            _ = try ingest.client().call(appendRequest((0..<20).map { usage("sub-x", "1", id: "a-\($0)") }))
            ingest.kill(SIGTERM)
            try FileManager.default.copyItem(atPath: home.path + "/data/log", toPath: backup)
        }
        do {
            let ingest = try IngestProcess(home: home)
            _ = try ingest.client().call(appendRequest((0..<50).map { usage("sub-x", "1", id: "b-\($0)") }))
            let query = try QueryProcess(home: home)
            try query.waitUntilCaughtUp(with: ingest, timeout: 60)
            let refused = try runToEnd("meterctl", ["rebuild", "query"], environment: Self.environment(home))
            #expect(refused.status != 0 && refused.errors.contains("stop it first"), "\(refused.errors)")
            query.kill(SIGTERM)
            ingest.kill(SIGTERM)
        }
        try FileManager.default.removeItem(atPath: home.path + "/data/log")
        try FileManager.default.moveItem(atPath: backup, toPath: home.path + "/data/log")
        let ingest = try IngestProcess(home: home)
        try Self.expectRefusal({ try QueryProcess(home: home) }, socket: home.querySocket, "the log lost records it had served")
        #expect(try runToEnd("meterctl", ["rebuild", "query"], environment: Self.environment(home)).status == 0)
        let query = try QueryProcess(home: home)
        try query.waitUntilCaughtUp(with: ingest, timeout: 60)
    }
}
