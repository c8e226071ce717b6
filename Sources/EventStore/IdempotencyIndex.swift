public import Wire

/// Remembers idempotency keys and where their first record landed, for a retention window of
/// log time (7 days by default), so a retried message is answered `duplicate` and never counted twice.
///
/// Keys are global to the log. Expiry follows the log's newest enqueued time, never the wall
/// clock, so a log replayed or moved keeps the same answers.
///
/// Keys are held as a 128-bit digest (two independent 64-bit mixes of the key's UTF-8), not as
/// strings: a fixed 16 bytes per key whatever its length, and hashing a digest is far cheaper than
/// hashing a string, which is what rebuilding the index at start-up spends its time on. Two
/// different keys share a digest with a probability of about n²/2¹²⁹ (10⁻²⁴ for ten million
/// keys). The mix is not cryptographic: a sender able to choose keys could make two of its own
/// keys collide, which only lets it suppress its own events.
public struct IdempotencyIndex: Sendable {
    public struct Position: Hashable, Sendable {
        public var partition: Int
        public var sequence: UInt64
        public var enqueuedTime: Timestamp
        /// The digest of the first message's canonical form (nil for records without a key).
        public var payloadDigest: PayloadDigest?

        public init(partition: Int, sequence: UInt64, enqueuedTime: Timestamp, payloadDigest: PayloadDigest? = nil) {
            self.partition = partition
            self.sequence = sequence
            self.enqueuedTime = enqueuedTime
            self.payloadDigest = payloadDigest
        }
    }

    /// A key's 128-bit digest; its hash is its low word (already well mixed).
    struct Digest: Hashable, Sendable {
        var high: UInt64
        var low: UInt64

        func hash(into hasher: inout Hasher) { hasher.combine(low) }
    }

    public let retentionMicroseconds: Int64
    private var positions: [Digest: Position] = [:]
    /// Digests by the time they were recorded, oldest first, for expiry.
    private var byAge: [(digest: Digest, time: Timestamp)] = []
    private var ageStart = 0

    public init(retentionDays: Int = 7) {
        self.retentionMicroseconds = Int64(retentionDays) * Timestamp.microsecondsPerDay
    }

    public var count: Int { positions.count }

    /// Where `key` was first recorded, if it is remembered.
    public func lookup(_ key: String) -> Position? { positions[Self.digest(key)] }

    /// Records `key` at `position` unless it is known already.
    public mutating func remember(_ key: String, at position: Position) {
        let digest = Self.digest(key)
        guard positions[digest] == nil else { return }
        positions[digest] = position
        byAge.append((digest, position.enqueuedTime))
    }

    /// Makes room for `count` more keys (a rebuild knows how many records it will visit).
    public mutating func reserveCapacity(_ count: Int) {
        positions.reserveCapacity(positions.count + count)
        byAge.reserveCapacity(byAge.count - ageStart + count)
    }

    /// Whether a key recorded at `time` is still inside the window when the log is at `now`.
    public func isRetained(_ time: Timestamp, now: Timestamp) -> Bool {
        time.microseconds >= now.microseconds - retentionMicroseconds
    }

    /// Forgets keys recorded before `now - retention`. Appends arrive in time order within a
    /// partition and nearly in order across partitions (a rebuild sorts once, `sortByAge`), so
    /// the age queue is scanned from its oldest end; a key kept a little longer is harmless.
    public mutating func expire(now: Timestamp) {
        let horizon = now.microseconds - retentionMicroseconds
        while ageStart < byAge.count && byAge[ageStart].time.microseconds < horizon {
            let entry = byAge[ageStart]
            if positions[entry.digest]?.enqueuedTime == entry.time { positions[entry.digest] = nil }
            ageStart += 1
        }
        if ageStart > 4096 && ageStart > byAge.count / 2 {
            byAge.removeFirst(ageStart)
            ageStart = 0
        }
    }

    /// Orders the age queue by time after a rebuild that visited partitions one after another.
    public mutating func sortByAge() {
        byAge.removeFirst(ageStart)
        ageStart = 0
        byAge.sort { $0.time < $1.time }
    }

    /// The key's 128-bit digest: the payload digest's hash over its UTF-8.
    static func digest(_ key: String) -> Digest {
        let digest = PayloadDigest.hash(key)
        return Digest(high: digest.high, low: digest.low)
    }
}
