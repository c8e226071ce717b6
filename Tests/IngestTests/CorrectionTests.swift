import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

@Suite("meter-ingest: voids and event-time attribution")
struct CorrectionTests {
    static func purchase(_ resource: String) throws -> JSONValue {
        try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(resource)","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"cpu":{"type":"simple","dimension":"cpu"}}}}}}"#
        )
    }

    static func void(_ ids: [String], reason: String? = nil, id: String? = nil) -> JSONValue {
        var value = JSONObject(["ids": .array(ids.map { .string($0) })])
        if let reason { value["reason"] = .string(reason) }
        var envelope = JSONObject(["type": "UsageVoided", "value": .object(value)])
        if let id { envelope["id"] = .string(id) }
        return .object(envelope)
    }

    static func results(_ client: UnixClient, _ events: [JSONValue]) throws -> [JSONValue] {
        try client.call(appendRequest(events))["results"]?.arrayValue ?? []
    }

    @Test(
        "a void is written once per id into the partition of the usage it voids, with that usage attached; sent again it is a duplicate, also after a restart"
    )
    func voidRecords() throws {
        let home = StackHome()
        var ingest = try IngestProcess(home: home, environment: ["METERING_CLOCK": "manual"])
        let client = try ingest.client()
        let placed = try Self.results(
            client,
            [try Self.purchase("sub-a"), try Self.purchase("sub-b"), usage("sub-a", "5", id: "a-1"), usage("sub-b", "7", id: "b-1")])
        let usagePositions = placed[2...].map { ($0["partition"]?.intValue ?? -1, $0["sequence"]?.intValue ?? -1) }
        // The usage and its void in one batch: the void finds the usage of its own group.
        let results = try Self.results(client, [usage("sub-a", "2", id: "a-2"), Self.void(["a-1", "b-1", "a-2"], reason: "sent twice")])
        #expect(results.map { $0["status"]?.stringValue } == ["accepted", "accepted"], "\(results)")
        let records = try readAll(client, partitions: 4).filter { $0["event"]?["type"] == "UsageVoided" }
        #expect(records.count == 3)
        for (key, partition, sequence) in [
            ("a-1", usagePositions[0].0, usagePositions[0].1), ("b-1", usagePositions[1].0, usagePositions[1].1),
        ] {
            let record = try #require(records.first { $0["event"]?["value"]?["ids"] == [.string(key)] })
            #expect(record["partition"]?.intValue == partition)
            #expect(record["event"]?["value"]?["voided"]?["sequence"]?.intValue == sequence)
            #expect(record["event"]?["value"]?["voided"]?["event"]?["id"] == .string(key))
            #expect(record["event"]?["value"]?["reason"] == "sent twice")
            #expect(record["sequence"]?.intValue ?? -1 > sequence)
        }
        let again = try Self.results(client, [Self.void(["a-1", "b-1", "a-2"], reason: "sent twice")])
        #expect(again.first?["status"] == "duplicate")
        ingest.kill(SIGKILL)
        ingest = try IngestProcess(home: home, environment: ["METERING_CLOCK": "manual"])
        let afterRestart = try Self.results(try ingest.client(), [Self.void(["a-1", "b-1", "a-2"], reason: "sent twice")])
        #expect(afterRestart.first?["status"] == "duplicate", "\(afterRestart)")
        let other = try Self.results(try ingest.client(), [Self.void(["b-1"], reason: "another reason")])
        #expect(other.first?["status"] == "rejected")
        #expect(other.first?["error"]?["message"]?.stringValue?.contains("was already voided") == true, "\(other)")
    }

    @Test("voiding an unknown id, an id past the window, a voided id or a purchase is refused with a reason, and nothing is appended")
    func refusals() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_CLOCK": "manual", "METERING_IDEMPOTENCY_DAYS": "1"])
        let client = try ingest.client()
        var purchase = try Self.purchase("sub-b").objectValue!
        purchase["id"] = "buy-b"
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "1970-01-01T00:00:00Z"])))
        _ = try Self.results(client, [try Self.purchase("sub-a"), usage("sub-a", "1", id: "old")])
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "1970-01-01T20:00:00Z"])))
        _ = try Self.results(client, [.object(purchase), usage("sub-a", "1", id: "fresh"), usage("sub-a", "1", id: "voided")])
        _ = try Self.results(client, [Self.void(["voided"])])
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "1970-01-02T00:00:01Z"])))
        let before = try readAll(client, partitions: 4).filter { $0["event"]?["type"] != "Ping" }.count
        let cases: [(ids: [String], code: String, words: String)] = [
            // A second void of an id (another message than the first) is refused; the same message again is a duplicate.
            (["nobody-sent-this"], "not_found", "no event was sent with id \"nobody-sent-this\" in the last 1 days"),
            // Past the window: the index has forgotten it (or, until its hourly sweep, knows it is too old).
            (["old"], "not_found", "\"old\""),
            (["voided"], "conflict", "was already voided"),
            (["buy-b"], "invalid_event", "names a SubscriptionPurchased"),
            (["fresh", "nobody-sent-this"], "not_found", "nobody-sent-this"),
        ]
        for (ids, code, words) in cases {
            let result = try #require(try Self.results(client, [Self.void(ids, reason: "a second thought")]).first)
            #expect(result["status"] == "rejected", "\(ids)")
            #expect(result["error"]?["code"] == .string(code), "\(ids): \(result)")
            #expect(result["error"]?["message"]?.stringValue?.contains(words) == true, "\(ids): \(result)")
        }
        let malformed = try #require(try Self.results(client, [Self.void([])]).first)
        #expect(malformed["error"]?["message"]?.stringValue?.contains("value.ids") == true)
        // The refused voids appended nothing.
        #expect(try readAll(client, partitions: 4).filter { $0["event"]?["type"] != "Ping" }.count == before)
    }

    @Test(
        "under event-time attribution every tick carries it, status shows it, and a timestamp too far ahead of the clock is refused; a bad setting stops start-up naming it"
    )
    func attribution() throws {
        let home = StackHome()
        let ingest = try IngestProcess(
            home: home, environment: ["METERING_CLOCK": "manual", "METERING_ATTRIBUTION": "event", "METERING_LATE_GRACE": "90m"])
        let client = try ingest.client()
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2022-09-19T13:30:00Z"])))
        let status = try client.call("status")
        #expect(status["attribution"]?["mode"] == "event")
        #expect(status["attribution"]?["lateGraceSeconds"]?.intValue == 5400)
        let ticks = try readAll(client, partitions: 4).filter { $0["event"]?["type"] == "Ping" }
        #expect(ticks.count == 8)
        #expect(ticks.allSatisfy { $0["event"]?["value"]?["attribution"] == "event" && $0["event"]?["value"]?["lateGraceSeconds"] == 5400 })
        // usage() is stamped 2022-09-19T13:26:22Z: behind the clock, fine.
        let late = try Self.results(client, [usage("r", "1")])
        #expect(late.first?["status"] == "accepted")
        let future = try JSONParser.parse(
            #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"2022-09-19T13:36:00Z","meterName":"cpu","quantity":1}}"#)
        let refused = try #require(try Self.results(client, [future]).first)
        #expect(refused["status"] == "rejected")
        #expect(refused["error"]?["message"]?.stringValue?.contains("value.timestamp: 2022-09-19T13:36:00") == true, "\(refused)")
        let skew = try JSONParser.parse(
            #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"2022-09-19T13:34:00Z","meterName":"cpu","quantity":1}}"#)
        #expect(try Self.results(client, [skew]).first?["status"] == "accepted")

        for (variables, words) in [
            (["METERING_LATE_GRACE": "1h"], "METERING_LATE_GRACE=\"1h\" applies to event-time attribution only"),
            (["METERING_ATTRIBUTION": "event", "METERING_LATE_GRACE": "7h"], "invalid METERING_LATE_GRACE=\"7h\""),
            (["METERING_ATTRIBUTION": "timestamp"], "invalid METERING_ATTRIBUTION=\"timestamp\""),
        ] {
            var environment = ["METERING_HOME": StackHome().path]
            environment.merge(variables) { $1 }
            let outcome = try TestCommand.run(Binaries.path("meter-ingest"), [], environment: environment, timeout: 20)
            #expect(outcome.status == 64 && !outcome.timedOut, "\(variables): \(outcome.errors)")
            #expect(outcome.errors.contains(words), "\(variables): \(outcome.errors)")
        }
    }
}
