import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The whole stack under sustained load while its processes are killed with SIGKILL at random and
/// restarted, bounded in time, loopback only (DESIGN.md §7: no acknowledged event lost, no slot
/// reported twice or with a wrong quantity, everyone catches up).
@Suite("Chaos: SIGKILL anything under load", .serialized)
struct ChaosTests {
    /// The stack, handed to the chaos thread: only that thread kills and restarts processes (the
    /// test's own calls retry through the gaps).
    final class Processes: @unchecked Sendable {
        let stack: Stack
        init(_ stack: Stack) { self.stack = stack }
    }

    /// Whether the chaos must stop, and the kills so far by process.
    struct Chaos {
        var stop = false
        var kills: [String: Int] = [:]
    }

    /// Retries `body` until it succeeds (ingest may be down for a moment).
    static func retrying<T>(_ what: String, timeout: Double = 60, _ body: () throws -> T) throws -> T {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            do {
                return try body()
            } catch {
                if Date() > deadline { throw error }
                usleep(50_000)
            }
        }
    }

    @Test("with ingest, aggregator, query and submitter killed at random, the ledger is exactly the overage of the log, and query agrees")
    func killEverythingUnderLoad() throws {
        let stack = try Stack()
        _ = try TestHTTP.call(
            "POST", stack.emulator.baseURL + "/emulator/faults", body: ["failRate": .number("0.1"), "status": 503, "seed": 3])
        try stack.startSubmitter()
        try stack.startQuery()
        let subscriptions = ["chaos-a", "chaos-b", "chaos-c"]
        try stack.advance(to: "2024-03-01T00:00:00Z")
        let plan = #"{"planId":"chaos","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":50}}}"#
        try stack.send(subscriptions.map { try EndToEndTests.purchase($0, start: "2024-03-01T00:00:00Z", plan: plan) })

        let processes = Processes(stack)
        let state = Locked(Chaos())
        let chaos = Thread {
            var random = SystemRandomNumberGenerator()
            while !state.value.stop {
                usleep(UInt32.random(in: 300_000...700_000, using: &random))
                if state.value.stop { break }
                let victim = ["ingest", "aggregator", "query", "submitter"].randomElement(using: &random)!
                let stack = processes.stack
                switch victim {
                case "ingest": stack.ingest.kill(SIGKILL)
                case "aggregator": stack.aggregator.kill(SIGKILL)
                case "query": stack.query?.kill(SIGKILL)
                default: stack.submitter?.kill(SIGKILL)
                }
                do {
                    switch victim {
                    case "ingest": try stack.restartIngest()
                    case "aggregator": try stack.restartAggregator()
                    case "query": try stack.startQuery()
                    default: try stack.startSubmitter()
                    }
                } catch {
                    Issue.record("restart of \(victim) failed: \(error)")
                }
                state.withLock { $0.kills[victim, default: 0] += 1 }
            }
        }
        chaos.start()

        // Load: one event per request with idempotency keys, resent until acknowledged.
        var random = SystemRandomNumberGenerator()
        var acknowledged: Set<String> = []
        for hour in 0..<8 {
            for index in 0..<40 {
                usleep(15_000)  // Sustained load over several seconds, so the chaos hits it.
                let subscription = subscriptions[index % 3]
                let quantity = "\(Int.random(in: 0...9, using: &random)).\(Int.random(in: 0...99, using: &random))"
                let key = "chaos-\(hour)-\(index)"
                var event = try EndToEndTests.use(subscription, "email", quantity).objectValue!
                event["id"] = .string(key)
                let response = try Self.retrying("append \(key)") {
                    try UnixClient(path: stack.home.clientSocket).call(appendRequest([.object(event)]))
                }
                let status = response["results"]?.arrayValue?.first?["status"]?.stringValue
                #expect(status == "accepted" || status == "duplicate")
                acknowledged.insert(key)
            }
            let next = "2024-03-01T0\(hour + 1):00:00Z"
            _ = try Self.retrying("advance the clock") {
                try UnixClient(path: stack.home.adminSocket).call(Request(op: "advance-clock", fields: JSONObject(["to": .string(next)])))
            }
        }
        _ = try Self.retrying("advance the clock") {
            try UnixClient(path: stack.home.adminSocket).call(
                Request(op: "advance-clock", fields: JSONObject(["to": "2024-03-01T09:00:01Z"])))
        }
        state.withLock { $0.stop = true }
        while chaos.isExecuting { usleep(20_000) }
        #expect(state.value.kills.values.reduce(0, +) >= 5)

        // Every acknowledged event is in the log exactly once.
        let records = try Self.retrying("read the log") { try readAll(stack.ingest.client(), partitions: 4) }
        var seen: [String: Int] = [:]
        for record in records { if let key = record["event"]?["id"]?.stringValue { seen[key, default: 0] += 1 } }
        #expect(acknowledged.allSatisfy { seen[$0] == 1 })
        #expect(seen.values.allSatisfy { $0 == 1 })

        // The overage the rules give, computed here from the log alone: 50 e-mails included per
        // subscription this period, usage in log order, overage in the hour it was enqueued.
        var used: [String: Quantity] = [:]
        var expected: [String: Quantity] = [:]
        let ordered = records.sorted {
            ($0["partition"]?.intValue ?? 0, $0["sequence"]?.intValue ?? 0) < (
                $1["partition"]?.intValue ?? 0, $1["sequence"]?.intValue ?? 0
            )
        }
        let included = Quantity(50)
        for record in ordered where record["event"]?["type"] == "UsageReported" {
            let value = record["event"]?["value"]
            guard let subscription = value?["resourceId"]?.stringValue, case .number(let text)? = value?["quantity"],
                let quantity = Quantity(exactly: text), let time = Timestamp(iso8601: record["enqueuedTime"]?.stringValue ?? "")
            else { continue }
            let before = used[subscription, default: .zero]
            let after = before + quantity
            used[subscription] = after
            let overage = max(.zero, after - max(before, included))
            if overage > .zero { expected["\(subscription) emails \(time.hourStart.iso8601)", default: .zero] += overage }
        }
        let expectedLedger = expected.map { "\($0.key) \($0.value)" }.sorted()
        let ledger = try stack.waitUntilSettled(count: expectedLedger.count, timeout: 120)
        #expect(ledger == expectedLedger)
        #expect(try stack.aggregatorTotal("conflicts") == 0)
        #expect(try stack.aggregatorTotal("rejected") == 0)

        // The query service, killed too, caught up and agrees: its closed-hour records bill exactly
        // the expected overage, each hour once, and its run-rate equals the aggregator's state.
        let query = try #require(stack.query)
        try query.waitUntilCaughtUp(with: stack.ingest, timeout: 60)
        let usage = try query.client().call(Request(op: "usage", fields: JSONObject(["startId": 0, "batchSize": 10000])))
        let ids = (usage["records"]?.arrayValue ?? []).compactMap { $0["id"]?.intValue }
        #expect(ids == Array(0..<ids.count))
        let billed = (usage["records"]?.arrayValue ?? []).compactMap { record -> String? in
            guard case .number(let text)? = record["billed"], let quantity = Quantity(exactly: text), quantity > .zero else { return nil }
            return
                "\(record["resourceId"]?.stringValue ?? "?") \(record["dimension"]?.stringValue ?? "?") \(record["hour"]?.stringValue ?? "?") \(quantity)"
        }
        #expect(billed.sorted() == expectedLedger)
        for subscription in subscriptions {
            let state = try stack.aggregator.client().call(Request(op: "state", fields: JSONObject(["resourceId": .string(subscription)])))
            let runRate = try query.client().call(Request(op: "runrate", fields: JSONObject(["resourceId": .string(subscription)])))
            let meter = runRate["meters"]?.arrayValue?.first
            #expect(meter?["consumed"] == state["subscription"]?["meters"]?.arrayValue?.first?["consumed"])
            #expect(meter?["overage"] == state["subscription"]?["meters"]?.arrayValue?.first?["overage"])
        }
    }
}
