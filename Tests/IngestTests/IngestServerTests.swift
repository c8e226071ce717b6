import Foundation
import StackTestSupport
import TestFixtures
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meter-ingest over its sockets", .serialized)
struct IngestServerTests {
    @Test("every sample message is accepted over the sockets and reads back with the same meaning")
    func samplesRoundTrip() throws {
        try Self.roundTrip(try Fixtures.internalMessages().map(\.message))
    }

    @Test(
        "every message of the reference's own samples is accepted over the sockets and reads back the same",
        .enabled(if: Fixtures.referenceDirectory != nil, Comment(rawValue: Fixtures.referenceMissing)))
    func referenceSamplesRoundTrip() throws {
        try Self.roundTrip(try Fixtures.internalMessages(in: Fixtures.referenceDirectory ?? "").map(\.message))
    }

    static func roundTrip(_ messages: [JSONValue]) throws {
        let home = StackHome()
        // The default 4 partitions: a sample's Ping for a higher partition is carried by partitionId mod 4.
        let ingest = try IngestProcess(home: home)
        #expect(messages.count >= 20)
        let client = try ingest.client()
        let admin = try ingest.admin()
        var placed: [(JSONValue, Int, Int)] = []
        for message in messages {
            let type = message["type"]?.stringValue ?? ""
            let isClient = ["SubscriptionPurchased", "UsageReported", "SubscriptionDeleted"].contains(type)
            let response = try (isClient ? client : admin).call(appendRequest([message]))
            let result = try #require(response["results"]?.arrayValue?.first)
            #expect(result["status"] == "accepted", "\(type): \(JSONWriter.string(result))")
            placed.append((message, try #require(result["partition"]?.intValue), try #require(result["sequence"]?.intValue)))
        }
        let records = try readAll(client, partitions: 4)
        for (message, partition, sequence) in placed {
            let record = try #require(records.first { $0["partition"]?.intValue == partition && $0["sequence"]?.intValue == sequence })
            #expect(record["event"]?.isEquivalent(to: message) == true, "\(JSONWriter.string(message))")
            #expect(record["enqueuedTime"]?.stringValue != nil)
        }
    }

    @Test("internal messages are refused on the client socket and accepted on the admin socket")
    func internalMessagesNeedAdmin() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let removal = try JSONParser.parse(#"{"type":"RemoveUnprocessedMessages","value":{"partitionId":"0","all":"all"}}"#)
        let refused = try ingest.client().call(appendRequest([removal]))
        #expect(refused["results"]?.arrayValue?.first?["error"]?["code"] == "forbidden")
        let accepted = try ingest.admin().call(appendRequest([removal]))
        #expect(accepted["results"]?.arrayValue?.first?["status"] == "accepted")
        let clock = Request(op: "advance-clock", fields: JSONObject(["to": "2022-01-01T00:00:00Z"]))
        #expect(throws: UnixClient.Failure.self) { try ingest.client().call(clock) }
    }

    @Test("one bad event in a batch rejects only that event, with an actionable message")
    func badEventRejectsOnlyItself() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let bad = try JSONParser.parse(
            #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"2022-01-01T00:00:00Z","meterName":"cpu","quantity":-5}}"#)
        let response = try ingest.client().call(appendRequest([usage("r", "1"), bad, usage("r", "2")]))
        let results = try #require(response["results"]?.arrayValue)
        #expect(results.map { $0["status"]?.stringValue } == ["accepted", "rejected", "accepted"])
        #expect(results[1]["error"]?["code"] == "invalid_event")
        #expect(results[1]["error"]?["message"]?.stringValue?.contains("value.quantity: must not be negative") == true)
        #expect(results[2]["sequence"]?.intValue == (results[0]["sequence"]?.intValue ?? -9) + 1)
    }

    @Test("a repeated idempotency key is answered duplicate with the original position, also after a restart")
    func idempotencyAcrossRestart() throws {
        let home = StackHome()
        var ingest = try IngestProcess(home: home)
        let first = try ingest.client().call(appendRequest([usage("sub-a", "1.5", id: "key-1")]))
        let original = try #require(first["results"]?.arrayValue?.first)
        #expect(original["status"] == "accepted")
        let again = try ingest.client().call(
            appendRequest([usage("sub-a", "1.5", id: "key-1"), usage("sub-a", "1", id: "key-2"), usage("sub-a", "1", id: "key-2")]))
        let results = try #require(again["results"]?.arrayValue)
        #expect(results.map { $0["status"]?.stringValue } == ["duplicate", "accepted", "duplicate"])
        #expect(results[0]["sequence"] == original["sequence"])
        ingest.kill(SIGTERM)
        #expect(ingest.process.terminationStatus == 0)
        ingest = try IngestProcess(home: home)
        let afterRestart = try ingest.client().call(appendRequest([usage("sub-a", "1.5", id: "key-1")]))
        #expect(afterRestart["results"]?.arrayValue?.first?["status"] == "duplicate")
        #expect(afterRestart["results"]?.arrayValue?.first?["sequence"] == original["sequence"])
    }

    @Test("the manual clock moves enqueued time forward, ticks every partition and never goes back")
    func manualClock() throws {
        let home = StackHome()
        var ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "3"])
        let admin = try ingest.admin()
        let before = try ingest.client().call(appendRequest([usage("r", "1")]))
        #expect(before["results"]?.arrayValue?.first?["enqueuedTime"] == "1970-01-01T00:00:00Z")
        let moved = try admin.call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-02-29T10:00:00Z"])))
        #expect(moved["ticks"]?.arrayValue?.count == 3)
        let after = try ingest.client().call(appendRequest([usage("r", "1")]))
        #expect(after["results"]?.arrayValue?.first?["enqueuedTime"] == "2024-02-29T10:00:00Z")
        #expect(throws: UnixClient.Failure.self) {
            try admin.call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-02-29T09:00:00Z"])))
        }
        ingest.kill(SIGKILL)
        ingest = try IngestProcess(home: home)
        let status = try ingest.client().call("status")
        #expect(status["time"] == "2024-02-29T10:00:00Z")
        let records = try readAll(ingest.client(), partitions: 3)
        let ticks = records.filter { $0["event"]?["type"] == "Ping" }
        #expect(ticks.count == 3 + 3 + 3)  // start-up, advance, restart
        for partition in 0..<3 {
            let times = records.filter { $0["partition"]?.intValue == partition }.compactMap { $0["enqueuedTime"]?.stringValue }
                .compactMap { Timestamp(iso8601: $0) }
            #expect(times == times.sorted())
        }
    }

    @Test("pipelined requests are answered in order, each echoing its id")
    func pipelining() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let client = try ingest.client()
        for index in 0..<50 {
            if index % 3 == 0 {
                try client.send(Request(op: "status", id: .number(String(index))))
            } else {
                try client.send(appendRequest([usage("p-\(index)", "1")], id: .number(String(index))))
            }
        }
        for index in 0..<50 {
            let response = try client.receive()
            #expect(response["id"] == .number(String(index)))
            #expect(response["ok"] == .bool(true))
        }
    }

    @Test("follow sends what is there, then every newly durable record, until the client leaves")
    func follow() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "1"])
        let follower = try ingest.client()
        follower.setReceiveTimeout(seconds: 10)
        try follower.send(Request(op: "follow", fields: JSONObject(["partition": 0, "from": 0])))
        let first = try follower.receive()
        #expect(first["records"]?.arrayValue?.count == 1)  // the start-up tick
        _ = try ingest.client().call(appendRequest([usage("f", "1"), usage("f", "2")]))
        var seen: [Int] = []
        while seen.count < 2 {
            let frame = try follower.receive()
            seen += (frame["records"]?.arrayValue ?? []).compactMap { $0["sequence"]?.intValue }
        }
        #expect(seen == [1, 2])
    }

    @Test("SIGTERM stops it cleanly and a second ingest cannot take the same log")
    func shutdownAndLock() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let second = Process()
        second.executableURL = URL(fileURLWithPath: Binaries.path("meter-ingest"))
        second.environment = [
            "METERING_HOME": home.path, "METERING_INGEST_SOCKET": home.path + "/b.sock",
            "METERING_INGEST_ADMIN_SOCKET": home.path + "/b-admin.sock",
        ]
        let errors = Pipe()
        second.standardError = errors
        try second.run()
        second.waitUntilExit()
        #expect(second.terminationStatus != 0)
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("owned by another process"))
        ingest.kill(SIGTERM)
        #expect(ingest.process.terminationStatus == 0)
        #expect(ingest.readErrors().contains("stopped cleanly"))
    }

    @Test(
        "a bad setting fails at start-up with a message naming it",
        arguments: [
            ("METERING_PARTITIONS", "0"), ("METERING_CLOCK", "sundial"), ("METERING_MAX_FRAME_BYTES", "12"),
        ])
    func badSettings(variable: String, value: String) throws {
        let home = StackHome()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.path("meter-ingest"))
        process.environment = ["METERING_HOME": home.path, variable: value]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 64)
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains(variable))
    }
}
