import Billing
import Daemon
import Foundation
import Metrics
import Projection
import Synchronization
import Wire

/// One partition in the notifier: the notification fold restored from its newest snapshot, fed by
/// a `PartitionFollower`; the notifications of each batch go to the partition's outbox (synced)
/// before anything else, and a snapshot never counts records whose notifications are not there.
///
/// After a restart from an older snapshot, records up to the outbox's last one are folded again
/// for the state only: their notifications are in the outbox already, so none is made twice.
///
/// Unchecked only for `follower`, which needs `self` as its owner and so is set at the end of
/// `init`, never after; everything that changes is in `folded`.
final class NotificationWorker: PartitionFolding, @unchecked Sendable {
    let partition: Int
    let outbox: Outbox
    private let store: SnapshotStore
    private let folded: Mutex<Folded>
    private var follower: PartitionFollower!

    private struct Folded {
        var fold: NotificationFold
        var schedule: SnapshotSchedule
        /// Notifications made but not yet written (the outbox failed): written before anything newer.
        var unwritten: [(sequence: UInt64, notifications: [JSONObject])] = []
    }
    private let binding: LogBinding
    private let rules: @Sendable () -> ThresholdRules
    private let wrote: @Sendable () -> Void
    private let metrics: NotifierMetrics

    init(
        partition: Int, configuration: NotifierConfiguration, outbox: Outbox, binding: LogBinding, metrics: NotifierMetrics,
        rules: @escaping @Sendable () -> ThresholdRules, wrote: @escaping @Sendable () -> Void
    ) {
        self.partition = partition
        self.outbox = outbox
        self.binding = binding
        self.rules = rules
        self.wrote = wrote
        self.metrics = metrics
        store = SnapshotStore(root: configuration.dataDirectory + "/snapshots", partition: partition, kept: configuration.snapshotsKept)
        let loaded = store.loadNewest(log: binding.identity) { json, sequence throws -> NotificationFold in
            let fold = try NotificationFold(snapshot: json)
            guard fold.partition == partition, fold.lastSequence == sequence else {
                throw SnapshotStore.Failure("contents do not match the header")
            }
            return fold
        }
        binding.adopt(loaded?.log)
        let restored = loaded?.state
        folded = Mutex(
            Folded(
                fold: restored ?? NotificationFold(partition: partition),
                schedule: SnapshotSchedule(
                    everyRecords: configuration.snapshotEveryRecords, everySeconds: configuration.snapshotEverySeconds,
                    restoredAt: restored?.lastSequence, time: restored?.state.time)))
        follower = PartitionFollower(
            partition: partition, ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes,
            binding: binding, owner: self)
    }

    var followerProgress: PartitionFollower.Progress { follower.progress }
    var nextSequenceFolded: UInt64 { nextSequence() }

    func start() { follower.start(threadName: "notifier-p\(partition)") }

    func waitUntilCaughtUp(timeout: Double) -> Bool { follower.waitUntilCaughtUp(timeout: timeout) }

    /// Stops following and writes a final snapshot.
    func stop() {
        follower.stop()
        folded.withLock { saveSnapshot(&$0) }
    }

    func nextSequence() -> UInt64 { folded.withLock { $0.fold.state.nextSequence } }

    func fold(_ records: RecordBatch) {
        let rules = rules()
        let count = records.count
        let appended = folded.withLock { folded -> Bool in
            let journaled = outbox.lastSequence
            var made: [(sequence: UInt64, notifications: [JSONObject])] = []
            records.takeEach { record in
                let notifications = folded.fold.apply(record, rules: rules)
                guard !notifications.isEmpty, journaled.map({ record.sequence > $0 }) ?? true else { return }
                made.append((record.sequence, notifications))
                for notification in notifications {
                    metrics.notifications.labels(notification["type"]?.stringValue ?? "?").add()
                }
            }
            folded.unwritten += made
            if !folded.unwritten.isEmpty {
                do {
                    try outbox.append(folded.unwritten)
                    folded.unwritten = []
                } catch {
                    Log.error("partition \(partition): \(error); the notifications stay in memory and are written with the next batch")
                }
            }
            if folded.schedule.folded(count, time: folded.fold.state.time) && folded.unwritten.isEmpty { saveSnapshot(&folded) }
            return !made.isEmpty
        }
        if appended { wrote() }
    }

    /// The fold's figures for the metrics: pending items and the oldest pending hour.
    func read<T: Sendable>(_ body: (NotificationFold) -> T) -> T { folded.withLock { body($0.fold) } }

    // MARK: snapshots (lock held)

    private func saveSnapshot(_ folded: inout Folded) {
        guard let sequence = folded.fold.lastSequence, folded.schedule.isWorthWriting, folded.unwritten.isEmpty else { return }
        do {
            try store.save(sequence: sequence, body: folded.fold.snapshot(), log: binding.identity)
            folded.schedule.saved(sequence: sequence, time: folded.fold.state.time)
        } catch {
            Log.error("partition \(partition): cannot write a snapshot: \(error); will retry")
        }
    }
}
