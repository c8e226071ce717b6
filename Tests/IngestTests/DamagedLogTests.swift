import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Damage that loses acknowledged records, done to the files of a real meter-ingest's log between
/// runs: every case must make ingest refuse to start (status 78) and name what is missing, never
/// serve a log whose sequence numbers and idempotency keys would be reused.
@Suite("meter-ingest refuses a log that lost acknowledged records")
struct DamagedLogTests {
    /// Appends `count` keyed usages to `ingest`, in batches, and returns them by partition.
    static func fill(_ ingest: IngestProcess, count: Int, prefix: String = "u") throws -> [Int: Int] {
        var perPartition: [Int: Int] = [:]
        var sent = 0
        while sent < count {
            let batch = (sent..<min(count, sent + 200)).map { usage("sub-\($0 % 8)", "1", id: "\(prefix)-\($0)") }
            let results = try ingest.client().call(appendRequest(batch))["results"]?.arrayValue ?? []
            for result in results {
                #expect(result["status"] == "accepted")
                perPartition[result["partition"]?.intValue ?? -1, default: 0] += 1
            }
            sent += batch.count
        }
        return perPartition
    }

    static func environment(_ home: StackHome, _ extra: [String: String] = [:]) -> [String: String] {
        var environment = ["METERING_HOME": home.path, "METERING_CLOCK": "manual", "PATH": "/usr/bin:/bin"]
        for (key, value) in extra { environment[key] = value }
        return environment
    }

    /// Starts meter-ingest on the damaged home and expects a refusal naming `needles`.
    static func expectRefusal(_ home: StackHome, _ needles: [String], environment extra: [String: String] = [:]) throws {
        let outcome = try runToEnd("meter-ingest", [], environment: environment(home, extra))
        #expect(outcome.status == 78, "meter-ingest started on a damaged log: \(outcome.errors)")
        for needle in needles { #expect(outcome.errors.contains(needle), "the refusal does not say \"\(needle)\": \(outcome.errors)") }
        #expect(!FileManager.default.fileExists(atPath: home.clientSocket) || (try? UnixClient(path: home.clientSocket)) == nil)
    }

    /// The log's segment files, oldest first.
    static func segments(_ home: StackHome) throws -> [String] {
        let directory = home.path + "/data/log/wal"
        return try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }.sorted().map {
            directory + "/" + $0
        }
    }

    /// The offset just after the last byte that is not zero (the end of the written records).
    static func writtenEnd(_ path: String) throws -> Int {
        let bytes = try #require(FileManager.default.contents(atPath: path))
        var end = bytes.count
        while end > 0 && bytes[end - 1] == 0 { end -= 1 }
        return end
    }

    @Test("a log records its identity and clock, and every read answer names the identity")
    func identity() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let status = try ingest.client().call("status")
        let identity = try #require(status["log"]?["identity"]?.stringValue)
        #expect(identity.count == 32)
        #expect(status["log"]?["clock"] == "manual")
        let read = try ingest.client().call(Request(op: "read", fields: JSONObject(["partition": 0])))
        #expect(read["log"]?.stringValue == identity)
        ingest.kill(SIGTERM)
        let manifest = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: home.path + "/data/log/log.json"))))
        #expect(manifest["identity"]?.stringValue == identity)
        #expect(manifest["clock"] == "manual")
        let restarted = try IngestProcess(home: home)
        #expect(try restarted.client().call("status")["log"]?["identity"]?.stringValue == identity)
    }

    @Test("deleting the log's last segments is refused, naming the records of each partition they held")
    func lastSegmentDeleted() throws {
        let home = StackHome()
        var counts: [Int: Int] = [:]
        do {
            let ingest = try IngestProcess(home: home, environment: ["METERING_SEGMENT_BYTES": "65536", "METERING_PARTITIONS": "2"])
            counts = try Self.fill(ingest, count: 2_000)
            ingest.kill(SIGTERM)
        }
        let files = try Self.segments(home)
        #expect(files.count >= 3)
        // The last segment that holds records, and any prepared after it.
        let written = try files.filter { try Self.writtenEnd($0) > 64 }
        for file in written.suffix(1) + files.filter({ $0 > written.last! }) { try FileManager.default.removeItem(atPath: file) }
        // Each partition's acknowledged count includes its start-up tick.
        try Self.expectRefusal(
            home, ["lost acknowledged records", "partition 0: records ", "to \(counts[0, default: 0])", "partition 1: records "])
    }

    @Test("a segment deleted from the middle of the log is refused, naming it")
    func middleSegmentDeleted() throws {
        let home = StackHome()
        do {
            let ingest = try IngestProcess(home: home, environment: ["METERING_SEGMENT_BYTES": "65536", "METERING_PARTITIONS": "4"])
            _ = try Self.fill(ingest, count: 2_000)
            ingest.kill(SIGTERM)
        }
        let files = try Self.segments(home)
        #expect(files.count >= 4)
        try FileManager.default.removeItem(atPath: files[1])
        try Self.expectRefusal(home, ["segments 1 of", "are missing"])
        try FileManager.default.removeItem(atPath: home.path + "/data/log/wal")
        try Self.expectRefusal(home, ["holds no segment"])
    }

    @Test("a lost log.json is refused, and one edited from 8 partitions to 4 is refused")
    func manifestLostOrEdited() throws {
        let home = StackHome()
        do {
            let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "8"])
            _ = try Self.fill(ingest, count: 300)
            ingest.kill(SIGTERM)
        }
        let path = home.path + "/data/log/log.json"
        let original = try #require(FileManager.default.contents(atPath: path))
        try FileManager.default.removeItem(atPath: path)
        try Self.expectRefusal(home, ["log.json is missing", "high-water.json (8 partitions", "bill them twice"])

        let edited = String(decoding: original, as: UTF8.self).replacingOccurrences(of: #""partitions":8"#, with: #""partitions":4"#)
        #expect(edited != String(decoding: original, as: UTF8.self))
        try Data(edited.utf8).write(to: URL(fileURLWithPath: path))
        try Self.expectRefusal(home, ["disagree"])
        // Without the marks to contradict it, the records of partitions 4 to 7 still do.
        let marksPath = home.path + "/data/log/high-water.json"
        try FileManager.default.removeItem(atPath: marksPath)
        try Self.expectRefusal(home, ["high-water.json is missing"])
        try original.write(to: URL(fileURLWithPath: path))
        try Self.expectRefusal(home, ["high-water.json is missing"])
    }

    @Test("a bit flip in a record acknowledged more than a second before a SIGKILL is refused, not cut as a torn tail")
    func bitFlipInDurableTail() throws {
        let home = StackHome()
        do {
            let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "1"])
            _ = try Self.fill(ingest, count: 50)
            // The high-water mark follows within a second; then a crash without a clean stop.
            let marks = home.path + "/data/log/high-water.json"
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if let data = FileManager.default.contents(atPath: marks), String(decoding: data, as: UTF8.self).contains("[51]") { break }
                usleep(50_000)
            }
            ingest.kill(SIGKILL)
        }
        let segment = try #require(try Self.segments(home).first)
        let end = try Self.writtenEnd(segment)
        let handle = try #require(FileHandle(forUpdatingAtPath: segment))
        try handle.seek(toOffset: UInt64(end - 20))
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: UInt64(end - 20))
        try handle.write(contentsOf: Data([byte ^ 0x10]))
        try handle.close()
        try Self.expectRefusal(
            home, ["partition 0: records 50 to 50", "damaged bytes", "not a torn write", "were acknowledged", "meterctl log accept-loss"])
    }

    @Test("a log written on the manual clock refuses the system clock unless the switch is allowed, and then keeps it")
    func clockModeIsRecorded() throws {
        let home = StackHome()
        do {
            let ingest = try IngestProcess(home: home)
            _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-03-01T00:00:00Z"])))
            ingest.kill(SIGTERM)
        }
        try Self.expectRefusal(
            home, ["written on the manual clock", "METERING_CLOCK=manual", "METERING_CLOCK_CHANGE=allow"],
            environment: ["METERING_CLOCK": "system"])
        let switched = try IngestProcess(home: home, environment: ["METERING_CLOCK": "system", "METERING_CLOCK_CHANGE": "allow"])
        #expect(try switched.client().call("status")["log"]?["clock"] == "system")
        switched.kill(SIGTERM)
        let again = try IngestProcess(home: home, environment: ["METERING_CLOCK": "system"])
        #expect(try again.client().call("status")["clock"] == "system")
    }

    @Test("meterctl log accept-loss cuts what is lost, records it and gives the log a new identity")
    func acceptLoss() throws {
        let home = StackHome()
        let before: String
        do {
            let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "1", "METERING_SEGMENT_BYTES": "65536"])
            before = try #require(try ingest.client().call("status")["log"]?["identity"]?.stringValue)
            _ = try Self.fill(ingest, count: 1_500)
            ingest.kill(SIGTERM)
        }
        let files = try Self.segments(home)
        #expect(files.count >= 3)
        // A damaged middle segment, moved aside with everything after it.
        for file in files[1...] { try FileManager.default.moveItem(atPath: file, toPath: file + ".aside") }
        try Self.expectRefusal(home, ["partition 0: records ", "to 1500"])

        let dryRun = try runToEnd("meterctl", ["log", "accept-loss"], environment: Self.environment(home))
        #expect(dryRun.status == 0)
        #expect(dryRun.output.contains("to 1500") && dryRun.output.contains("--yes"))
        let accepted = try runToEnd("meterctl", ["log", "accept-loss", "--yes"], environment: Self.environment(home))
        #expect(accepted.status == 0, "\(accepted.errors)")
        #expect(accepted.output.contains("accepted the loss of partition 0: records ") && accepted.output.contains("to 1500"))
        #expect(accepted.output.contains("meterctl rebuild aggregator"))

        let ingest = try IngestProcess(home: home)
        let status = try ingest.client().call("status")
        let after = try #require(status["log"]?["identity"]?.stringValue)
        #expect(after != before)
        #expect(status["log"]?["lossesAccepted"] == 1)
        let kept = status["partitions"]?.arrayValue?.first?["nextSequence"]?.intValue ?? 0
        #expect(kept > 1 && kept < 1501)
        let manifest = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: home.path + "/data/log/log.json"))))
        #expect(manifest["losses"]?.arrayValue?.first?["previousIdentity"]?.stringValue == before)
    }
}

/// An idempotency key names one message: resent with the same message it is a duplicate, reused
/// for another it is a conflict, and either way nothing is appended.
@Suite("meter-ingest idempotency keys and payloads")
struct KeyConflictTests {
    @Test("a key reused with another message is a conflict naming the original, and nothing is appended, also after a restart")
    func reusedKeyIsAConflict() throws {
        let home = StackHome()
        var ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "1"])
        let first = try ingest.client().call(appendRequest([usage("sub-1", "1", id: "k-1")]))["results"]?.arrayValue?.first
        #expect(first?["status"] == "accepted")
        let deletion: JSONValue = ["id": "k-1", "type": "SubscriptionDeleted", "value": ["resourceId": "sub-1"]]
        for round in 0..<2 {
            let answers =
                try ingest.client().call(
                    appendRequest([
                        usage("sub-1", "999", id: "k-1"), deletion,
                        // The same message with its members in another order and a new sender time: a retry.
                        [
                            "value": [
                                "quantity": .number("1.0"), "meterName": "cpu", "timestamp": "2030-01-01T00:00:00Z", "resourceId": "sub-1",
                            ], "type": "UsageReported", "id": "k-1",
                        ],
                    ]))["results"]?.arrayValue ?? []
            #expect(answers.map { $0["status"]?.stringValue } == ["conflict", "conflict", "duplicate"], "round \(round)")
            #expect(answers[0]["sequence"] == first?["sequence"])
            #expect(answers[0]["error"]?["code"] == "conflict")
            #expect(answers[0]["error"]?["message"]?.stringValue?.contains("first used for a different message") == true)
            let records = try readAll(ingest.client(), partitions: 1).filter { $0["event"]?["type"] != "Ping" }
            #expect(records.count == 1)
            ingest.kill(SIGTERM)
            ingest = try IngestProcess(home: home)
        }
    }
}

/// A log written by the release before log identities, served by today's meter-ingest.
@Suite("meter-ingest on a format-1 log")
struct FormatOneLogTests {
    @Test("a format-1 log is upgraded on first start and its keys answer duplicate or conflict by their messages")
    func upgradedLogKeepsItsKeys() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/format1-log").path
        let home = StackHome()
        try FileManager.default.createDirectory(atPath: home.path + "/data", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture, toPath: home.path + "/data/log")
        let ingest = try IngestProcess(home: home)
        let status = try ingest.client().call("status")
        #expect(status["log"]?["identity"]?.stringValue?.count == 32)
        #expect(status["partitions"]?.arrayValue?.count == 2)
        let same: JSONValue = [
            "id": "usage-3", "type": "UsageReported",
            "value": ["resourceId": "sub-a", "timestamp": "2024-03-01T00:10:00Z", "meterName": "email", "quantity": 4],
        ]
        let other: JSONValue = [
            "id": "usage-3", "type": "UsageReported",
            "value": ["resourceId": "sub-a", "timestamp": "2024-03-01T00:10:00Z", "meterName": "email", "quantity": 40],
        ]
        let results = try ingest.client().call(appendRequest([same, other]))["results"]?.arrayValue ?? []
        #expect(results.map { $0["status"]?.stringValue } == ["duplicate", "conflict"])
        ingest.kill(SIGTERM)
        #expect(ingest.readErrors().contains("converted the format-1 log"))
    }
}
