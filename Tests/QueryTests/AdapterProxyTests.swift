import Foundation
import StackTestSupport
import Synchronization
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The usage API behind deploy/nginx/metering-adapters.conf as shipped, in a real nginx with a
/// test certificate, in front of two meter-query replicas; and the example adapter of
/// docs/BILLING-ADAPTERS.md, run as written there.
@Suite("The usage API through the shipped nginx configuration", .serialized)
struct AdapterProxyTests {
    /// The Python block after the example-adapter marker of docs/BILLING-ADAPTERS.md.
    static func exampleAdapter() throws -> String {
        let page = try String(contentsOfFile: Repository.root + "/docs/BILLING-ADAPTERS.md", encoding: .utf8)
        let marker = try #require(page.range(of: "<!-- example-adapter: the test extracts the block below -->"))
        let rest = page[marker.upperBound...]
        let open = try #require(rest.range(of: "```python\n"))
        let close = try #require(rest[open.upperBound...].range(of: "\n```\n"))
        return String(rest[open.upperBound..<close.lowerBound]) + "\n"
    }

    /// curl through the proxy, trusting the test certificate: the status and the body.
    static func curl(_ url: String, certificate: TestCertificate, key: String? = nil, method: String = "GET") throws -> (Int, String) {
        var arguments = [
            "--silent", "--show-error", "--max-time", "20", "--cacert", certificate.certificate, "-X", method, "-w", "\n%{http_code}",
        ]
        if let key { arguments += ["-H", "Authorization: Bearer \(key)"] }
        let outcome = try TestCommand.run(try SystemTools.path("curl"), arguments + [url])
        let lines = outcome.output.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test(
        "the example adapter pages every usage record exactly once through nginx and two replicas, while usage keeps arriving and one replica is killed"
    )
    func exampleAdapterThroughTheProxy() throws {
        let python = try #require(TestCommand.find("python3"), "python3 runs the example adapter")
        let home = StackHome()
        let credentials = home.path + "/data/adapters/credentials.json"
        let ingest = try IngestProcess(home: home)
        let work = Workload(ingest: ingest)
        let environment = ["METERING_QUERY_ADAPTER_HTTP": "127.0.0.1:0", "METERING_ADAPTER_CREDENTIALS": credentials]
        let replicaA = try QueryProcess(home: home, environment: environment)
        let portA = try replicaA.adapterPort()
        var other = environment
        other["METERING_HOME"] = home.path + "/b"
        other["METERING_INGEST_SOCKET"] = home.clientSocket
        let replicaB = try ServerProcess(
            executable: "meter-query", home: home, readySocket: home.path + "/b/run/query.sock", environment: other)
        let portB = try replicaB.port(addressFile: home.path + "/b/run/query-adapters.addr")
        let certificate = try TestCertificate(directory: home.path)
        let proxy = try NginxProxy(
            directory: home.path, site: "metering-adapters.conf",
            replacements: [("    server 127.0.0.1:8092;\n", "    server 127.0.0.1:\(portA);\n    server 127.0.0.1:\(portB);\n")],
            certificate: certificate)
        let key = try AdapterReplicaTests.createKey(home: home, file: credentials)

        // What the proxy answers by itself, and what passes through.
        #expect(try Self.curl(proxy.baseURL + "/v1/health", certificate: certificate).0 == 200)
        let anonymous = try Self.curl(proxy.baseURL + "/v1/usage", certificate: certificate)
        #expect(anonymous.0 == 401)
        #expect(anonymous.1.contains("\"unauthorized\""))
        let elsewhere = try Self.curl(proxy.baseURL + "/api/runrate", certificate: certificate, key: key)
        #expect(elsewhere.0 == 404)
        #expect(elsewhere.1.contains("the usage API is under /v1/"))
        #expect(try Self.curl(proxy.baseURL + "/v1/usage", certificate: certificate, key: key, method: "DELETE").0 == 405)

        try work.advance(to: "2024-03-01T00:00:00Z")
        let subscriptions = (0..<8).map { "proxy-sub-\($0)" }
        try work.send(try subscriptions.map { try work.purchase($0, start: "2024-03-01T00:00:00Z") })
        let hours = 24
        let written = Mutex(0)
        let writer = Thread {
            for hour in 0..<hours {
                _ = try? work.send(subscriptions.map { work.usage($0, "email", "2.25") })
                let next = Timestamp(iso8601: "2024-03-01T00:00:00Z")!.adding(microseconds: Int64(hour + 1) * Timestamp.microsecondsPerHour)
                try? work.advance(to: next.iso8601)
                written.withLock { $0 = hour + 1 }
                usleep(80_000)
            }
        }
        writer.start()

        let script = home.path + "/billing-adapter.py"
        try Self.exampleAdapter().write(toFile: script, atomically: true, encoding: .utf8)
        var adapterEnvironment = ProcessInfo.processInfo.environment
        adapterEnvironment["METERING_USAGE_URL"] = proxy.baseURL
        adapterEnvironment["METERING_ADAPTER_KEY"] = key
        adapterEnvironment["SSL_CERT_FILE"] = certificate.certificate
        adapterEnvironment["ADAPTER_STATE"] = home.path + "/adapter.state"
        adapterEnvironment["ADAPTER_OUTPUT"] = home.path + "/usage.jsonl"
        adapterEnvironment["ADAPTER_BATCH"] = "7"
        adapterEnvironment["ADAPTER_MAX_PAGES"] = "2"
        func lines() -> [JSONValue] {
            ((try? String(contentsOfFile: home.path + "/usage.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                try? JSONParser.parse(Array($0.utf8))
            }
        }
        // Short runs, as from a timer, while the writer goes on; half-way, replica A dies.
        let expected = subscriptions.count * hours
        var runs = 0
        var killed = false
        let deadline = Date().addingTimeInterval(120)
        while lines().count < expected && Date() < deadline {
            let run = try TestCommand.run(python, [script], environment: adapterEnvironment, timeout: 60)
            #expect(run.status == 0, "\(run.errors)")
            runs += 1
            if !killed && lines().count >= expected / 2 {
                replicaA.kill()
                killed = true
            }
            if lines().count < expected { usleep(50_000) }
        }
        #expect(killed, "replica A was killed while the adapter was reading")
        let records = lines()
        #expect(records.count == expected, "after \(runs) runs")
        #expect(records.map { $0["id"]?.intValue ?? -1 } == Array(0..<expected), "every id once, in order")
        let slots = Set(records.map { "\($0["resourceId"]?.stringValue ?? "") \($0["hour"]?.stringValue ?? "")" })
        #expect(slots.count == expected)
        #expect(records.allSatisfy { $0["quantity"] == .number("2.25") })
        #expect(written.withLock { $0 } == hours)
        #expect(!proxy.accessLog.contains(key) && !proxy.accessLog.contains(String(key.split(separator: ".").last ?? "")))
        _ = replicaB
    }

    @Test("usage older than the retention is refused as expired: the example adapter stops with status 3 and names the first readable id")
    func exampleAdapterMeetsTheRetention() throws {
        let python = try #require(TestCommand.find("python3"), "python3 runs the example adapter")
        let home = StackHome()
        let credentials = home.path + "/data/adapters/credentials.json"
        let ingest = try IngestProcess(home: home)
        let work = Workload(ingest: ingest)
        let query = try QueryProcess(
            home: home,
            environment: [
                "METERING_QUERY_ADAPTER_HTTP": "127.0.0.1:0", "METERING_ADAPTER_CREDENTIALS": credentials,
                "METERING_QUERY_USAGE_RETENTION_DAYS": "1",
            ])
        let port = try query.adapterPort()
        let key = try AdapterReplicaTests.createKey(home: home, file: credentials)
        try work.advance(to: "2024-03-01T00:00:00Z")
        try work.send([try work.purchase("kept-sub", start: "2024-03-01T00:00:00Z")])
        // One record an hour for three days; the horizon ends on Mar 4 at 00:00, so what closed
        // before Mar 3 has aged out.
        for hour in 0..<72 {
            try work.send([work.usage("kept-sub", "email", "1")])
            let next = Timestamp(iso8601: "2024-03-01T00:00:00Z")!.adding(microseconds: Int64(hour + 1) * Timestamp.microsecondsPerHour)
            try work.advance(to: next.iso8601)
        }
        try query.waitUntilCaughtUp(with: ingest)
        let status = try query.client().call("status")["usage"]
        #expect(status?["expiredBefore"] == "2024-03-03T00:00:00Z")
        let firstId = try #require(status?["firstId"]?.intValue)
        #expect(firstId == 47, "the 47 hours closed on Mar 1 and 2 (at 01:00 to 23:00 of Mar 2) aged out")

        let script = home.path + "/billing-adapter.py"
        try Self.exampleAdapter().write(toFile: script, atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["METERING_USAGE_URL"] = "http://127.0.0.1:\(port)"
        environment["METERING_ADAPTER_KEY"] = key
        environment["ADAPTER_STATE"] = home.path + "/adapter.state"
        environment["ADAPTER_OUTPUT"] = home.path + "/usage.jsonl"
        let refused = try TestCommand.run(python, [script], environment: environment, timeout: 60)
        #expect(refused.status == 3, "\(refused.errors)")
        #expect(refused.errors.contains("ids from 0 on aged out; the first readable id is \(firstId)"), "\(refused.errors)")
        #expect(!FileManager.default.fileExists(atPath: home.path + "/usage.jsonl"), "nothing was written")
        // Told to continue from the first readable id, it reads the rest.
        try "\(firstId)\n".write(toFile: home.path + "/adapter.state", atomically: true, encoding: .utf8)
        let resumed = try TestCommand.run(python, [script], environment: environment, timeout: 60)
        #expect(resumed.status == 0, "\(resumed.errors)")
        let read = ((try? String(contentsOfFile: home.path + "/usage.jsonl", encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(read.count == 72 - firstId)
    }
}
