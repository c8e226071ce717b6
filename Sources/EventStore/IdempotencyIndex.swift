public import Wire

/// Remembers idempotency keys and where their first record landed, for a retention window of
/// log time (7 days by default), so a retried message is answered `duplicate` and never counted
/// twice, and a key reused for another message is answered `conflict`.
///
/// Keys are global to the log. Expiry follows the log's newest enqueued time, never the wall
/// clock, so a log replayed or moved keeps the same answers.
///
/// An open-addressing table (linear probing, backward-shift deletion) of fixed-size entries in
/// parallel arrays: the key's 128-bit digest (`PayloadDigest.hash(key)`), 64 bits of the
/// message's payload digest, the position and the time: 40 bytes a slot, no allocation per key,
/// nothing for the reference counter to do. Two different keys share a digest with a probability
/// of about n²/2¹²⁹ (10⁻²⁴ for ten million keys); the digest is not cryptographic, so a sender
/// able to choose keys could make two of its own collide, which only suppresses its own events.
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

    public let retentionMicroseconds: Int64
    private var keyHigh: [UInt64]
    private var keyLow: [UInt64]
    private var payload: [UInt64]
    /// partition << 48 | sequence
    private var location: [UInt64]
    private var time: [Int64]
    private var mask: Int
    public private(set) var count = 0
    /// The oldest time of any entry (a lower bound), so expiry sweeps only when something expired.
    private var oldest = Int64.max
    private var lastSweep: Int64?

    static let emptyKey = (UInt64(0), UInt64(0))
    static let sequenceBits: UInt64 = 48
    static let maximumLoad = 0.7

    public init(retentionDays: Int = 7, capacity: Int = 1024) {
        self.retentionMicroseconds = Int64(retentionDays) * Timestamp.microsecondsPerDay
        let slots = Self.slots(for: capacity)
        keyHigh = Array(repeating: 0, count: slots)
        keyLow = Array(repeating: 0, count: slots)
        payload = Array(repeating: 0, count: slots)
        location = Array(repeating: 0, count: slots)
        time = Array(repeating: 0, count: slots)
        mask = slots - 1
    }

    private static func slots(for keys: Int) -> Int {
        var slots = 1024
        while Double(keys) > Double(slots) * maximumLoad { slots <<= 1 }
        return slots
    }

    /// The digest a key is kept under.
    public static func digest(_ key: String) -> PayloadDigest { normalized(PayloadDigest.hash(key)) }

    /// A digest that is never the empty slot's (0, 0).
    private static func normalized(_ digest: PayloadDigest) -> PayloadDigest {
        digest.high == 0 && digest.low == 0 ? PayloadDigest(high: 0, low: 1) : digest
    }

    /// Bytes the table holds (for status and the memory figures).
    public var memoryBytes: Int { (mask + 1) * 40 }

    /// Where `key` was first recorded, if it is remembered.
    public func lookup(_ key: String) -> Position? { lookup(digest: Self.digest(key)) }

    /// Where the key with `digest` was first recorded, if it is remembered.
    public func lookup(digest: PayloadDigest) -> Position? {
        let digest = Self.normalized(digest)
        var slot = Int(truncatingIfNeeded: digest.low) & mask
        while keyHigh[slot] != 0 || keyLow[slot] != 0 {
            if keyLow[slot] == digest.low && keyHigh[slot] == digest.high {
                let packed = location[slot]
                return Position(
                    partition: Int(packed >> Self.sequenceBits), sequence: packed & ((1 << Self.sequenceBits) - 1),
                    enqueuedTime: Timestamp(microseconds: time[slot]),
                    payloadDigest: payload[slot] == 0 ? nil : PayloadDigest(high: 0, low: payload[slot]))
            }
            slot = (slot + 1) & mask
        }
        return nil
    }

    /// Whether two payload digests name the same message, as far as the table keeps them (the low
    /// 64 bits).
    public static func samePayload(_ stored: PayloadDigest?, _ candidate: PayloadDigest?) -> Bool {
        guard let stored, let candidate else { return true }
        return stored.low == candidate.low
    }

    /// Records `key` at `position` unless it is known already.
    public mutating func remember(_ key: String, at position: Position) { remember(digest: Self.digest(key), at: position) }

    /// Records the key with `digest` at `position` unless it is known already.
    public mutating func remember(digest: PayloadDigest, at position: Position) {
        let digest = Self.normalized(digest)
        if Double(count + 1) > Double(mask + 1) * Self.maximumLoad { grow(to: (mask + 1) * 2) }
        var slot = Int(truncatingIfNeeded: digest.low) & mask
        while keyHigh[slot] != 0 || keyLow[slot] != 0 {
            if keyLow[slot] == digest.low && keyHigh[slot] == digest.high { return }
            slot = (slot + 1) & mask
        }
        keyHigh[slot] = digest.high
        keyLow[slot] = digest.low
        payload[slot] = position.payloadDigest?.low ?? 0
        location[slot] = UInt64(position.partition) << Self.sequenceBits | (position.sequence & ((1 << Self.sequenceBits) - 1))
        time[slot] = position.enqueuedTime.microseconds
        count += 1
        oldest = min(oldest, position.enqueuedTime.microseconds)
    }

    /// Makes room for `additional` more keys (a rebuild knows how many records it will visit).
    public mutating func reserveCapacity(_ additional: Int) {
        let slots = Self.slots(for: count + additional)
        if slots > mask + 1 { grow(to: slots) }
    }

    private mutating func grow(to slots: Int) {
        let old = (keyHigh, keyLow, payload, location, time)
        keyHigh = Array(repeating: 0, count: slots)
        keyLow = Array(repeating: 0, count: slots)
        payload = Array(repeating: 0, count: slots)
        location = Array(repeating: 0, count: slots)
        time = Array(repeating: 0, count: slots)
        mask = slots - 1
        for index in old.0.indices where old.0[index] != 0 || old.1[index] != 0 {
            var slot = Int(truncatingIfNeeded: old.1[index]) & mask
            while keyHigh[slot] != 0 || keyLow[slot] != 0 { slot = (slot + 1) & mask }
            keyHigh[slot] = old.0[index]
            keyLow[slot] = old.1[index]
            payload[slot] = old.2[index]
            location[slot] = old.3[index]
            time[slot] = old.4[index]
        }
    }

    /// Whether a key recorded at `time` is still inside the window when the log is at `now`.
    public func isRetained(_ time: Timestamp, now: Timestamp) -> Bool {
        time.microseconds >= now.microseconds &- retentionMicroseconds
    }

    /// Forgets keys recorded before `now - retention`. Sweeps the table at most once per hour of
    /// log time and only when an entry can have expired; a key kept up to an hour longer is harmless.
    public mutating func expire(now: Timestamp) {
        let horizon = now.microseconds &- retentionMicroseconds
        guard oldest < horizon else { return }
        if let lastSweep, now.microseconds &- lastSweep < Timestamp.microsecondsPerHour { return }
        lastSweep = now.microseconds
        // Start at an empty slot, so no run of entries wraps past the start of the sweep.
        guard let start = (0...mask).first(where: { keyHigh[$0] == 0 && keyLow[$0] == 0 }) else { return }
        var newOldest = Int64.max
        var visited = 0
        var slot = (start + 1) & mask
        while visited < mask {
            if (keyHigh[slot] != 0 || keyLow[slot] != 0) && time[slot] < horizon {
                delete(slot)
                continue  // the slot now holds the next entry of the run, or is empty
            }
            if keyHigh[slot] != 0 || keyLow[slot] != 0 { newOldest = min(newOldest, time[slot]) }
            slot = (slot + 1) & mask
            visited += 1
        }
        oldest = newOldest
    }

    /// Removes the entry at `slot`, shifting back the entries after it that probed past it.
    private mutating func delete(_ slot: Int) {
        var hole = slot
        var next = (hole + 1) & mask
        while keyHigh[next] != 0 || keyLow[next] != 0 {
            let home = Int(truncatingIfNeeded: keyLow[next]) & mask
            // The entry at `next` may fill the hole when its home is not in (hole, next].
            let distanceToHome = (next - home) & mask
            let distanceToHole = (next - hole) & mask
            if distanceToHome >= distanceToHole {
                keyHigh[hole] = keyHigh[next]
                keyLow[hole] = keyLow[next]
                payload[hole] = payload[next]
                location[hole] = location[next]
                time[hole] = time[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        keyHigh[hole] = 0
        keyLow[hole] = 0
        count -= 1
    }
}
