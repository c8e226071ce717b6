import Billing
import Daemon
import Foundation
import Projection
import QueryModel
import Synchronization
import Wire

/// One partition's read model in the query service: restored from the newest snapshot that the
/// journals agree with, fed by a `PartitionFollower`; the usage records and outcomes it produces go
/// to the journals (synced before any snapshot that counts them, and before the usage store is told
/// how far the partition has come), and watchers of the subscriptions a batch touched are told.
///
/// Unchecked only for `follower`, which needs `self` as its owner and so is set at the end of
/// `init`, never after; everything that changes is in `folded`.
final class ViewWorker: PartitionFolding, @unchecked Sendable {
    let partition: Int
    private let configuration: QueryConfiguration
    private let store: SnapshotStore
    private let usage: UsageStore
    private let submissions: Journal
    private let watchers: WatcherRegistry
    private let folded: Mutex<Folded>
    /// What `status` shows of the partition, published by the fold (at start, after each answer of
    /// records and at stop), so that a status, asked for often, never waits for a fold in
    /// progress, which holds the lock for a whole answer (0.74% of meter-query's samples waited so
    /// in a catch-up with the benchmark asking every 5 ms).
    private let published: Mutex<Published>
    private var follower: PartitionFollower!

    struct Published: Sendable {
        var nextSequence: UInt64
        var time: Timestamp?
        var subscriptions: Int
        var snapshotSequence: UInt64?
        var journalError: String?
    }

    private struct Folded {
        var view: PartitionView
        var schedule: SnapshotSchedule
        var journalError: String?
        /// Usage records journaled but not yet reported durable to the usage store (a sync failed).
        var unreported: [(ordinal: UInt64, closed: Timestamp)] = []
    }

    private let binding: LogBinding

    /// A partition's view as restored from its newest usable snapshot, with the identity of the
    /// log it was folded from.
    struct Restored {
        var view: PartitionView
        var log: String?
    }

    /// Where `partition`'s snapshots are kept, for restoring them and for writing new ones.
    static func snapshotStore(partition: Int, configuration: QueryConfiguration) -> SnapshotStore {
        SnapshotStore(root: configuration.dataDirectory + "/snapshots", partition: partition, kept: configuration.snapshotsKept)
    }

    /// The newest snapshot of `partition` that verifies, belongs to log `log` (when both are
    /// known) and that the journals agree with; nil when there is none (the partition is folded
    /// from the start). Unusable files are moved aside. Touches only the partition's own files,
    /// so partitions restore in parallel.
    static func restore(
        partition: Int, configuration: QueryConfiguration, usage: UsageStore, submissions: Journal, log: String?
    ) -> Restored? {
        let store = snapshotStore(partition: partition, configuration: configuration)
        let loaded = store.loadNewestBody(log: log) { body, sequence throws -> PartitionView in
            // JSON bodies (query-view-3 and before) are those of earlier releases: the next
            // snapshot is written in bytes.
            let view =
                switch body {
                case .bytes(let bytes): try PartitionView(binarySnapshot: bytes)
                case .json(let json): try PartitionView(snapshot: json)
                }
            guard view.partition == partition, view.state.lastSequence == sequence else {
                throw SnapshotStore.Failure("contents do not match the header")
            }
            // A snapshot that counts records the journals lost would leave a gap in the ids.
            guard view.usageOrdinal <= usage.journals[partition].nextOrdinal,
                view.submissionOrdinal <= submissions.nextOrdinal(partition: partition)
            else { throw SnapshotStore.Failure("it counts journal lines that are not in the journals") }
            return view
        }
        return loaded.map { Restored(view: $0.state, log: $0.log) }
    }

    /// The workers of `partitions` partitions, their snapshots read in parallel (a restart's
    /// largest cost). The log binding is settled in partition order, as if they were read one by
    /// one: a partition whose snapshot names another log than the one adopted before it is read
    /// again, refusing that log's snapshots.
    static func restoreAll(
        partitions: Int, configuration: QueryConfiguration, usage: UsageStore, submissions: Journal, watchers: WatcherRegistry,
        binding: LogBinding
    ) -> [ViewWorker] {
        let known = binding.identity
        let restored = Mutex([Restored?](repeating: nil, count: partitions))
        DispatchQueue.concurrentPerform(iterations: partitions) { partition in
            let view = restore(partition: partition, configuration: configuration, usage: usage, submissions: submissions, log: known)
            restored.withLock { $0[partition] = view }
        }
        let views = restored.withLock { $0 }
        return (0..<partitions).map { partition in
            var view = views[partition]
            if let log = view?.log, let bound = binding.identity, log != bound {
                view = restore(partition: partition, configuration: configuration, usage: usage, submissions: submissions, log: bound)
            }
            binding.adopt(view?.log)
            return ViewWorker(
                partition: partition, restored: view?.view, configuration: configuration, usage: usage, submissions: submissions,
                watchers: watchers, binding: binding)
        }
    }

    /// A worker for `partition` starting from `restored` (nil: from the start of the log).
    init(
        partition: Int, restored: PartitionView?, configuration: QueryConfiguration, usage: UsageStore, submissions: Journal,
        watchers: WatcherRegistry, binding: LogBinding
    ) {
        self.partition = partition
        self.binding = binding
        self.configuration = configuration
        self.usage = usage
        self.submissions = submissions
        self.watchers = watchers
        store = Self.snapshotStore(partition: partition, configuration: configuration)
        let start = Folded(
            view: restored ?? PartitionView(partition: partition),
            schedule: SnapshotSchedule(
                everyRecords: configuration.snapshotEveryRecords, everySeconds: configuration.snapshotEverySeconds,
                restoredAt: restored?.state.lastSequence, time: restored?.state.time))
        published = Mutex(Self.published(start))
        folded = Mutex(start)
        // Every record the snapshot counts is journaled: the partition's usage is complete up to its time.
        usage.journaled(partition: partition, records: [], clock: restored?.state.time)
        follower = PartitionFollower(
            partition: partition, ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes,
            binding: binding, owner: self)
    }

    /// Reads the view under the lock.
    func read<T>(_ body: (PartitionView) -> T) -> T { folded.withLock { body($0.view) } }

    var followerProgress: PartitionFollower.Progress { follower.progress }
    /// Where the partition is, as last published (no wait for a fold in progress).
    var publishedStatus: Published { published.withLock { $0 } }

    private static func published(_ folded: Folded) -> Published {
        Published(
            nextSequence: folded.view.nextSequence, time: folded.view.state.time, subscriptions: folded.view.state.subscriptionCount,
            snapshotSequence: folded.schedule.lastSequence, journalError: folded.journalError)
    }

    /// Publishes what `status` shows (lock held).
    private func publish(_ folded: Folded) {
        let now = Self.published(folded)
        published.withLock { $0 = now }
    }

    func start() { follower.start(threadName: "query-p\(partition)") }

    func waitUntilCaughtUp(timeout: Double) -> Bool { follower.waitUntilCaughtUp(timeout: timeout) }

    /// Stops following and writes a final snapshot.
    func stop() {
        follower.stop()
        folded.withLock { folded in
            saveSnapshot(&folded)
            publish(folded)
        }
    }

    func nextSequence() -> UInt64 { folded.withLock { $0.view.nextSequence } }

    func fold(_ records: RecordBatch) {
        let watched = watchers.openCount > 0
        let count = records.count
        let touched = folded.withLock { folded -> Set<String> in
            var output = PartitionView.Output(collectingTouched: watched)
            // The subscriptions of the records ahead are asked for while this one is folded
            // (no step at all while they fit in the caches).
            let steps = folded.view.state.readsAhead ? PartitionState.readAheadSteps : 0
            records.takeEach(readingAhead: steps) {
                folded.view.prefetch($0, step: $1)
            } _: { record in
                let before = output.usage.count
                folded.view.apply(record, into: &output)
                guard output.usage.count > before, let now = folded.view.state.time else { return }
                // The hours before the one `now` falls in closed with this record.
                for closed in output.usage[before...]
                where usage.append(partition: partition, closed: now.hourStart, record: closed) {
                    folded.unreported.append((closed.ordinal, now.hourStart))
                }
            }
            for record in output.submissions { submissions.append(partition: partition, ordinal: record.ordinal, record.fields) }
            do {
                try usage.journals[partition].sync()
                if !output.submissions.isEmpty { try submissions.sync() }
                folded.journalError = nil
                usage.journaled(partition: partition, records: folded.unreported, clock: folded.view.state.time)
                folded.unreported.removeAll()
            } catch {
                // The lines stay buffered and are written with the next sync; no snapshot counts
                // them, and the usage store numbers none of them, until then.
                folded.journalError = "\(error)"
                Log.error("partition \(partition): \(error); will retry")
            }
            let catchingUp = follower.isCatchingUp(nextSequence: folded.view.nextSequence)
            if folded.schedule.folded(count, time: folded.view.state.time, catchingUp: catchingUp) && folded.journalError == nil {
                saveSnapshot(&folded)
            }
            publish(folded)
            return output.touched
        }
        if !touched.isEmpty { watchers.changed(partition: partition, keys: touched) }
    }

    // MARK: snapshots (lock held)

    private func saveSnapshot(_ folded: inout Folded) {
        guard let sequence = folded.view.state.lastSequence, folded.schedule.isWorthWriting else { return }
        do {
            try usage.journals[partition].sync()
            try submissions.sync()
            try store.save(sequence: sequence, bytes: folded.view.binarySnapshot(), log: binding.identity)
            folded.schedule.saved(sequence: sequence, time: folded.view.state.time)
        } catch {
            Log.error("partition \(partition): cannot write a snapshot: \(error); will retry")
        }
    }
}
