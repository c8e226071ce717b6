public import Wire

/// One record of the event log, as stored and as read back.
public struct LogRecord: Sendable, Hashable {
    public var partition: Int
    /// Gap-free within the partition, from 0.
    public var sequence: UInt64
    /// The authoritative business time, assigned by ingest; never decreases within a partition.
    public var enqueuedTime: Timestamp
    public var meta: RecordMeta
    /// The message as appended: compact UTF-8 JSON of its envelope.
    public var payload: [UInt8]

    public init(partition: Int, sequence: UInt64, enqueuedTime: Timestamp, meta: RecordMeta, payload: [UInt8]) {
        self.partition = partition
        self.sequence = sequence
        self.enqueuedTime = enqueuedTime
        self.meta = meta
        self.payload = payload
    }

    /// The record as the wire protocol shows it: `{"partition","sequence","enqueuedTime","event"}`,
    /// the stored payload spliced in without re-parsing.
    public func appendJSON(to out: inout [UInt8]) {
        out.append(contentsOf: #"{"partition":"#.utf8)
        out.append(contentsOf: String(partition).utf8)
        out.append(contentsOf: #","sequence":"#.utf8)
        out.append(contentsOf: String(sequence).utf8)
        out.append(contentsOf: #","enqueuedTime":""#.utf8)
        out.append(contentsOf: enqueuedTime.iso8601.utf8)
        out.append(contentsOf: #"","event":"#.utf8)
        out.append(contentsOf: payload)
        out.append(UInt8(ascii: "}"))
    }
}

/// What recovery needs of a record without parsing its JSON: the idempotency key, for purchases
/// the names that fix the subscription's partition, and whether it defines a plan of the catalog.
public struct RecordMeta: Sendable, Hashable {
    public var idempotencyKey: String?
    /// Set on purchases only.
    public var purchasedResource: ResourceName?
    /// The digest of the message's canonical form, kept with every keyed record so a resend of the
    /// key can be told apart from a different message reusing it. Nil in records written before
    /// log format 2 (recovery computes it from the payload then).
    public var payloadDigest: PayloadDigest?
    /// The digest of the idempotency key (`PayloadDigest.hash(key)`), kept so the index of keys
    /// can be rebuilt without hashing every key again.
    public var keyDigest: PayloadDigest?
    /// Set on `PlanDefined` records, so a restart finds the catalog's few records in the segment
    /// summaries instead of reading the log.
    public var definesPlan: Bool

    public init(
        idempotencyKey: String? = nil, purchasedResource: ResourceName? = nil, payloadDigest: PayloadDigest? = nil,
        keyDigest: PayloadDigest? = nil, definesPlan: Bool = false
    ) {
        self.idempotencyKey = idempotencyKey
        self.purchasedResource = purchasedResource
        self.payloadDigest = payloadDigest
        self.keyDigest = keyDigest
        self.definesPlan = definesPlan
    }
}
