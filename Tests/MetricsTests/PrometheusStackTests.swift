import Foundation
import HTTP
import StackTestSupport
import Testing
import Transport
import Wire

/// Every daemon of a real stack serves metrics on loopback; Debian's `promtool` checks each
/// exposition, and a real Prometheus scrapes them all for a few seconds.
@Suite("Metrics of the whole stack, checked by Prometheus", .serialized)
struct PrometheusStackTests {
    static let install = "install it with: apt-get install -y prometheus (scripts/bootstrap does)"
    static let daemons = [
        "meter-ingest", "meter-aggregator", "meter-query", "meter-submitter", "meter-notifier", "meter-connector", "meter-frontdoor",
    ]

    /// The address each daemon wrote to `run/metrics/<name>.addr`.
    static func addresses(_ home: StackHome, timeout: Double = 30) throws -> [String: String] {
        let deadline = Date().addingTimeInterval(timeout)
        var found: [String: String] = [:]
        while Date() < deadline {
            for name in daemons where found[name] == nil { found[name] = metricsAddress(home, name) }
            if found.count == daemons.count { return found }
            usleep(50_000)
        }
        throw Failure("metrics addresses found only for \(found.keys.sorted())")
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func scrape(_ address: String) throws -> String {
        let response = try TestHTTPClient(port: metricsPort(address)).request("GET", "/metrics")
        guard response.status == 200 else { throw Failure("GET \(address)/metrics answered \(response.status)") }
        return response.text
    }

    @Test("every daemon's metrics pass promtool check metrics, and a real Prometheus scrapes them all")
    func promtoolAndPrometheus() throws {
        let promtool = try #require(TestCommand.find("promtool"), "promtool is not installed; \(Self.install)")
        let prometheus = try #require(TestCommand.find("prometheus"), "prometheus is not installed; \(Self.install)")
        let home = StackHome()
        let metrics = ["METERING_METRICS_ADDR": "127.0.0.1:0"]
        let ingest = try IngestProcess(home: home, environment: metrics.merging(["METERING_PARTITIONS": "2"]) { $1 })
        let emulator = try EmulatorProcess(home: home)
        let aggregator = try AggregatorProcess(home: home, environment: metrics)
        let queryService = try QueryProcess(home: home, environment: metrics)
        let submitter = try SubmitterProcess(home: home, environment: emulator.submitterEnvironment.merging(metrics) { $1 })
        let notifier = try NotifierProcess(home: home, environment: metrics)
        let log = home.path + "/app.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let config = home.path + "/connector.json"
        try
            #"{"sources":[{"name":"jobs","file":"\#(log)","format":"csv","meters":[{"name":"cpu","subscription":{"field":"sub"},"timestamp":"time","quantity":{"sum":"cpu"}}]}]}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        let connector = try ConnectorProcess(home: home, config: config, environment: metrics)
        let frontDoor = try FrontDoorProcess(home: home, environment: metrics)

        // Traffic, so the figures are not all zero: a purchase, usage past the included quantity,
        // an hour closed, a refused event, a refused front-door request, a malformed connector line.
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-03-01T10:00:00Z"])))
        let purchase: JSONValue = [
            "type": "SubscriptionPurchased",
            "value": [
                "subscription": [
                    "resourceId": "sub-1", "subscriptionStart": "2024-03-01T00:00:00Z", "renewalInterval": "Monthly",
                    "plan": ["planId": "basic", "billingDimensions": ["cpu": ["type": "simple", "dimension": "cpu", "included": 5]]],
                ]
            ],
        ]
        _ = try ingest.client().call(appendRequest([purchase, usage("sub-1", "12"), usage("nobody", "1"), ["type": "Nonsense"]]))
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-03-01T11:00:00Z"])))
        _ = try TestHTTPClient(port: frontDoor.port).request("POST", "/v1/messages", body: Array("{}".utf8))
        try "sub,time,cpu\nnot a line\n".write(toFile: log, atomically: false, encoding: .utf8)
        try aggregator.waitUntilCaughtUp(with: ingest)

        let addresses = try Self.addresses(home)
        for (name, address) in addresses.sorted(by: { $0.key < $1.key }) {
            let text = try Self.scrape(address)
            #expect(text.contains("metering_build_info{component=\"\(name)\""), "\(name): \(text.prefix(300))")
            let check = try TestCommand.run(promtool, ["check", "metrics"], input: text)
            #expect(check.status == 0 && check.output.isEmpty && check.errors.isEmpty, "\(name): \(check.output) \(check.errors)")
        }
        let ingestText = try Self.scrape(addresses["meter-ingest"]!)
        #expect(ingestText.contains("metering_ingest_refused_events_total{reason=\"invalid_event\"} 1"), "\(ingestText)")
        #expect(ingestText.contains("metering_ingest_commit_sync_seconds_count"))
        let aggregatorText = try Self.scrape(addresses["meter-aggregator"]!)
        #expect(aggregatorText.contains("metering_aggregator_unprocessable_records{partition="))
        #expect(
            aggregatorText.contains("metering_aggregator_oldest_pending_hour_seconds")
                || aggregatorText.contains("metering_aggregator_pending_items"))
        let frontDoorText = try Self.scrape(addresses["meter-frontdoor"]!)
        #expect(frontDoorText.contains("metering_frontdoor_refused_requests_total{reason="), "\(frontDoorText)")

        // A real Prometheus scrapes every endpoint for a few seconds.
        let port = try LoopbackPort.free()
        let targets = addresses.values.map { "'" + $0.replacingOccurrences(of: "http://", with: "") + "'" }.sorted().joined(separator: ", ")
        let configuration = home.path + "/prometheus.yml"
        try """
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        rule_files:
          - \(Self.rulesPath)
        scrape_configs:
          - job_name: metering
            static_configs:
              - targets: [\(targets)]
        """.write(toFile: configuration, atomically: true, encoding: .utf8)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: prometheus)
        server.arguments = [
            "--config.file=\(configuration)", "--storage.tsdb.path=\(home.path)/tsdb", "--web.listen-address=127.0.0.1:\(port)",
        ]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            server.terminate()
            server.waitUntilExit()
        }
        // Prometheus answers large documents chunked: read them with a full client.
        let http = HTTPClient(timeout: 10)
        func get(_ target: String) -> JSONValue? {
            guard let url = URL(string: "http://127.0.0.1:\(port)" + target),
                let reply = try? http.send("GET", url, headers: [:], body: nil)
            else { return nil }
            return try? JSONParser.parse(reply.body)
        }
        func query(_ expression: String) -> [JSONValue] {
            get("/api/v1/query?query=" + (expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""))?["data"]?[
                "result"]?
                .arrayValue ?? []
        }
        let deadline = Date().addingTimeInterval(60)
        var up: [JSONValue] = []
        while Date() < deadline {
            up = query("up == 1")
            if up.count == addresses.count { break }
            usleep(250_000)
        }
        #expect(up.count == addresses.count, "targets up: \(up.map { JSONWriter.string($0["metric"] ?? .null) })")
        // Several scrapes of each, so the rules were evaluated on real series.
        usleep(3_000_000)
        let counted = query("count(count by (job, instance) (metering_build_info))").first?["value"]?.arrayValue?.last
        #expect(counted == JSONValue.string(String(addresses.count)))
        #expect(query("sum(metering_ingest_appended_records_total)").count == 1)
        let rules = get("/api/v1/rules")
        let groups = rules?["data"]?["groups"]?.arrayValue ?? []
        #expect(!groups.isEmpty && groups.allSatisfy { group in (group["rules"]?.arrayValue ?? []).allSatisfy { $0["health"] == "ok" } })
        _ = (ingest, emulator, aggregator, queryService, submitter, notifier, connector, frontDoor)
    }

    /// deploy/prometheus/alerts.yml, from this file's place in the repository.
    static let rulesPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/prometheus/alerts.yml").path

    @Test("the shipped alerting rules pass promtool check rules")
    func alertRules() throws {
        let promtool = try #require(TestCommand.find("promtool"), "promtool is not installed; \(Self.install)")
        let check = try TestCommand.run(promtool, ["check", "rules", Self.rulesPath])
        #expect(check.status == 0, "\(check.output) \(check.errors)")
        #expect(check.output.contains("SUCCESS"))
    }
}
