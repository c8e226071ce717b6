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
    /// For a usage report: its meter's name as `meterHint(_:)` gives it, so that reading ahead finds
    /// the meter among a subscription's without the name (0 for none). A hint as well.
    public var meterHint: UInt64

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
        meterHint = 0
        if case .usageReported(let usage) = self.message.body, let name = usage.resource.resourceId {
            nameHash = DenseTable<String, Subscription>.hash(name)
            meterHint = Self.meterHint(usage.meterName)
        }
    }

    /// The two words of a string's own bytes, mixed into one: equal for equal names short enough
    /// to be stored in the string itself (up to 15 bytes, as meter names are), and for copies of
    /// one longer string; unequal otherwise, as a rule. Read from the string in place, so a list of
    /// names can be searched for it without retaining them (`PartitionState.prefetch`).
    @inlinable package static func meterHint(_ name: String) -> UInt64 {
        withUnsafeBytes(of: name) { meterHint(at: $0.baseAddress!) }
    }

    /// `meterHint(_:)` of the string stored at `address`.
    @inlinable package static func meterHint(at address: UnsafeRawPointer) -> UInt64 {
        (address.load(as: UInt64.self) &* 0x9E37_79B9_7F4A_7C15) ^ address.load(fromByteOffset: 8, as: UInt64.self)
    }
}
