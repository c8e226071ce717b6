import Billing
import Foundation
import Projection
import QueryModel
import Wire

/// One partition's read model in the query service: restored from the newest snapshot that the
/// journals agree with, fed by a `PartitionFollower`; the usage records and outcomes it produces go
/// to the journals (synced before any snapshot that counts them), and watchers of the
/// subscriptions a batch touched are told.
final class ViewWorker: PartitionFolding, @unchecked Sendable {
    let partition: Int
    private let configuration: QueryConfiguration
    private let store: SnapshotStore
    private let usage: Journal
    private let submissions: Journal
    private let watchers: WatcherRegistry
    private let lock = NSLock()
    private var view: PartitionView
    private var appliedSinceSnapshot = 0
    private var lastSnapshotTime: Timestamp?
    private var lastSnapshotSequence: UInt64?
    private var journalError: String?
    private var follower: PartitionFollower!

    init(partition: Int, configuration: QueryConfiguration, usage: Journal, submissions: Journal, watchers: WatcherRegistry) {
        self.partition = partition
        self.configuration = configuration
        self.usage = usage
        self.submissions = submissions
        self.watchers = watchers
        store = SnapshotStore(root: configuration.dataDirectory + "/snapshots", partition: partition, kept: configuration.snapshotsKept)
        let restored = store.loadNewest { json, sequence throws -> PartitionView in
            let view = try PartitionView(snapshot: json)
            guard view.partition == partition, view.state.lastSequence == sequence else {
                throw SnapshotStore.Failure("contents do not match the header")
            }
            // A snapshot that counts records the journals lost would leave a gap in the ids.
            guard view.usageOrdinal <= usage.nextOrdinal(partition: partition),
                view.submissionOrdinal <= submissions.nextOrdinal(partition: partition)
            else { throw SnapshotStore.Failure("it counts journal lines that are not in the journals") }
            return view
        }
        if let restored {
            view = restored
            lastSnapshotSequence = restored.state.lastSequence
            lastSnapshotTime = restored.state.time
        } else {
            view = PartitionView(partition: partition)
        }
        follower = PartitionFollower(
            partition: partition, ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes, owner: self)
    }

    /// Reads the view under the lock.
    func read<T>(_ body: (PartitionView) -> T) -> T { lock.withLock { body(view) } }

    var followerProgress: PartitionFollower.Progress { follower.progress }
    var snapshotSequence: UInt64? { lock.withLock { lastSnapshotSequence } }
    var lastJournalError: String? { lock.withLock { journalError } }

    func start() { follower.start(threadName: "query-p\(partition)") }

    func waitUntilCaughtUp(timeout: Double) -> Bool { follower.waitUntilCaughtUp(timeout: timeout) }

    /// Stops following and writes a final snapshot.
    func stop() {
        follower.stop()
        lock.withLock { saveSnapshot() }
    }

    func nextSequence() -> UInt64 { lock.withLock { view.nextSequence } }

    func fold(_ records: [BillingRecord]) {
        let touched = lock.withLock { () -> Set<String> in
            var output = PartitionView.Output()
            for record in records { view.apply(record, into: &output) }
            for record in output.usage { usage.append(partition: partition, ordinal: record.ordinal, record.json) }
            for record in output.submissions { submissions.append(partition: partition, ordinal: record.ordinal, record.json) }
            do {
                if !output.usage.isEmpty { try usage.sync() }
                if !output.submissions.isEmpty { try submissions.sync() }
                journalError = nil
            } catch {
                // The lines stay buffered and are written with the next sync; no snapshot counts
                // them until then.
                journalError = "\(error)"
                Log.error("partition \(partition): \(error); will retry")
            }
            appliedSinceSnapshot += records.count
            if journalError == nil && snapshotDue() { saveSnapshot() }
            return output.touched
        }
        if !touched.isEmpty { watchers.changed(partition: partition, keys: touched) }
    }

    // MARK: snapshots (lock held)

    private func snapshotDue() -> Bool {
        if appliedSinceSnapshot >= configuration.snapshotEveryRecords { return true }
        guard appliedSinceSnapshot > 0, let time = view.state.time else { return false }
        guard let last = lastSnapshotTime else {
            lastSnapshotTime = time
            return false
        }
        return time.microseconds - last.microseconds >= Int64(configuration.snapshotEverySeconds) * 1_000_000
    }

    private func saveSnapshot() {
        guard let sequence = view.state.lastSequence, appliedSinceSnapshot > 0 || lastSnapshotSequence == nil else { return }
        do {
            try usage.sync()
            try submissions.sync()
            try store.save(sequence: sequence, body: view.snapshot())
            appliedSinceSnapshot = 0
            lastSnapshotTime = view.state.time
            lastSnapshotSequence = sequence
        } catch {
            Log.error("partition \(partition): cannot write a snapshot: \(error); will retry")
        }
    }
}
