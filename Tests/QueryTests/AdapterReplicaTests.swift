import Foundation
import StackTestSupport
import Synchronization
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The usage API of two meter-query replicas over real processes: ingest on the manual clock, a
/// writer reporting usage hour after hour, and an adapter paging `GET /v1/usage` with its key.
@Suite("Billing adapters against two query replicas", .serialized)
struct AdapterReplicaTests {
    static let subscriptions = (0..<12).map { "adapter-sub-\($0)" }
    static let hours = 36

    /// A key from `meterctl adapters create`, written to `file`.
    static func createKey(home: StackHome, file: String, _ arguments: [String] = []) throws -> String {
        var environment = ProcessInfo.processInfo.environment
        environment["METERING_HOME"] = home.path
        environment["METERING_ADAPTER_CREDENTIALS"] = file
        let created = try runToEnd(
            "meterctl", ["adapters", "create", "--json", "--name", "test-adapter"] + arguments, environment: environment)
        let key = try #require(try? JSONParser.parse(Array(created.output.utf8))["key"]?.stringValue, "\(created.errors)")
        return key
    }

    /// One page of `/v1/usage` from the replica at `port`.
    static func page(port: Int, key: String, start: Int, size: Int) throws -> (status: Int, json: JSONValue?) {
        try TestHTTP.call(
            "GET", "http://127.0.0.1:\(port)/v1/usage?startId=\(start)&batchSize=\(size)", headers: ["Authorization": "Bearer \(key)"])
    }

    static func slot(_ record: JSONValue) -> String {
        "\(record["resourceId"]?.stringValue ?? "?") \(record["meterName"]?.stringValue ?? "?") \(record["hour"]?.stringValue ?? "?")"
    }

    @Test(
        "an adapter that moves to a second replica mid-way, while usage keeps arriving, pages every usage record exactly once; both replicas give every record the same id"
    )
    func switchingReplicas() throws {
        let home = StackHome()
        let credentials = home.path + "/data/adapters/credentials.json"
        let ingest = try IngestProcess(home: home)
        let work = Workload(ingest: ingest)
        let adapterEnvironment = ["METERING_QUERY_ADAPTER_HTTP": "127.0.0.1:0", "METERING_ADAPTER_CREDENTIALS": credentials]
        let replicaA = try QueryProcess(home: home, environment: adapterEnvironment)
        let portA = try replicaA.adapterPort()
        try work.advance(to: "2024-03-01T00:00:00Z")
        let key = try Self.createKey(home: home, file: credentials)
        try work.send(try Self.subscriptions.map { try work.purchase($0, start: "2024-03-01T00:00:00Z") })

        // The writer: every hour, usage for every subscription on two meters, then the clock moves;
        // half-way it waits until the adapter has moved, so usage arrives before and after the move.
        let written = Mutex(0)
        let moved = Mutex(false)
        let writer = Thread {
            for hour in 0..<Self.hours {
                let waitUntil = Date().addingTimeInterval(60)
                while hour == Self.hours / 2 && !moved.withLock({ $0 }) && Date() < waitUntil { usleep(10_000) }
                _ = try? work.send(Self.subscriptions.flatMap { [work.usage($0, "email", "3.5"), work.usage($0, "sms", "1")] })
                let next = Timestamp(iso8601: "2024-03-01T00:00:00Z")!.adding(microseconds: Int64(hour + 1) * Timestamp.microsecondsPerHour)
                try? work.advance(to: next.iso8601)
                written.withLock { $0 = hour + 1 }
                usleep(60_000)
            }
        }
        writer.start()

        var seen: [Int: String] = [:]
        var next = 0
        var port = portA
        var replicaB: ServerProcess?
        var portB = 0
        var switchedAt: Int?
        let expected = Self.subscriptions.count * 2 * Self.hours
        let deadline = Date().addingTimeInterval(120)
        while seen.count < expected && Date() < deadline {
            let (status, json) = try Self.page(port: port, key: key, start: next, size: 13)
            #expect(status == 200, "\(json.map(JSONWriter.string) ?? "")")
            let records = json?["records"]?.arrayValue ?? []
            for record in records {
                let id = try #require(record["id"]?.intValue)
                #expect(id == next, "ids are gap-free and in order")
                #expect(seen[id] == nil)
                seen[id] = Self.slot(record)
                next = id + 1
            }
            #expect(json?["nextId"]?.intValue == next)
            // A second replica starts from the log's beginning while the writer goes on; the
            // adapter moves to it once it has read a few pages from the first.
            if replicaB == nil && seen.count >= 100 {
                var environment = adapterEnvironment
                environment["METERING_HOME"] = home.path + "/b"
                environment["METERING_INGEST_SOCKET"] = home.clientSocket
                let socket = home.path + "/b/run/query.sock"
                let started = try ServerProcess(executable: "meter-query", home: home, readySocket: socket, environment: environment)
                portB = try started.port(addressFile: home.path + "/b/run/query-adapters.addr")
                replicaB = started
            } else if replicaB != nil && switchedAt == nil {
                port = portB
                switchedAt = next
                #expect(written.withLock { $0 } < Self.hours, "usage is still arriving when the adapter moves")
                moved.withLock { $0 = true }
            }
            if records.isEmpty { usleep(20_000) }
        }
        writer.cancel()
        while written.withLock({ $0 }) < Self.hours && Date() < deadline { usleep(20_000) }
        let movedAt = try #require(switchedAt)
        #expect(movedAt > 0 && movedAt < expected, "the adapter switched replicas mid-way (at id \(movedAt))")
        #expect(written.withLock { $0 } == Self.hours)
        #expect(seen.count == expected)
        #expect(Set(seen.values).count == expected, "every (subscription, meter, hour) exactly once")

        // Both replicas, asked from the start, give the same record under every id.
        for port in [portA, portB] {
            let (status, json) = try Self.page(port: port, key: key, start: 0, size: 10_000)
            #expect(status == 200)
            let records = json?["records"]?.arrayValue ?? []
            #expect(records.count == expected)
            for record in records {
                let id = record["id"]?.intValue ?? -1
                #expect(seen[id] == Self.slot(record), "replica on port \(port): id \(id)")
            }
        }

        // The rest of the API on the same replicas: plans in the purchase's form, and a key
        // scoped to one subscription sees that one only.
        let (plansStatus, plans) = try TestHTTP.call(
            "GET", "http://127.0.0.1:\(portB)/v1/plans", headers: ["Authorization": "Bearer \(key)"])
        #expect(plansStatus == 200)
        let plan = plans?["plans"]?.arrayValue?.first
        #expect(plans?["plans"]?.arrayValue?.count == 1)
        #expect(plan?["planId"] == "plan-q")
        #expect(plan?["subscriptions"] == .number(String(Self.subscriptions.count)))
        #expect(plan?["billingDimensions"]?["email"] == ["type": "simple", "dimension": "emails", "included": 100])
        #expect(plan?["billingDimensions"]?["calls"]?["tiers"]?.arrayValue?.map { $0["dimension"] } == ["calls-a", "calls-b", "calls-c"])
        let scoped = try Self.createKey(home: home, file: credentials, ["--subscription", "adapter-sub-3"])
        for port in [portA, portB] {
            let (_, usage) = try TestHTTP.call(
                "GET", "http://127.0.0.1:\(port)/v1/usage?batchSize=1000", headers: ["Authorization": "Bearer \(scoped)"])
            let own = usage?["records"]?.arrayValue ?? []
            #expect(own.count == 2 * Self.hours)
            #expect(own.allSatisfy { $0["resourceId"] == "adapter-sub-3" })
            #expect(own.map { seen[$0["id"]?.intValue ?? -1] } == own.map { Self.slot($0) }, "the same ids as for a key that reads all")
            let (_, listed) = try TestHTTP.call(
                "GET", "http://127.0.0.1:\(port)/v1/subscriptions", headers: ["Authorization": "Bearer \(scoped)"])
            #expect(listed?["subscriptions"]?.arrayValue?.map { $0["key"] } == ["adapter-sub-3"])
            #expect(listed?["total"] == 1)
        }
        _ = replicaA
    }
}
