import Billing
import Daemon
import Foundation
import Projection
import Synchronization
import Wire

/// One partition's billing state in the aggregator: restored from the newest valid snapshot, fed
/// by a `PartitionFollower`, snapshotted (in the billing state's binary form) every N records or T
/// of log time (not while catching up) and at shutdown.
///
/// Unchecked only for `follower`, which needs `self` as its owner and so is set at the end of
/// `init`, never after; everything that changes is in `folded`.
final class PartitionWorker: PartitionFolding, @unchecked Sendable {
    let partition: Int
    private let configuration: AggregatorConfiguration
    private let store: SnapshotStore
    private let folded: Mutex<Folded>
    /// What `status` shows of the partition, published by the fold (at start, after each answer of
    /// records and at stop), so that a status, asked for often (health checks; the benchmark
    /// every 5 ms), never waits for a fold in progress, which holds the state's lock for a whole
    /// answer: waiting for it took 1.80% of meter-aggregator's samples in a catch-up.
    private let published: Mutex<Published>
    private var follower: PartitionFollower!

    struct Published: Sendable {
        var nextSequence: UInt64
        var snapshotSequence: UInt64?
        /// The state's figures, as `status` lists them.
        var figures: JSONObject
    }

    private struct Folded {
        var state: PartitionState
        var schedule: SnapshotSchedule
    }

    /// The log the state was folded from: the restored snapshot's, else the first one followed.
    private let binding: LogBinding

    init(partition: Int, configuration: AggregatorConfiguration) {
        self.partition = partition
        self.configuration = configuration
        self.store = SnapshotStore(root: configuration.snapshotDirectory, partition: partition, kept: configuration.snapshotsKept)
        let loaded = store.loadNewestBody(log: nil) { body, sequence throws -> PartitionState in
            // JSON bodies are those of earlier releases: the next snapshot is written in bytes.
            let state =
                switch body {
                case .bytes(let bytes): try PartitionState(binarySnapshot: bytes)
                case .json(let json): try PartitionState(snapshot: json)
                }
            guard state.partition == partition, state.lastSequence == sequence else {
                throw SnapshotStore.Failure("contents do not match the header")
            }
            return state
        }
        let restored = loaded?.state
        binding = LogBinding(identity: loaded?.log)
        let start = Folded(
            state: restored ?? PartitionState(partition: partition),
            schedule: SnapshotSchedule(
                everyRecords: configuration.snapshotEveryRecords, everySeconds: configuration.snapshotEverySeconds,
                restoredAt: restored?.lastSequence, time: restored?.time))
        published = Mutex(Self.published(start))
        folded = Mutex(start)
        follower = PartitionFollower(
            partition: partition, ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes,
            binding: binding, owner: self)
    }

    /// The workers of `partitions`, in that order, their snapshots read in parallel: reading them
    /// is a restart's largest cost, and read one after another they kept one core busy of two
    /// (a restart over 100,000 subscriptions took 0.8 to 1.2 s). Each worker touches only its own
    /// partition's files and binding.
    static func restoreAll(_ partitions: [Int], configuration: AggregatorConfiguration) -> [PartitionWorker] {
        let restored = Mutex([PartitionWorker?](repeating: nil, count: partitions.count))
        DispatchQueue.concurrentPerform(iterations: partitions.count) { index in
            let worker = PartitionWorker(partition: partitions[index], configuration: configuration)
            restored.withLock { $0[index] = worker }
        }
        return restored.withLock { $0.compactMap { $0 } }
    }

    /// Reads the state under the lock.
    func read<T: Sendable>(_ body: (PartitionState) -> T) -> T { folded.withLock { body($0.state) } }

    struct Progress {
        var nextSequence: UInt64
        var follower: PartitionFollower.Progress
        var snapshotSequence: UInt64?
        /// The state's figures as `status` lists them, published with `nextSequence`.
        var figures: JSONObject
    }

    /// Where the partition is, as last published (no wait for a fold in progress).
    var progress: Progress {
        let following = follower.progress
        let published = self.published.withLock { $0 }
        return Progress(
            nextSequence: published.nextSequence, follower: following, snapshotSequence: published.snapshotSequence,
            figures: published.figures)
    }

    /// What `published` holds for `folded` (lock held).
    private static func published(_ folded: Folded) -> Published {
        let state = folded.state
        // Counted without listing the items in order: this runs after every answer folded.
        let atRisk = state.time.map { state.pendingCount(startedAtLeast: AggregatorHandler.atRiskMicroseconds, before: $0) } ?? 0
        let figures = JSONObject([
            "time": state.time.map { .string($0.iso8601) } ?? .null,
            "subscriptions": .number(String(state.subscriptionCount)),
            "pending": .number(String(state.pendingCount)),
            "atRisk": .number(String(atRisk)),
            "accepted": .number(String(state.accepted)),
            "conflicts": .number(String(state.conflicts.count)),
            "rejected": .number(String(state.rejected.count)),
            "unprocessable": .number(String(state.unprocessable.count)),
            "expiredRebilled": .number(String(state.expiredRebilled)),
            "lateUsage": .number(String(state.lateUsage)),
            "voids": .number(String(state.voids)),
            "refunds": .number(String(state.refunds.count)),
            "attribution": .string(state.attribution == .enqueued ? "enqueued" : "event"),
        ])
        return Published(nextSequence: state.nextSequence, snapshotSequence: folded.schedule.lastSequence, figures: figures)
    }

    /// Publishes what `status` shows (lock held).
    private func publish(_ folded: Folded) {
        let now = Self.published(folded)
        published.withLock { $0 = now }
    }

    func start() { follower.start(threadName: "aggregator-p\(partition)") }

    /// Waits until the first catch-up finished (or `timeout` seconds).
    func waitUntilCaughtUp(timeout: Double) -> Bool { follower.waitUntilCaughtUp(timeout: timeout) }

    /// Stops following and writes a final snapshot.
    func stop() {
        follower.stop()
        folded.withLock { folded in
            saveSnapshot(&folded)
            publish(folded)
        }
    }

    func nextSequence() -> UInt64 { folded.withLock { $0.state.nextSequence } }

    func fold(_ records: RecordBatch) {
        let count = records.count
        folded.withLock { folded in
            // The subscriptions of the records ahead are asked for while this one is folded
            // (no step at all while they fit in the caches).
            let steps = folded.state.readsAhead ? PartitionState.readAheadSteps : 0
            records.takeEach(readingAhead: steps) {
                folded.state.prefetch($0, step: $1)
            } _: {
                folded.state.apply($0)
            }
            let catchingUp = follower.isCatchingUp(nextSequence: folded.state.nextSequence)
            if folded.schedule.folded(count, time: folded.state.time, catchingUp: catchingUp) { saveSnapshot(&folded) }
            publish(folded)
        }
    }

    // MARK: snapshots (lock held)

    private func saveSnapshot(_ folded: inout Folded) {
        guard let sequence = folded.state.lastSequence, folded.schedule.isWorthWriting else { return }
        do {
            // In the binary form: a large state's JSON took seconds to write and to read back.
            try store.save(sequence: sequence, bytes: folded.state.binarySnapshot(), log: binding.identity)
            folded.schedule.saved(sequence: sequence, time: folded.state.time)
        } catch {
            Log.error("partition \(partition): cannot write a snapshot: \(error); will retry")
        }
    }
}
