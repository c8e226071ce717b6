import CSystemIO
public import Wire

/// Remembers idempotency keys and where their first record landed, for a retention window of
/// log time (7 days by default), so a retried message is answered `duplicate` and never counted
/// twice, and a key reused for another message is answered `conflict`.
///
/// Keys are global to the log. Expiry follows the log's newest enqueued time, never the wall
/// clock, so a log replayed or moved keeps the same answers.
///
/// An open-addressing table (linear probing, backward-shift deletion) of fixed-size entries: the
/// key's 128-bit digest (`PayloadDigest.hash(key)`), 64 bits of the message's payload digest, the
/// position and the time: 40 bytes a slot, one cache line for a lookup, no allocation per key,
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

    /// One slot: an empty one has the key (0, 0).
    struct Entry {
        var keyHigh: UInt64 = 0
        var keyLow: UInt64 = 0
        var payload: UInt64 = 0
        /// partition << 48 | sequence
        var location: UInt64 = 0
        var time: Int64 = 0

        var isEmpty: Bool { keyHigh == 0 && keyLow == 0 }
    }

    public let retentionMicroseconds: Int64
    private var entries: [Entry]
    private var mask: Int
    public private(set) var count = 0
    /// The oldest time of any entry (a lower bound), so expiry sweeps only when something expired.
    private var oldest = Int64.max
    private var lastSweep: Int64?

    static let sequenceBits: UInt64 = 48
    static let maximumLoad = 0.7

    public init(retentionDays: Int = 7, capacity: Int = 1024) {
        self.retentionMicroseconds = Int64(retentionDays) * Timestamp.microsecondsPerDay
        let slots = Self.slots(for: capacity)
        entries = Array(repeating: Entry(), count: slots)
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
    public var memoryBytes: Int { (mask + 1) * MemoryLayout<Entry>.stride }

    /// Where `key` was first recorded, if it is remembered.
    public func lookup(_ key: String) -> Position? { lookup(digest: Self.digest(key)) }

    /// Where the key with `digest` was first recorded, if it is remembered.
    public func lookup(digest: PayloadDigest) -> Position? {
        let digest = Self.normalized(digest)
        return entries.withUnsafeBufferPointer { table in
            var slot = Int(truncatingIfNeeded: digest.low) & mask
            while !table[slot].isEmpty {
                let entry = table[slot]
                if entry.keyLow == digest.low && entry.keyHigh == digest.high {
                    return Position(
                        partition: Int(entry.location >> Self.sequenceBits), sequence: entry.location & ((1 << Self.sequenceBits) - 1),
                        enqueuedTime: Timestamp(microseconds: entry.time),
                        payloadDigest: entry.payload == 0 ? nil : PayloadDigest(high: 0, low: entry.payload))
                }
                slot = (slot + 1) & mask
            }
            return nil
        }
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
        let mask = self.mask
        let inserted = entries.withUnsafeMutableBufferPointer { table -> Bool in
            var slot = Int(truncatingIfNeeded: digest.low) & mask
            while !table[slot].isEmpty {
                if table[slot].keyLow == digest.low && table[slot].keyHigh == digest.high { return false }
                slot = (slot + 1) & mask
            }
            table[slot] = Entry(
                keyHigh: digest.high, keyLow: digest.low, payload: position.payloadDigest?.low ?? 0,
                location: UInt64(position.partition) << Self.sequenceBits | (position.sequence & ((1 << Self.sequenceBits) - 1)),
                time: position.enqueuedTime.microseconds)
            return true
        }
        guard inserted else { return }
        count += 1
        oldest = min(oldest, position.enqueuedTime.microseconds)
    }

    /// Records the keys a segment holds (a rebuild), those at or after `horizon` only. The table's
    /// slots are reached in a random order, so each insert would wait for memory: the slot of the
    /// key a few places ahead is asked for while this one is inserted.
    public mutating func remember(_ keys: [SegmentSummary.Key], retainedFrom horizon: Timestamp) {
        reserveCapacity(keys.count)
        let mask = self.mask
        let sequenceMask: UInt64 = (1 << Self.sequenceBits) - 1
        var added = 0
        var oldestAdded = oldest
        entries.withUnsafeMutableBufferPointer { table in
            let lookahead = 12
            for index in keys.indices {
                if index + lookahead < keys.count {
                    let ahead = Self.normalized(keys[index + lookahead].key)
                    csystemio_prefetch(table.baseAddress! + (Int(truncatingIfNeeded: ahead.low) & mask))
                }
                let key = keys[index]
                guard key.time.microseconds >= horizon.microseconds else { continue }
                let digest = Self.normalized(key.key)
                var slot = Int(truncatingIfNeeded: digest.low) & mask
                var known = false
                while !table[slot].isEmpty {
                    if table[slot].keyLow == digest.low && table[slot].keyHigh == digest.high {
                        known = true
                        break
                    }
                    slot = (slot + 1) & mask
                }
                if known { continue }
                table[slot] = Entry(
                    keyHigh: digest.high, keyLow: digest.low, payload: key.payload.low,
                    location: UInt64(key.partition) << Self.sequenceBits | (key.sequence & sequenceMask), time: key.time.microseconds)
                added += 1
                oldestAdded = min(oldestAdded, key.time.microseconds)
            }
        }
        count += added
        oldest = oldestAdded
    }

    /// Makes room for `additional` more keys (a rebuild knows how many records it will visit).
    public mutating func reserveCapacity(_ additional: Int) {
        let slots = Self.slots(for: count + additional)
        if slots > mask + 1 { grow(to: slots) }
    }

    private mutating func grow(to slots: Int) {
        let old = entries
        entries = Array(repeating: Entry(), count: slots)
        mask = slots - 1
        let mask = self.mask
        entries.withUnsafeMutableBufferPointer { table in
            for entry in old where !entry.isEmpty {
                var slot = Int(truncatingIfNeeded: entry.keyLow) & mask
                while !table[slot].isEmpty { slot = (slot + 1) & mask }
                table[slot] = entry
            }
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
        guard let start = entries.firstIndex(where: \.isEmpty) else { return }
        var newOldest = Int64.max
        var visited = 0
        var slot = (start + 1) & mask
        while visited < mask {
            if !entries[slot].isEmpty && entries[slot].time < horizon {
                delete(slot)
                continue  // the slot now holds the next entry of the run, or is empty
            }
            if !entries[slot].isEmpty { newOldest = min(newOldest, entries[slot].time) }
            slot = (slot + 1) & mask
            visited += 1
        }
        oldest = newOldest
    }

    /// Removes the entry at `slot`, shifting back the entries after it that probed past it.
    private mutating func delete(_ slot: Int) {
        var hole = slot
        var next = (hole + 1) & mask
        while !entries[next].isEmpty {
            let home = Int(truncatingIfNeeded: entries[next].keyLow) & mask
            // The entry at `next` may fill the hole when its home is not in (hole, next].
            if (next - home) & mask >= (next - hole) & mask {
                entries[hole] = entries[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        entries[hole] = Entry()
        count -= 1
    }
}
