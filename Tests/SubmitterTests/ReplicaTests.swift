import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One submitter for two aggregator replicas, each owning half of the partitions, with real processes.
@Suite("The submitter with aggregator replicas", .serialized)
struct ReplicaTests {
    static let plan = #"{"planId":"replicas","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":0}}}"#

    static func purchase(_ name: String) throws -> JSONValue {
        try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(name)","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(plan)}}}"#
        )
    }

    /// A replica of meter-aggregator on its own socket, owning `partitions`.
    static func replica(_ home: StackHome, _ name: String, partitions: String) throws -> ServerProcess {
        let socket = home.path + "/run/aggregator-\(name).sock"
        return try ServerProcess(
            executable: "meter-aggregator", home: home, readySocket: socket,
            environment: ["METERING_AGGREGATOR_SOCKET": socket, "METERING_AGGREGATOR_PARTITIONS": partitions])
    }

    static func submitterStatus(_ home: StackHome) -> JSONValue? {
        FileManager.default.contents(atPath: home.path + "/run/submitter.status.json").flatMap { try? JSONParser.parse(Array($0)) }
    }

    @Test(
        "with one aggregator replica stopped, the other's items are still reported; the status names the unreachable socket until it is back"
    )
    func oneReplicaDown() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        var replicaA = try Self.replica(home, "a", partitions: "0,1")
        let replicaB = try Self.replica(home, "b", partitions: "2,3")
        let socketA = home.path + "/run/aggregator-a.sock"
        let socketB = home.path + "/run/aggregator-b.sock"
        let emulator = try EmulatorProcess(home: home)
        func advance(_ time: String) throws {
            _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": .string(time)])))
        }

        // Subscriptions on both replicas' partitions, by where ingest routes their purchases.
        try advance("2024-03-01T10:00:00Z")
        var partitionOf: [String: Int] = [:]
        for number in 0..<12 {
            let name = "replica-sub-\(number)"
            let result = try ingest.client().call(appendRequest([try Self.purchase(name)]))["results"]?.arrayValue?.first
            #expect(result?["status"] == "accepted")
            partitionOf[name] = result?["partition"]?.intValue
        }
        let onA = partitionOf.filter { $0.value < 2 }.keys.sorted()
        let onB = partitionOf.filter { $0.value >= 2 }.keys.sorted()
        try #require(!onA.isEmpty && !onB.isEmpty, "the 12 subscriptions all landed on one replica's partitions: \(partitionOf)")

        var environment = emulator.submitterEnvironment
        environment["METERING_AGGREGATOR_SOCKETS"] = socketA + "," + socketB
        environment["METERING_SUBMIT_INTERVAL_MS"] = "50"
        environment["METERING_SUBMIT_MAX_BACKOFF"] = "1"
        let submitter = try SubmitterProcess(home: home, environment: environment)
        replicaA.kill(SIGTERM)

        try advance("2024-03-01T10:10:00Z")
        let usages = try (onA + onB).map { name in
            try JSONParser.parse(
                #"{"type":"UsageReported","value":{"resourceId":"\#(name)","timestamp":"2024-03-01T10:10:00Z","meterName":"email","quantity":7}}"#
            )
        }
        _ = try ingest.client().call(appendRequest(usages))
        try advance("2024-03-01T11:00:01Z")

        func ledger() throws -> Set<String> {
            let (_, json) = try TestHTTP.call("GET", emulator.baseURL + "/emulator/ledger")
            let entries = json?.arrayValue ?? json?["items"]?.arrayValue ?? json?["ledger"]?.arrayValue ?? []
            return Set(entries.compactMap { $0["resourceId"]?.stringValue })
        }
        // Replica b's subscriptions reach the marketplace although replica a does not answer.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, try ledger() != Set(onB) { usleep(100_000) }
        #expect(try ledger() == Set(onB), "submitter: \(submitter.readErrors())")
        try replicaB.waitUntilServing(socketB)

        let status = try #require(Self.submitterStatus(home))
        #expect(status["unreachable"] == .array([.string(socketA)]))
        let lanes = status["aggregators"]?.arrayValue ?? []
        let laneA = lanes.first { $0["socket"]?.stringValue == socketA }
        let laneB = lanes.first { $0["socket"]?.stringValue == socketB }
        #expect(laneA?["state"] == "unreachable")
        #expect((laneA?["failures"]?.intValue ?? 0) > 0)
        #expect(laneA?["lastError"]?.stringValue?.contains("cannot read pending items from the aggregator at \(socketA)") == true)
        #expect(laneB?["state"] == "ok")
        #expect(status["lastError"]?.stringValue?.contains(socketA) == true)
        let shown = try runToEnd(
            "meterctl", ["submitter-status", "--home", home.path], environment: ProcessInfo.processInfo.environment)
        #expect(shown.status == 0)
        #expect(shown.output.contains("aggregator \(socketA): unreachable since"), "\(shown.output)")
        #expect(shown.output.contains("aggregator \(socketB): ok"), "\(shown.output)")

        // Back again: retried (the backoff is at most a second here), and its items follow.
        replicaA = try Self.replica(home, "a", partitions: "0,1")
        let settled = Date().addingTimeInterval(60)
        while Date() < settled, try ledger() != Set(onA + onB) { usleep(100_000) }
        #expect(try ledger() == Set(onA + onB), "submitter: \(submitter.readErrors())")
        let healthy = Date().addingTimeInterval(20)
        // Reachable again at its next pass, and no longer failing once that pass has sent its items.
        while Date() < healthy, Self.submitterStatus(home).map({ $0["unreachable"] != .array([]) || $0["lastError"] != .null }) ?? true {
            usleep(100_000)
        }
        let after = try #require(Self.submitterStatus(home))
        #expect(after["unreachable"] == .array([]))
        #expect(after["lastError"] == .null)
        _ = replicaA
    }
}
