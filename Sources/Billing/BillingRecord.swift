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
    /// For a usage report naming a `resourceId`: that name's hash as the folds' tables hash their
    /// keys (`DenseTable.hash`), taken once as the record is made, while its name is in the
    /// caches; 0 for any other record. Only a hint: a lookup that finds nothing with it is made
    /// again with the name's own hash (a changed `message` leaves it stale, never wrong).
    public var nameHash: Int

    /// `nameHash` as a lookup takes it: nil for none.
    public var nameHint: Int? { nameHash == 0 ? nil : nameHash }

    /// A record of `partition` at `sequence`, enqueued at `enqueuedTime`. The message is taken
    /// (`consuming`): the readers of the log make millions, and a copy retains all it holds.
    public init(partition: Int, sequence: UInt64, enqueuedTime: Timestamp, message: consuming Message) {
        self.partition = partition
        self.sequence = sequence
        self.enqueuedTime = enqueuedTime
        self.message = message
        nameHash = 0
        if case .usageReported(let usage) = self.message.body, let name = usage.resource.resourceId {
            nameHash = DenseTable<String, Subscription>.hash(name)
        }
    }
}
