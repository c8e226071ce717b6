public import Wire

/// One record of the log as the fold sees it: where it is in its partition, the authoritative
/// enqueued time that ingest gave it (the only business clock, DESIGN.md §4.1), and the message.
public struct BillingRecord: Sendable {
    /// The partition the record was appended to.
    public var partition: Int
    /// The record's sequence number in its partition.
    public var sequence: UInt64
    /// When ingest made the record durable: the time billing uses (never the sender's `timestamp`).
    public var enqueuedTime: Timestamp
    /// The decoded message.
    public var message: Message

    /// A record of `partition` at `sequence`, enqueued at `enqueuedTime`.
    public init(partition: Int, sequence: UInt64, enqueuedTime: Timestamp, message: Message) {
        self.partition = partition
        self.sequence = sequence
        self.enqueuedTime = enqueuedTime
        self.message = message
    }
}
