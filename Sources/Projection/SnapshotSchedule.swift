public import Wire

/// When a folding process snapshots a partition: after `everyRecords` records, after
/// `everySeconds` of log time, and at shutdown when anything was folded since the last one.
/// The aggregator and the query service keep the same rhythm.
public struct SnapshotSchedule: Sendable {
    public let everyRecords: Int
    public let everySeconds: Int
    private var foldedSince = 0
    private var lastTime: Timestamp?
    /// The sequence the newest snapshot covers, nil before the first.
    public private(set) var lastSequence: UInt64?

    /// A schedule for a state restored from a snapshot at `sequence` and log time `time` (both nil
    /// for an empty state).
    public init(everyRecords: Int, everySeconds: Int, restoredAt sequence: UInt64?, time: Timestamp?) {
        self.everyRecords = everyRecords
        self.everySeconds = everySeconds
        lastSequence = sequence
        lastTime = time
    }

    /// Counts `records` folded, the state now at log time `time`; true when a snapshot is due.
    ///
    /// `catchingUp`: the log's head is well ahead of the state (a fresh or restarted process).
    /// Log time then races through hours in seconds, and a snapshot per hour of it would write
    /// the whole partition over and over for nothing a restart needs: the record count bounds
    /// what a restart replays. Only the record count counts until the state has caught up.
    public mutating func folded(_ records: Int, time: Timestamp?, catchingUp: Bool = false) -> Bool {
        foldedSince += records
        if foldedSince >= everyRecords { return true }
        guard foldedSince > 0, !catchingUp, let time else { return false }
        guard let last = lastTime else {
            lastTime = time
            return false
        }
        return time.microseconds - last.microseconds >= Int64(everySeconds) * 1_000_000
    }

    /// Whether a snapshot now would add anything (at shutdown): records folded since the last
    /// one, or none written yet.
    public var isWorthWriting: Bool { foldedSince > 0 || lastSequence == nil }

    /// Notes a snapshot written at `sequence`, log time `time`.
    public mutating func saved(sequence: UInt64, time: Timestamp?) {
        foldedSince = 0
        lastTime = time
        lastSequence = sequence
    }
}
