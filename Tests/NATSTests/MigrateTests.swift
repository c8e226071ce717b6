import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meterctl log migrate", .serialized)
struct MigrateTests {
    @Test("an embedded log copied into a stream serves the same records, keeps its keys and identity, and the aggregator goes on")
    func migrate() throws {
        let cluster = try NATSCluster(nodes: 1)
        let home = StackHome()
        var ingest = try IngestProcess(home: home)
        let aggregator = try AggregatorProcess(home: home)
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-03-01T10:00:00Z"])))
        let purchase = try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"migrated","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":0}}}}}}"#
        )
        _ = try ingest.client().call(appendRequest([purchase]))
        let events = (0..<300).map { usage("migrated", "1", id: "m-\($0)", meter: "email") }
        _ = try ingest.client().call(appendRequest(events))
        try aggregator.waitUntilCaughtUp(with: ingest)
        let before = try readAll(try ingest.client(), partitions: 4)
        let identity = try ingest.client().call("status")["log"]?["identity"]
        ingest.kill(SIGTERM)

        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "METERING_HOME")
        let arguments = ["log", "migrate", "--home", home.path, "--nats-url", cluster.url(0), "--nats-replicas", "1"]
        let first = try runToEnd("meterctl", arguments, environment: environment)
        #expect(first.status == 0, "\(first.output) \(first.errors)")
        #expect(first.output.contains("copied \(before.count) records"), "\(first.output)")
        // Again: nothing left to copy, and the copy checked once more.
        let again = try runToEnd("meterctl", arguments, environment: environment)
        #expect(again.status == 0 && again.output.contains("continuing") && again.output.contains("copied 0 records"), "\(again.output)")

        ingest = try IngestProcess(
            home: home, environment: ["METERING_STORE": "jetstream", "METERING_NATS_URL": cluster.url(0), "METERING_NATS_REPLICAS": "1"])
        #expect(try ingest.client().call("status")["log"]?["identity"] == identity)
        let after = try readAll(try ingest.client(), partitions: 4)
        // The same records, followed by the tick of this start.
        #expect(Array(after.filter { $0["event"]?["type"] != "Ping" }) == before.filter { $0["event"]?["type"] != "Ping" })
        #expect(after.count == before.count + 4)
        // The keys came along: a resend is a duplicate at its first place.
        let resent = try ingest.client().call(appendRequest([events[7]]))["results"]?.arrayValue?.first
        #expect(resent?["status"] == "duplicate")
        let original = before.first { $0["event"]?["id"] == "m-7" }
        #expect(resent?["sequence"] == original?["sequence"] && resent?["partition"] == original?["partition"])
        // The aggregator follows the stream where it left the log (same identity: no fold from the start).
        _ = try ingest.client().call(appendRequest([usage("migrated", "1", id: "m-new", meter: "email")]))
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(!aggregator.log().contains("the log was replaced"))
    }

    @Test("a stream holding another log is refused, and the log is left as it was")
    func otherLog() throws {
        let cluster = try NATSCluster(nodes: 1)
        let homes = [StackHome(), StackHome()]
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "METERING_HOME")
        for home in homes {
            let ingest = try IngestProcess(home: home)
            _ = try ingest.client().call(appendRequest([usage("x", "1", id: "k")]))
            ingest.kill(SIGTERM)
        }
        let arguments = { (home: StackHome) in
            ["log", "migrate", "--home", home.path, "--nats-url", cluster.url(0), "--nats-replicas", "1"]
        }
        #expect(try runToEnd("meterctl", arguments(homes[0]), environment: environment).status == 0)
        let refused = try runToEnd("meterctl", arguments(homes[1]), environment: environment)
        #expect(refused.status != 0 && refused.errors.contains("already holds another log"), "\(refused.output) \(refused.errors)")
        let check = try runToEnd("meterctl", ["log", "check", "--home", homes[1].path], environment: environment)
        #expect(check.status == 0, "\(check.errors)")
    }
}
