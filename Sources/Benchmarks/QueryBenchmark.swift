import Foundation
import Synchronization
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The query service's figures (DESIGN.md §7): catch-up from a real log, resident memory per
/// subscription-meter, `runrate` latency and throughput with every subscription loaded, restart.
extension Benchmark {
    static let queryPlan =
        #"{"planId":"bench-5","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":1000},"sms":{"type":"simple","dimension":"texts","included":0},"cpu":{"type":"simple","dimension":"cpu","included":"Infinite"},"seats":{"type":"simple","dimension":"seats","included":10,"aggregation":"max"},"egress":{"type":"waterfall","tiers":[{"dimension":"egress-1","threshold":100},{"dimension":"egress-2","threshold":1000}]}}}"#

    /// A process's resident set, in bytes (`VmRSS` of /proc/PID/status).
    static func residentBytes(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
    }

    /// A process's resident set once it no longer falls (a second apart, at most 20 s).
    static func settledResidentBytes(_ pid: Int32) -> Int {
        var last = residentBytes(pid) ?? 0
        for _ in 0..<20 {
            sleep(1)
            let now = residentBytes(pid) ?? 0
            if now >= last - (1 << 20) { return now }
            last = now
        }
        return last
    }

    /// Starts `meter-query` on `home` and waits until it has folded `total` records.
    static func startQuery(home: String, total: Int) throws -> (Process, Double) {
        try startFollower(
            "meter-query", home: home, socket: home + "/run/query.sock", total: total,
            settings: ["METERING_QUERY_SNAPSHOT_RECORDS": "100000000"])
    }

    static let queryMeters = ["email", "sms", "cpu", "seats", "egress"]

    /// The purchase of subscription `q-index` on the five-meter plan.
    static func queryPurchase(_ index: Int) -> [UInt8] {
        Array(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"q-\#(index)","subscriptionStart":"2024-02-\#(10 + index % 18)T00:00:00Z","renewalInterval":"Monthly","plan":\#(queryPlan)}}}"#
                .utf8)
    }

    /// Usage number `index` of meter `meter` for subscription `q-subscription`.
    static func queryUsage(_ index: Int, subscription: Int, meter: String) -> [UInt8] {
        Array(
            #"{"type":"UsageReported","value":{"resourceId":"q-\#(subscription)","timestamp":"2024-03-01T00:00:00Z","meterName":"\#(meter)","quantity":\#(1 + index % 13).25,"properties":{"campaign":"c\#(index % 4)"}}}"#
                .utf8)
    }

    /// Fills a log with `subscriptions` purchases of a five-meter plan and `events` usage events
    /// (the clock moving a minute every 10,000 events, so hours close), then measures meter-query.
    static func queryBenchmark(server: IngestServer, subscriptions: Int, events: Int, seconds: Double) throws -> [Row] {
        let client = try UnixClient(path: server.socket)
        let admin = try UnixClient(path: server.home + "/run/ingest-admin.sock")
        var clock = Timestamp(iso8601: "2024-03-01T00:00:00Z")!
        _ = try admin.call(Request(op: "advance-clock", fields: JSONObject(["to": .string(clock.iso8601)])))
        func append(_ payloads: [[UInt8]]) throws { try appendBatch(payloads, on: client) }
        progress("query: appending \(subscriptions) purchases (5 meters each) and \(events) usage events")
        var batch: [[UInt8]] = []
        for index in 0..<subscriptions {
            batch.append(queryPurchase(index))
            if batch.count == 1000 {
                try append(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        for index in 0..<events {
            batch.append(queryUsage(index, subscription: (index * 7919) % subscriptions, meter: queryMeters[index % 5]))
            if batch.count == 1000 {
                try append(batch)
                batch.removeAll(keepingCapacity: true)
            }
            if index % 10_000 == 9_999 {
                clock = clock.adding(microseconds: 60_000_000)
                _ = try admin.call(Request(op: "advance-clock", fields: JSONObject(["to": .string(clock.iso8601)])))
            }
        }
        if !batch.isEmpty { try append(batch) }
        clock = clock.adding(microseconds: Timestamp.microsecondsPerHour)
        _ = try admin.call(Request(op: "advance-clock", fields: JSONObject(["to": .string(clock.iso8601)])))
        let total = try recordCount(client)

        // The process's own footprint with nothing folded, to subtract.
        let emptyHome = server.home + "-query-empty"
        let empty = try IngestServer(home: emptyHome, partitions: server.partitions)
        let (baselineProcess, _) = try startQuery(home: emptyHome, total: 0)
        let baseline = residentBytes(baselineProcess.processIdentifier) ?? 0
        baselineProcess.terminate()
        baselineProcess.waitUntilExit()
        empty.stop(removing: true)

        progress("query: folding \(total) records with a fresh meter-query")
        let (query, catchUp) = try startQuery(home: server.home, total: total)
        reportCatchUpCPU("query: meter-query", query, records: total)
        var rows: [Row] = [
            Row(
                name: "query-catch-up",
                description:
                    "fresh meter-query folding \(total) records (\(subscriptions) subscriptions × 5 meters) from ingest, start to caught up",
                events: total, elapsed: catchUp, latencies: [catchUp])
        ]
        for clients in [1, 4] {
            progress("query: runrate from \(clients) client(s) for \(seconds) s")
            rows.append(
                try runRateLoad(socket: server.home + "/run/query.sock", subscriptions: subscriptions, clients: clients, seconds: seconds))
        }
        // Measured in the steady state, after the load: the catch-up's parsing peak is released by then.
        let resident = residentBytes(query.processIdentifier) ?? 0
        let perMeter = Double(resident - baseline) / Double(subscriptions * 5)
        rows.insert(
            Row(
                name: "query-memory",
                description:
                    "meter-query resident memory: \(format(Double(resident) / 1_048_576)) MiB with \(subscriptions) × 5 meters loaded, \(format(Double(baseline) / 1_048_576)) MiB empty → \(format(perMeter)) B per subscription-meter (events/s column: bytes)",
                events: Int(perMeter), elapsed: 1, latencies: []), at: 1)
        query.terminate()
        query.waitUntilExit()
        progress("query: restart from the snapshots written at SIGTERM")
        let (again, restart) = try startQuery(home: server.home, total: total)
        again.terminate()
        again.waitUntilExit()
        rows.append(
            Row(
                name: "query-restart",
                description: "meter-query restart from its snapshots to serving, caught up (events/s: records covered)",
                events: total, elapsed: restart, latencies: [restart]))
        // The aggregator on the same log: the catch-up case's log has 1,000 subscriptions, whose
        // state stays in the CPU's caches; here every record reaches one of 100,000.
        progress("query: folding \(total) records with a fresh meter-aggregator (\(subscriptions) subscriptions)")
        let (aggregatorCatchUp, aggregatorRestart) = try aggregatorCatchUpAndRestart(home: server.home, total: total)
        rows += [
            Row(
                name: "catch-up-large",
                description:
                    "fresh meter-aggregator folding the same \(total) records (\(subscriptions) subscriptions × 5 meters), start to caught up",
                events: total, elapsed: aggregatorCatchUp, latencies: [aggregatorCatchUp]),
            Row(
                name: "restart-large",
                description:
                    "meter-aggregator restart from its snapshot of those subscriptions to serving, caught up (events/s: records covered)",
                events: total, elapsed: aggregatorRestart, latencies: [aggregatorRestart]),
        ]
        let open = try openHour(server: server, subscriptions: subscriptions, baseline: baseline)
        rows.insert(open[0], at: 2)
        rows.append(open[1])
        return rows
    }

    /// meter-query in a busy hour: after the log above (its hours closed), one more hour in which
    /// every meter of every subscription has usage, not closed yet (the steady state leaves that
    /// hour's open usage out). meter-query restarts from its snapshots and folds it: its resident
    /// memory per subscription-meter (`query-memory-open`); then it restarts once more, its
    /// snapshots holding that hour's open usage: the time to serving (`query-restart-open`).
    static func openHour(server: IngestServer, subscriptions: Int, baseline: Int) throws -> [Row] {
        let client = try UnixClient(path: server.socket)
        progress("query: usage of each of the \(subscriptions * 5) subscription-meters in one more hour, left open")
        var batch: [[UInt8]] = []
        for index in 0..<subscriptions * 5 {
            batch.append(queryUsage(index, subscription: index / 5, meter: queryMeters[index % 5]))
            if batch.count == 1000 || index == subscriptions * 5 - 1 {
                try appendBatch(batch, on: client)
                batch.removeAll(keepingCapacity: true)
            }
        }
        let total = try recordCount(client)
        let (query, _) = try startQuery(home: server.home, total: total)
        // A restart's peak (snapshots read in parallel) is given back within a few seconds.
        let resident = settledResidentBytes(query.processIdentifier)
        query.terminate()
        query.waitUntilExit()
        let perMeter = Double(resident - baseline) / Double(subscriptions * 5)
        progress("query: restart from the snapshots written at SIGTERM, with that hour open")
        let (again, restart) = try startQuery(home: server.home, total: total)
        again.terminate()
        again.waitUntilExit()
        return [
            Row(
                name: "query-memory-open",
                description:
                    "the same and one more hour with usage of every subscription-meter, not closed yet: \(format(Double(resident) / 1_048_576)) MiB → \(format(perMeter)) B per subscription-meter (events/s column: bytes)",
                events: Int(perMeter), elapsed: 1, latencies: []),
            Row(
                name: "query-restart-open",
                description:
                    "meter-query restart from its snapshots to serving, caught up, with that hour open (events/s: records covered)",
                events: total, elapsed: restart, latencies: [restart]),
        ]
    }

    /// `runrate` for random subscriptions from `clients` connections, one request in flight each.
    static func runRateLoad(socket: String, subscriptions: Int, clients: Int, seconds: Double) throws -> Row {
        let results = Results()
        let group = DispatchGroup()
        let start = Date()
        for number in 0..<clients {
            group.enter()
            Thread {
                defer { group.leave() }
                var random = SplitMix64(seed: UInt64(number + 1))
                var mine: [Double] = []
                do {
                    let client = try UnixClient(path: socket)
                    while Date().timeIntervalSince(start) < seconds {
                        let name = "q-\(random.next() % UInt64(subscriptions))"
                        let request = Request(op: "runrate", fields: JSONObject(["resourceId": .string(name)]))
                        let begin = Date()
                        let response = try client.call(request)
                        mine.append(Date().timeIntervalSince(begin))
                        guard response["meters"]?.arrayValue?.count == 5 else { throw Failure("runrate of \(name) has not 5 meters") }
                    }
                } catch {
                    results.totals.withLock { $0.failures.append("\(error)") }
                }
                results.totals.withLock { $0.latencies += mine }
            }.start()
        }
        group.wait()
        let latencies = results.totals.withLock { $0.latencies }
        if let failure = results.totals.withLock({ $0.failures.last }) { throw Failure("runrate load failed: \(failure)") }
        let elapsed = Date().timeIntervalSince(start)
        return Row(
            name: "runrate-\(clients)",
            description:
                "runrate of a random subscription (5 meters) from \(clients) client(s), one request in flight each (events/s: requests/s)",
            events: latencies.count, elapsed: elapsed, latencies: latencies)
    }
}
