import Billing
import Foundation
import Projection
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The aggregator's figures (DESIGN.md §7): folding speed in process, catch-up from a real log,
/// and restart time from a snapshot.
extension Benchmark {
    /// A log-shaped workload: `subscriptions` purchases, then usage spread over them with time
    /// moving one second per event, so hours close and periods renew along the way.
    static func workload(subscriptions: Int, events: Int) -> [(time: Timestamp, payload: [UInt8])] {
        var out: [(Timestamp, [UInt8])] = []
        let start = Timestamp(iso8601: "2024-01-31T00:00:00Z")!
        for index in 0..<subscriptions {
            out.append(
                (
                    start,
                    Array(
                        #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"bench-\#(index)","subscriptionStart":"2024-01-31T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":100},"cpu":{"type":"simple","dimension":"cpu","included":"Infinite"},"egress":{"type":"waterfall","tiers":[{"dimension":"t1","threshold":10},{"dimension":"t2","threshold":1000}]}}}}}}"#
                            .utf8)
                ))
        }
        let meters = ["email", "cpu", "egress"]
        for index in 0..<events {
            let time = start.adding(microseconds: Int64(index) * 1_000_000)
            let payload = Array(
                #"{"type":"UsageReported","id":"u-\#(index)","value":{"resourceId":"bench-\#(index % subscriptions)","timestamp":"2024-01-31T00:00:00Z","meterName":"\#(meters[index % 3])","quantity":1.5}}"#
                    .utf8)
            out.append((time, payload))
        }
        return out
    }

    /// Folds a workload in process: `decode` adds the per-record JSON work the aggregator does.
    static func foldBenchmark(decode: Bool, seconds: Double) -> Row {
        let name = decode ? "decode-fold" : "fold"
        progress("running \(name) for about \(seconds) s")
        let work = workload(subscriptions: 1_000, events: 200_000)
        let records: [BillingRecord] = work.enumerated().map { index, entry in
            let message = try! Message.decode(JSONParser.parse(entry.payload)).get()
            return BillingRecord(partition: 0, sequence: UInt64(index), enqueuedTime: entry.time, message: message)
        }
        // What a follower receives: `follow` answers of 5,000 records, each message in its canonical form.
        var frames: [[UInt8]] = []
        var index = 0
        while decode && index < work.count {
            var frame = Array(#"{"id":1,"ok":true,"records":["#.utf8)
            let end = min(work.count, index + PartitionFollower.recordsPerAnswer)
            for position in index..<end {
                if position > index { frame.append(UInt8(ascii: ",")) }
                frame += Array(#"{"partition":0,"sequence":\#(position),"enqueuedTime":"\#(work[position].time.iso8601)","event":"#.utf8)
                frame += CanonicalJSON.bytes(try! JSONParser.parse(work[position].payload))
                frame.append(UInt8(ascii: "}"))
            }
            frame += Array(#"],"next":\#(end),"log":"0123456789abcdef0123456789abcdef"}"#.utf8)
            frames.append(frame)
            index = end
        }
        var folded = 0
        var latencies: [Double] = []
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            var state = PartitionState(partition: 0)
            let begin = Date()
            if decode {
                // The follower's path exactly: the answer read, the records checked, then folded.
                for frame in frames {
                    do {
                        let records = try PartitionFollower.records(frame, partition: 0).records
                        _ = try PartitionFollower.dropFolded(records, expected: state.nextSequence)
                        records.takeEach { state.apply($0) }
                    } catch {
                        fatalError("a follow answer did not read: \(error)")
                    }
                }
            } else {
                for record in records { state.apply(record) }
            }
            precondition(state.lastSequence == UInt64(work.count - 1))
            folded += work.count
            latencies.append(Date().timeIntervalSince(begin))
        }
        let what =
            decode
            ? "follow answers read (the followers' fast path) + fold, 1 thread, 1,000 subscriptions × 3 meters, \(work.count) records per pass"
            : "fold only (records pre-decoded), 1 thread, 1,000 subscriptions × 3 meters"
        return Row(name: name, description: what, events: folded, elapsed: Date().timeIntervalSince(start), latencies: latencies)
    }

    /// Starts `meter-aggregator` on `home` and waits until it has folded `total` records.
    static func startAggregator(home: String, total: Int) throws -> (Process, Double) {
        try startFollower(
            "meter-aggregator", home: home, socket: home + "/run/aggregator.sock", total: total,
            settings: ["METERING_AGGREGATOR_SNAPSHOT_RECORDS": "10000000"])
    }

    /// Times a fresh `meter-aggregator` on `home` catching up to `total` records, then its restart
    /// from the snapshot it wrote at SIGTERM.
    static func aggregatorCatchUpAndRestart(home: String, total: Int) throws -> (catchUp: Double, restart: Double) {
        let (first, catchUp) = try startAggregator(home: home, total: total)
        reportCatchUpCPU("meter-aggregator", first, records: total)
        first.terminate()
        first.waitUntilExit()
        progress("meter-aggregator: restarting from the snapshot written at SIGTERM")
        let (second, restart) = try startAggregator(home: home, total: total)
        second.terminate()
        second.waitUntilExit()
        return (catchUp, restart)
    }

    /// Fills a real log with `events` usage events, then times a fresh `meter-aggregator`
    /// catching up, and its restart from the snapshot it wrote at SIGTERM.
    static func catchUpBenchmark(server: IngestServer, events: Int) throws -> [Row] {
        progress("catch-up: appending \(events) events to the log")
        let work = workload(subscriptions: 1_000, events: events)
        let client = try UnixClient(path: server.socket)
        for start in stride(from: 0, to: work.count, by: 2_000) {
            try appendBatch(work[start..<min(work.count, start + 2_000)].map(\.payload), on: client)
        }
        let total = try recordCount(client)

        progress("catch-up: folding \(total) records with a fresh meter-aggregator")
        let (catchUp, restart) = try aggregatorCatchUpAndRestart(home: server.home, total: total)
        progress("catch-up: SIGKILL and restart of meter-ingest on the same log")
        let recovery = try server.crashAndRestart()
        // What a restart after a reboot costs: the idempotency table file is not trusted then, and
        // is rebuilt from the segment summaries (removing the file has the same effect).
        progress("catch-up: SIGKILL and restart of meter-ingest without its idempotency table file")
        let rebuilding = try server.crashAndRestart(before: {
            try? FileManager.default.removeItem(atPath: server.home + "/data/log/idempotency.table")
        })
        return [
            Row(
                name: "ingest-restart",
                description:
                    "meter-ingest SIGKILLed and restarted on this log: start to serving, its idempotency table taken over (events/s: records recovered)",
                events: total, elapsed: recovery, latencies: [recovery]),
            Row(
                name: "ingest-restart-rebuild",
                description:
                    "the same without the table file (as after a reboot): the table rebuilt from the segment summaries (events/s: records recovered)",
                events: total, elapsed: rebuilding, latencies: [rebuilding]),
            Row(
                name: "catch-up", description: "fresh meter-aggregator folding \(total) records from ingest (start to caught up)",
                events: total, elapsed: catchUp, latencies: [catchUp]),
            Row(
                name: "restart",
                description: "meter-aggregator restart from its snapshot to serving, caught up (events/s: records covered)",
                events: total, elapsed: restart, latencies: [restart]),
        ]
    }
}
