public import Wire

/// Where ingest keeps its records: the embedded `EventLog` (the default), or a replicated stream
/// (the JetStream store). Ingest validates, routes and orders; the store makes a commit group
/// durable and serves the partitions to readers. Both give the same guarantees: a group is
/// acknowledged only once durable as the store defines it, sequences are gap-free per partition,
/// enqueued times never go back within a partition.
///
/// A store may be shared by several writers (the JetStream store: several ingest instances on
/// several hosts). Records another writer committed then appear in the partitions and are shown
/// to `observeOthers`; `exclusive` keeps them out while one group is decided and committed, and a
/// commit that lost the race fails with `superseded` after the store caught up, so the group is
/// decided again against what the other writer added.
public protocol RecordStore: AnyObject, Sendable {
    /// The partitions, as readers and the writer see them.
    var storedPartitions: [any RecordPartition] { get }
    /// The store's identity: a follower that folded another store starts again.
    var identity: String { get }
    /// `system` or `manual`: the clock the store was written on.
    var clock: String { get }
    /// When the store was created (ISO 8601).
    var created: String { get }
    /// Losses accepted by an operator (the embedded log's `meterctl log accept-loss`).
    var lossesAccepted: Int { get }
    /// Where the records are (a directory, or a stream on a NATS server), for logs.
    var location: String { get }
    /// What opening did that an operator should know of.
    var notices: [String] { get }
    /// Bytes of the records.
    var storageBytes: Int { get }

    /// Appends `records` in order, each partition's next sequence numbers to its records, durably,
    /// and makes them readable. Records of one partition must not go back in time. All or nothing.
    func commitRecords(_ records: [EventLog.Pending]) throws(RecordStoreFailure)

    /// Runs `body` as the only writer: records of other writers are not applied meanwhile, so the
    /// partitions' `nextSequence` and `lastTime` hold still while a group is decided and committed.
    func exclusive<T>(_ body: () -> T) -> T

    /// Tells `visit` of every record another writer commits from now on (partition, sequence,
    /// time, meta), before it becomes readable; called inside `exclusive`'s exclusion.
    func observeOthers(_ visit: @escaping @Sendable (Int, UInt64, Timestamp, RecordMeta) -> Void)

    /// Records what was acknowledged where the store keeps such marks (at least once a second,
    /// and at shutdown).
    func checkpoint() throws(EventLogError)

    /// Releases the store (connections, background threads); readers are woken.
    func shutDown()
}

/// Why a commit failed.
public enum RecordStoreFailure: Error, CustomStringConvertible {
    /// Nothing was written: refuse the group and go on.
    case notWritten(String)
    /// Another writer appended first; nothing of this group counts. The store has caught up:
    /// decide the group again.
    case superseded(String)
    /// Whether the group was stored is unknown: stop, and let recovery decide.
    case unknown(String)

    public var description: String {
        switch self {
        case .notWritten(let message), .superseded(let message), .unknown(let message): return message
        }
    }
}

/// One partition of a `RecordStore`.
public protocol RecordPartition: AnyObject, Sendable {
    var partition: Int { get }
    /// The sequence the next appended record gets (the writer's view).
    var nextSequence: UInt64 { get }
    /// The time of the newest appended record (the writer's view).
    var lastTime: Timestamp? { get }
    /// The next sequence readers will see.
    var durableNextSequence: UInt64 { get }
    /// The enqueued time of the newest readable record.
    var durableLastTime: Timestamp? { get }
    /// Bytes of the partition's records, and the pieces (segments, messages) that hold them.
    var storage: (bytes: Int, segments: Int) { get }
    /// Reads records from `sequence` on: at most `maxRecords`, and about `maxBytes`.
    func read(from sequence: UInt64, maxRecords: Int, maxBytes: Int) throws(EventLogError) -> [LogRecord]
    /// Writes records from `sequence` on as the wire protocol shows them, comma-separated; returns
    /// how many, and the sequence to ask for next.
    func appendJSON(from sequence: UInt64, maxRecords: Int, maxBytes: Int, to out: inout [UInt8]) throws(EventLogError) -> (
        count: Int, next: UInt64
    )
    /// Waits until records after `sequence` are readable, or `timeout` seconds pass.
    func waitForRecords(from sequence: UInt64, timeout: Double) -> Bool
    /// Wakes every waiting follower.
    func wakeFollowers()
}

extension RecordPartition {
    /// `appendJSON` with the default byte budget (4 MiB).
    public func appendJSON(from sequence: UInt64, maxRecords: Int, to out: inout [UInt8]) throws(EventLogError) -> (
        count: Int, next: UInt64
    ) {
        try appendJSON(from: sequence, maxRecords: maxRecords, maxBytes: 4 << 20, to: &out)
    }

    /// The durable record at `sequence`, or nil when there is none (yet).
    public func record(at sequence: UInt64) throws(EventLogError) -> LogRecord? {
        guard let record = try read(from: sequence, maxRecords: 1, maxBytes: 4 << 20).first, record.sequence == sequence else { return nil }
        return record
    }
}

extension PartitionLog: RecordPartition {}

extension EventLog: RecordStore {
    public var storedPartitions: [any RecordPartition] { partitions }
    public var identity: String { manifest.identity }
    public var clock: String { manifest.clock }
    public var created: String { manifest.created }
    public var lossesAccepted: Int { manifest.losses.count }
    public var location: String { directory }

    public func commitRecords(_ records: [Pending]) throws(RecordStoreFailure) {
        do {
            try commit(records)
        } catch {
            switch error {
            case .notWritten(let message): throw .notWritten(message)
            case .unknown(let message): throw .unknown(message)
            }
        }
    }

    /// The embedded log has one writer (its `LOCK` makes sure): nothing to exclude.
    public func exclusive<T>(_ body: () -> T) -> T { body() }

    /// The embedded log has no other writers.
    public func observeOthers(_ visit: @escaping @Sendable (Int, UInt64, Timestamp, RecordMeta) -> Void) {}

    public func checkpoint() throws(EventLogError) { try writeHighWaterMarks() }

    public func shutDown() {
        for partition in partitions { partition.wakeFollowers() }
    }
}
