import Billing
import Foundation
import Projection
import QueryModel
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The billing fold alone on the query case's shape: what catching up costs in memory traffic
/// when the subscriptions do not fit in the caches, without ingest, sockets or decoding sharing
/// the cores (the catch-up cases measure those together).
extension Benchmark {
    /// Folds the query case's records (`subscriptions` purchases of the five-meter plan, then
    /// `events` usage events, the clock moving a minute every 10,000), decoded beforehand, into one
    /// state on one thread, reading ahead as meter-aggregator does; `passes` times, each from an
    /// empty state. Prints each pass's time and the thread's CPU time per record, counting the
    /// folds only. `view`: folds meter-query's read model (`PartitionView`, which folds the billing
    /// state too) instead, the records it makes for the usage journal dropped after each batch.
    static func largeFoldBenchmark(subscriptions: Int, events: Int, passes: Int, view: Bool = false) -> Row {
        let name = view ? "view-fold-large" : "fold-large"
        progress("\(name): decoding \(subscriptions) purchases and \(events) usage events")
        var clock = Timestamp(iso8601: "2024-03-01T00:00:00Z")!
        var records: [BillingRecord] = []
        records.reserveCapacity(subscriptions + events + 1)
        func add(_ payload: [UInt8]) {
            let message = try! Message.decode(JSONParser.parse(payload)).get()
            records.append(BillingRecord(partition: 0, sequence: UInt64(records.count), enqueuedTime: clock, message: message))
        }
        for index in 0..<subscriptions { add(queryPurchase(index)) }
        for index in 0..<events {
            add(queryUsage(index, subscription: (index * 7919) % subscriptions, meter: queryMeters[index % 5]))
            if index % 10_000 == 9_999 { clock = clock.adding(microseconds: 60_000_000) }
        }
        clock = clock.adding(microseconds: Timestamp.microsecondsPerHour)
        add(Array(#"{"type":"Ping","value":{"partitionId":"0"}}"#.utf8))
        var elapsed: [Double] = []
        var cpu: [Double] = []
        for pass in 1...passes {
            var state = PartitionState(partition: 0)
            var model = PartitionView(partition: 0)
            let steps = subscriptions >= state.readAheadFrom ? PartitionState.readAheadSteps : 0
            var seconds = 0.0
            var cpuSeconds = 0.0
            // As the followers get them: batches of a follow answer's size, each fresh in the
            // caches when it is folded (a copy made before the clocks start), folded as
            // PartitionWorker.fold (ViewWorker.fold) folds them.
            for start in stride(from: 0, to: records.count, by: PartitionFollower.recordsPerAnswer) {
                let batch = RecordBatch(Array(records[start..<min(records.count, start + PartitionFollower.recordsPerAnswer)]))
                var output = PartitionView.Output(collectingTouched: false)
                let cpuBefore = threadCPUSeconds()
                let begin = Date()
                if view {
                    batch.takeEach(readingAhead: steps) {
                        model.prefetch($0, step: $1)
                    } _: {
                        model.apply($0, into: &output)
                    }
                } else {
                    batch.takeEach(readingAhead: steps) {
                        state.prefetch($0, step: $1)
                    } _: {
                        state.apply($0)
                    }
                }
                seconds += Date().timeIntervalSince(begin)
                cpuSeconds += threadCPUSeconds() - cpuBefore
            }
            elapsed.append(seconds)
            cpu.append(cpuSeconds)
            precondition((view ? model.nextSequence : state.nextSequence) == UInt64(records.count))
            progress(
                "\(name) pass \(pass): \(format(Double(records.count) / seconds)) records/s, \(String(format: "%.3f", cpuSeconds * 1e6 / Double(records.count))) µs of the thread's CPU per record"
            )
        }
        let median = cpu.sorted()[cpu.count / 2]
        return Row(
            name: name,
            description:
                "\(view ? "read model (PartitionView) fold" : "fold") only (records pre-decoded), 1 thread, \(subscriptions) subscriptions × 5 meters, \(records.count) records per pass, \(passes) passes; median thread CPU \(String(format: "%.3f", median * 1e6 / Double(records.count))) µs per record",
            events: records.count * passes, elapsed: elapsed.reduce(0, +), latencies: elapsed)
    }

    /// The calling thread's CPU time (user + system), in seconds.
    static func threadCPUSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
