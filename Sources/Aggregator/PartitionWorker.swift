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
    private var follower: PartitionFollower!

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
        folded = Mutex(
            Folded(
                state: restored ?? PartitionState(partition: partition),
                schedule: SnapshotSchedule(
                    everyRecords: configuration.snapshotEveryRecords, everySeconds: configuration.snapshotEverySeconds,
                    restoredAt: restored?.lastSequence, time: restored?.time)))
        follower = PartitionFollower(
            partition: partition, ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes,
            binding: binding, owner: self)
    }

    /// Reads the state under the lock.
    func read<T: Sendable>(_ body: (PartitionState) -> T) -> T { folded.withLock { body($0.state) } }

    struct Progress {
        var nextSequence: UInt64
        var follower: PartitionFollower.Progress
        var snapshotSequence: UInt64?
    }

    var progress: Progress {
        let following = follower.progress
        return folded.withLock { folded in
            Progress(
                nextSequence: folded.state.nextSequence, follower: following,
                snapshotSequence: folded.schedule.lastSequence)
        }
    }

    func start() { follower.start(threadName: "aggregator-p\(partition)") }

    /// Waits until the first catch-up finished (or `timeout` seconds).
    func waitUntilCaughtUp(timeout: Double) -> Bool { follower.waitUntilCaughtUp(timeout: timeout) }

    /// Stops following and writes a final snapshot.
    func stop() {
        follower.stop()
        folded.withLock { saveSnapshot(&$0) }
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
