import Foundation
import NATS
import StackTestSupport
import Synchronization
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Two hosts' stacks on one JetStream stream, replicated by a real 3-node nats-server cluster on
/// loopback (the repository's deploy/nats configuration: TLS routes, passwords, file storage, R3).
@Suite("Ingest on a JetStream cluster", .serialized)
struct ClusterFailoverTests {
    static let plan = #"{"planId":"cluster","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":0}}}"#
    static let subscriptions = (0..<8).map { "cluster-sub-\($0)" }

    static func purchase(_ name: String) throws -> JSONValue {
        try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(name)","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(plan)}}}"#
        )
    }

    static func usage(_ name: String, key: String) throws -> JSONValue {
        try JSONParser.parse(
            #"{"id":"\#(key)","type":"UsageReported","value":{"resourceId":"\#(name)","timestamp":"2024-03-01T10:10:00Z","meterName":"email","quantity":1}}"#
        )
    }

    static func advance(_ ingest: IngestProcess, _ time: String) throws {
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": .string(time)])))
    }

    static func jetStreamEnvironment(_ cluster: NATSCluster, node: Int) -> [String: String] {
        ["METERING_STORE": "jetstream", "METERING_NATS_URL": cluster.url(node), "METERING_NATS_REPLICAS": "3"]
    }

    /// Every record of ingest's partitions, per partition.
    static func partitions(_ ingest: IngestProcess) throws -> [[JSONValue]] {
        let records = try readAll(try ingest.client(), partitions: 4)
        return (0..<4).map { partition in records.filter { $0["partition"]?.intValue == partition } }
    }

    /// The emulator's ledger as sorted lines `resource dimension hour quantity`.
    static func ledger(_ emulator: EmulatorProcess) throws -> [String] {
        let (_, json) = try TestHTTP.call("GET", emulator.baseURL + "/emulator/ledger")
        let entries = json?.arrayValue ?? json?["items"]?.arrayValue ?? json?["ledger"]?.arrayValue ?? []
        return entries.map { entry in
            let quantity: String
            switch entry["quantity"] {
            case .number(let text)?, .string(let text)?: quantity = Quantity(exactly: text)?.description ?? text
            default: quantity = "?"
            }
            return
                "\(entry["resourceId"]?.stringValue ?? "?") \(entry["dimension"]?.stringValue ?? "?") \(entry["effectiveStartTime"]?.stringValue ?? "?") \(quantity)"
        }.sorted()
    }

    /// Waits until the ledger has an entry per subscription and holds still.
    static func settledLedger(_ emulator: EmulatorProcess, timeout: Double = 90) throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [String] = []
        var stableSince = Date()
        while Date() < deadline {
            let now = try ledger(emulator)
            if now != last { stableSince = Date() }
            last = now
            if last.count >= subscriptions.count && Date().timeIntervalSince(stableSince) > 2 { return last }
            usleep(200_000)
        }
        return last
    }

    @Test(
        "two ingest instances append concurrently while the stream leader and one ingest are killed: every acknowledged event is stored once, and the ledger is the embedded log's"
    )
    func failover() throws {
        let cluster = try NATSCluster(nodes: 3)
        let homeA = StackHome()
        let homeB = StackHome()
        let ingestA = try IngestProcess(home: homeA, environment: Self.jetStreamEnvironment(cluster, node: 0))
        var ingestB = try IngestProcess(home: homeB, environment: Self.jetStreamEnvironment(cluster, node: 1))
        let aggregatorA = try AggregatorProcess(home: homeA)
        let queryA = try QueryProcess(home: homeA)
        let aggregatorB = try AggregatorProcess(home: homeB)

        try Self.advance(ingestA, "2024-03-01T10:00:00Z")
        try Self.advance(ingestB, "2024-03-01T10:00:00Z")
        for name in Self.subscriptions {
            let result = try ingestA.client().call(appendRequest([try Self.purchase(name)]))["results"]?.arrayValue?.first
            #expect(result?["status"] == "accepted")
        }
        try Self.advance(ingestA, "2024-03-01T10:10:00Z")
        try Self.advance(ingestB, "2024-03-01T10:10:00Z")

        // Two writers, each preferring its own host's ingest and falling back to the other's,
        // appending until told to stop (at most 5,000 batches each).
        let appenderA = Appender(name: "a", sockets: [homeA.clientSocket, homeB.clientSocket])
        let appenderB = Appender(name: "b", sockets: [homeB.clientSocket, homeA.clientSocket])
        for appender in [appenderA, appenderB] {
            Thread { appender.run(maximumBatches: 5000, size: 10, resources: Self.subscriptions) }.start()
        }
        // Each writer gets `batches` more acknowledged: both hosts append, neither starves the other.
        func waitForMore(_ batches: Int, _ what: String) {
            let target = (a: appenderA.done + batches, b: appenderB.done + batches)
            let deadline = Date().addingTimeInterval(90)
            while (appenderA.done < target.a || appenderB.done < target.b) && Date() < deadline { usleep(20_000) }
            #expect(
                appenderA.done >= target.a && appenderB.done >= target.b,
                "too few appends acknowledged \(what) (writer a \(appenderA.done) of \(target.a), b \(appenderB.done) of \(target.b)): ingest a: \(ingestA.log().suffix(3000)) ingest b: \(ingestB.log().suffix(3000))"
            )
        }
        waitForMore(10, "at the start")

        // The stream leader dies (SIGKILL): another server leads, appends go on, and the killed
        // one comes back (as systemd would restart it). Each ingest talks only to its own host's
        // server, so the leader is first moved to n2, the server no ingest here uses: losing the
        // server of an ingest's own host is losing that host, which ingest b's death stands for.
        let observer = NATSConnection(options: NATSConnection.Options(servers: (0..<3).map { NATSServerAddress(cluster.url($0))! }))
        try observer.start(timeout: 20)
        let jetStream = JetStream(connection: observer)
        func currentLeader(besides previous: String? = nil) -> String? {
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if let leader = try? jetStream.streamInfo("METERING").get()?.leader, leader != previous { return leader }
                usleep(100_000)
            }
            return nil
        }
        var leaderName = try #require(currentLeader())
        for _ in 0..<20 where leaderName != "n2" {
            _ = observer.requestAndWait(subject: "$JS.API.STREAM.LEADER.STEPDOWN.METERING", payload: [], timeout: 5)
            leaderName = try #require(currentLeader(besides: leaderName), "no stream leader after \(leaderName) stepped down")
        }
        try #require(leaderName == "n2")
        let leader = 2
        cluster.kill(leader)
        #expect(currentLeader(besides: leaderName) != nil, "no new stream leader after \(leaderName) was killed")
        waitForMore(5, "while \(leaderName) was down")
        try cluster.restart(leader)
        waitForMore(5, "after \(leaderName) came back")

        // Ingest b dies (SIGKILL): its writer goes on with ingest a.
        ingestB.kill(SIGKILL)
        waitForMore(10, "after ingest b was killed")
        appenderA.stop()
        appenderB.stop()
        let finished = Date().addingTimeInterval(120)
        while (appenderA.running || appenderB.running) && Date() < finished { usleep(50_000) }
        #expect(!appenderA.running && !appenderB.running, "the writers did not finish: \(ingestA.log().suffix(3000))")
        #expect(appenderA.failures.isEmpty && appenderB.failures.isEmpty, "\(appenderA.failures) \(appenderB.failures)")
        #expect(appenderB.failovers > 0, "the writer of the killed ingest never went to the other")
        ingestB = try IngestProcess(home: homeB, environment: Self.jetStreamEnvironment(cluster, node: 1))

        // Every acknowledged event is in the stream once; sequences run 0, 1, 2, … and times never go back.
        let acknowledged = appenderA.acknowledged.union(appenderB.acknowledged)
        #expect(acknowledged.count == 10 * (appenderA.done + appenderB.done))
        var recordsA: [[JSONValue]] = []
        let caughtUp = Date().addingTimeInterval(60)
        repeat {
            recordsA = try Self.partitions(ingestA)
            if try Self.partitions(ingestB) == recordsA { break }
            usleep(200_000)
        } while Date() < caughtUp
        #expect(try Self.partitions(ingestB) == recordsA, "the restarted ingest b reads another log than ingest a")
        var counts: [String: Int] = [:]
        for records in recordsA {
            #expect(records.map { $0["sequence"]?.intValue ?? -1 } == Array(0..<records.count))
            let times = records.compactMap { $0["enqueuedTime"]?.stringValue.flatMap(Timestamp.init(iso8601:)) }
            #expect(times.count == records.count && zip(times, times.dropFirst()).allSatisfy { $0 <= $1 })
            for record in records where record["event"]?["type"] == "UsageReported" {
                counts[record["event"]?["id"]?.stringValue ?? "?", default: 0] += 1
            }
        }
        #expect(Set(counts.keys) == acknowledged)
        #expect(counts.values.allSatisfy { $0 == 1 }, "stored twice: \(counts.filter { $0.value > 1 }.keys.sorted().prefix(10))")

        // Both hosts' followers fold it all.
        try aggregatorA.waitUntilCaughtUp(with: ingestA, timeout: 60)
        try queryA.waitUntilCaughtUp(with: ingestA, timeout: 60)
        try aggregatorB.waitUntilCaughtUp(with: ingestB, timeout: 60)

        // The hour closes; host a's submitter reports it to the marketplace emulator.
        let emulator = try EmulatorProcess(home: homeA)
        try Self.advance(ingestA, "2024-03-01T11:00:01Z")
        var environment = emulator.submitterEnvironment
        environment["METERING_SUBMIT_INTERVAL_MS"] = "50"
        let submitter = try SubmitterProcess(home: homeA, environment: environment)
        let clustered = try Self.settledLedger(emulator)
        _ = submitter

        // The same events through the embedded log give the same ledger.
        let homeC = StackHome()
        let ingestC = try IngestProcess(home: homeC)
        let aggregatorC = try AggregatorProcess(home: homeC)
        let emulatorC = try EmulatorProcess(home: homeC)
        try Self.advance(ingestC, "2024-03-01T10:00:00Z")
        _ = try ingestC.client().call(appendRequest(try Self.subscriptions.map(Self.purchase)))
        try Self.advance(ingestC, "2024-03-01T10:10:00Z")
        let keys = acknowledged.sorted()
        for start in stride(from: 0, to: keys.count, by: 200) {
            let events = try keys[start..<min(start + 200, keys.count)].map { key in
                try Self.usage(Self.subscriptions[Int(key.split(separator: "-")[2])! % Self.subscriptions.count], key: key)
            }
            _ = try ingestC.client().call(appendRequest(events))
        }
        try Self.advance(ingestC, "2024-03-01T11:00:01Z")
        var environmentC = emulatorC.submitterEnvironment
        environmentC["METERING_SUBMIT_INTERVAL_MS"] = "50"
        let submitterC = try SubmitterProcess(home: homeC, environment: environmentC)
        let embedded = try Self.settledLedger(emulatorC)
        _ = (aggregatorC, submitterC)
        #expect(clustered.count == Self.subscriptions.count)
        #expect(clustered == embedded)
        observer.close()
    }
}

/// A client appending batches of usage with idempotency keys, each batch sent again (same keys)
/// until acknowledged, on the next socket when one fails.
final class Appender: Sendable {
    let name: String
    let sockets: [String]
    private let state = Mutex(State())

    private struct State {
        var finishedBatches = 0
        var keys: Set<String> = []
        var problems: [String] = []
        var active = true
        var switched = 0
        var stopping = false
    }

    init(name: String, sockets: [String]) {
        self.name = name
        self.sockets = sockets
    }

    var done: Int { state.withLock { $0.finishedBatches } }
    var running: Bool { state.withLock { $0.active } }
    var acknowledged: Set<String> { state.withLock { $0.keys } }
    var failures: [String] { state.withLock { $0.problems } }
    /// Times a batch was sent again on the next socket.
    var failovers: Int { state.withLock { $0.switched } }

    /// Asks the writer to stop after the batch it is sending.
    func stop() { state.withLock { $0.stopping = true } }

    func run(maximumBatches: Int, size: Int, resources: [String]) {
        var socket = 0
        var counter = 0
        for batch in 0..<maximumBatches {
            if state.withLock({ $0.stopping }) { break }
            var events: [JSONValue] = []
            var batchKeys: [String] = []
            for _ in 0..<size {
                // The key's last number picks the subscription, so a replay knows it.
                let key = "\(name)-\(batch)-\(counter)"
                counter += 1
                batchKeys.append(key)
                events.append(try! ClusterFailoverTests.usage(resources[(counter - 1) % resources.count], key: key))
            }
            var stored = false
            let deadline = Date().addingTimeInterval(120)
            while !stored && Date() < deadline {
                do {
                    let client = try UnixClient(path: sockets[socket])
                    client.setReceiveTimeout(seconds: 60)
                    let results = try client.call(appendRequest(events))["results"]?.arrayValue ?? []
                    let statuses = results.map { $0["status"]?.stringValue ?? "?" }
                    if statuses.count == size && statuses.allSatisfy({ $0 == "accepted" || $0 == "duplicate" }) {
                        stored = true
                    } else {
                        usleep(100_000)
                    }
                } catch {
                    socket = (socket + 1) % sockets.count
                    state.withLock { $0.switched += 1 }
                    usleep(100_000)
                }
            }
            state.withLock { state in
                if stored { state.keys.formUnion(batchKeys) } else { state.problems.append("batch \(batch) never acknowledged") }
                state.finishedBatches += 1
            }
        }
        state.withLock { $0.active = false }
    }
}
