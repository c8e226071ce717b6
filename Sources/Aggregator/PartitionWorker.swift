import Billing
import Daemon
import Foundation
import Projection
import Wire

/// One partition's billing state in the aggregator: restored from the newest valid snapshot, fed
/// by a `PartitionFollower`, snapshotted every N records or T of log time and at shutdown.
final class PartitionWorker: PartitionFolding, @unchecked Sendable {
    let partition: Int
    private let configuration: AggregatorConfiguration
    private let store: SnapshotStore
    private let lock = NSLock()
    private var state: PartitionState
    private var schedule: SnapshotSchedule
    private var follower: PartitionFollower!

    /// The log the state was folded from: the restored snapshot's, else the first one followed.
    private let binding: LogBinding

    init(partition: Int, configuration: AggregatorConfiguration) {
        self.partition = partition
        self.configuration = configuration
        self.store = SnapshotStore(root: configuration.snapshotDirectory, partition: partition, kept: configuration.snapshotsKept)
        let loaded = store.loadNewest(log: nil) { json, sequence throws -> PartitionState in
            let state = try PartitionState(snapshot: json)
            guard state.partition == partition, state.lastSequence == sequence else {
                throw SnapshotStore.Failure("contents do not match the header")
            }
            return state
        }
        let restored = loaded?.state
        binding = LogBinding(identity: loaded?.log)
        state = restored ?? PartitionState(partition: partition)
        schedule = SnapshotSchedule(
            everyRecords: configuration.snapshotEveryRecords, everySeconds: configuration.snapshotEverySeconds,
            restoredAt: restored?.lastSequence, time: restored?.time)
        follower = PartitionFollower(
            partition: partition, ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes,
            binding: binding, owner: self)
    }

    /// Reads the state under the lock.
    func read<T>(_ body: (PartitionState) -> T) -> T { lock.withLock { body(state) } }

    struct Progress {
        var nextSequence: UInt64
        var follower: PartitionFollower.Progress
        var snapshotSequence: UInt64?
    }

    var progress: Progress {
        let following = follower.progress
        return lock.withLock {
            Progress(nextSequence: state.lastSequence.map { $0 + 1 } ?? 0, follower: following, snapshotSequence: schedule.lastSequence)
        }
    }

    func start() { follower.start(threadName: "aggregator-p\(partition)") }

    /// Waits until the first catch-up finished (or `timeout` seconds).
    func waitUntilCaughtUp(timeout: Double) -> Bool { follower.waitUntilCaughtUp(timeout: timeout) }

    /// Stops following and writes a final snapshot.
    func stop() {
        follower.stop()
        lock.withLock { saveSnapshot() }
    }

    func nextSequence() -> UInt64 { lock.withLock { state.lastSequence.map { $0 + 1 } ?? 0 } }

    func fold(_ records: [BillingRecord]) {
        lock.withLock {
            for record in records { state.apply(record) }
            if schedule.folded(records.count, time: state.time) { saveSnapshot() }
        }
    }

    // MARK: snapshots (lock held)

    private func saveSnapshot() {
        guard let sequence = state.lastSequence, schedule.isWorthWriting else { return }
        do {
            try store.save(sequence: sequence, body: state.snapshot(), log: binding.identity)
            schedule.saved(sequence: sequence, time: state.time)
        } catch {
            Log.error("partition \(partition): cannot write a snapshot: \(error); will retry")
        }
    }
}
