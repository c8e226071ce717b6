import CSystemIO
import Daemon
import SystemIO
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

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
    /// Growths while remembering keys one by one, and the seconds they took, since start.
    public private(set) var growths = 0
    public private(set) var growthSeconds = 0.0
    /// The slots and counters (shared by copies of this value: there is one table).
    private var table: IdempotencyTable
    /// The larger table made ahead for the next growth (shared by copies, like `table`).
    private let successor = TableSuccessor()
    private var mask: Int { table.slots - 1 }
    public var count: Int { table.count }

    static let sequenceBits: UInt64 = 48
    static let maximumLoad = 0.7
    /// From this many slots on, the next table is made in the background once the current one is
    /// 60% full (it grows at 70%): long enough ahead for the kernel to zero a gigabyte at the rate
    /// keys come in a batched benchmark, short enough that the second table's memory and disk are
    /// held only near the growth. Smaller tables are made in well under a millisecond when needed.
    static let successorFromSlots = 1 << 16

    /// An index in memory only (rebuilt from the log at every start).
    public init(retentionDays: Int = 7, capacity: Int = 1024) {
        self.retentionMicroseconds = Int64(retentionDays) * Timestamp.microsecondsPerDay
        table = IdempotencyTable.anonymous(slots: Self.slots(for: capacity), retention: retentionMicroseconds)
    }

    private init(retentionMicroseconds: Int64, table: IdempotencyTable) {
        self.retentionMicroseconds = retentionMicroseconds
        self.table = table
    }

    /// The index kept in the file at `path` for the log `identity` (`partitions` partitions, each
    /// holding records up to `logNext`), so a process restarted after a crash or a stop takes it
    /// over instead of rebuilding it. When the file cannot be trusted (see `IdempotencyTable`) a
    /// new, empty one replaces it. Returns the index, per partition the first sequence whose key
    /// recovery must still give it (everything when new), and, when the file was not used or
    /// cannot be kept, why (for the operator's log). When no file can be made (the disk is full,
    /// say) the index lives in memory only. The table has room for `expectedKeys` keys from the
    /// start (a smaller one taken over grows to it now), so it does not grow until they are there.
    public static func opening(
        path: String, identity: String, partitions: Int, logNext: [UInt64], retentionDays: Int = 7, expectedKeys: Int = 0
    ) -> (index: IdempotencyIndex, from: [UInt64], notice: String?) {
        let retention = Int64(retentionDays) * Timestamp.microsecondsPerDay
        let everything = [UInt64](repeating: 0, count: partitions)
        guard let boot = IdempotencyTable.currentBootID else {
            return (
                IdempotencyIndex(retentionDays: retentionDays, capacity: expectedKeys), everything,
                "the idempotency index is kept in memory only: this system has no boot id to tell a table file of this boot"
            )
        }
        let owner = IdempotencyTable.Owner(identity: identity, bootID: boot, partitions: partitions, retention: retention)
        var reason: String
        switch IdempotencyTable.open(path: path, owner: owner) {
        case .success(let table):
            let covered = table.covered
            if covered.count == logNext.count, zip(covered, logNext).allSatisfy({ $0 <= $1 }) {
                var index = IdempotencyIndex(retentionMicroseconds: retention, table: table)
                // A table made before the expected count was raised grows to it now, not while appending.
                if expectedKeys > index.count { index.reserveCapacity(expectedKeys - index.count) }
                return (index, covered, nil)
            }
            reason = "it holds keys of records the log does not have"
        case .failure(.missing):
            reason = ""
        case .failure(let refusal):
            reason = refusal.description
        }
        do {
            let table = try IdempotencyTable.create(path: path, slots: slots(for: expectedKeys), owner: owner)
            try table.install()
            let notice = reason.isEmpty ? nil : "rebuilt the idempotency table \(path) from the log: \(reason)"
            return (IdempotencyIndex(retentionMicroseconds: retention, table: table), everything, notice)
        } catch {
            return (
                IdempotencyIndex(retentionDays: retentionDays, capacity: expectedKeys), everything,
                "the idempotency index is kept in memory only (a restart rebuilds it from the log): cannot make \(path): \(error)"
            )
        }
    }

    /// Whether the index is kept in a file that a restarted process takes over.
    public var isKeptInFile: Bool { table.path != nil }

    /// Records that the keys of every record before `next` (per partition) are remembered, so a
    /// process taking the file over starts from there. Call after remembering a committed group.
    public func cover(_ next: [UInt64]) { table.cover(next) }

    /// Per partition, the next sequence whose key the index holds (what `cover` last recorded).
    public var covered: [UInt64] { table.covered }

    static func slots(for keys: Int) -> Int {
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
    public var memoryBytes: Int { (mask + 1) * Self.slotBytes }

    /// Bytes of the table made for `keys` keys (its slots, without the header): what
    /// `METERING_INGEST_EXPECTED_KEYS` asks of memory and disk.
    public static func memoryBytes(forKeys keys: Int) -> Int { slots(for: keys) * slotBytes }

    /// Bytes of one slot of the table.
    public static var slotBytes: Int { MemoryLayout<Entry>.stride }

    /// Where `key` was first recorded, if it is remembered.
    public func lookup(_ key: String) -> Position? { lookup(digest: Self.digest(key)) }

    /// Where the key with `digest` was first recorded, if it is remembered.
    public func lookup(digest: PayloadDigest) -> Position? {
        let digest = Self.normalized(digest)
        let table = self.table.entries
        let mask = self.mask
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

    /// Asks the CPU for the slots where the key with `digest` starts its probe, so a lookup a few
    /// hundred nanoseconds later finds them in the cache (a hint; it never faults): three cache
    /// lines, about five slots, as a key not in the table probes about six before an empty one
    /// at `maximumLoad` (a linear probe's ½(1 + 1/(1 − 0.7)²)).
    public func prefetch(digest: PayloadDigest) {
        let digest = Self.normalized(digest)
        let first = UnsafeRawPointer(table.entries + (Int(truncatingIfNeeded: digest.low) & mask))
        csystemio_prefetch(first)
        csystemio_prefetch(first + 64)
        csystemio_prefetch(first + 128)
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
        let slots = mask + 1
        if Double(count + 1) > Double(slots) * Self.maximumLoad {
            // Counted for the caller, which knows whether appends waited (they do not in recovery).
            let started = MonotonicClock.now()
            grow(to: slots * 2)
            growths += 1
            growthSeconds += MonotonicClock.now() - started
        } else if count == slots / 10 * 6 && slots >= Self.successorFromSlots {
            // The count passes here once per table (it grows by one per key).
            prepareSuccessor(slots: slots * 2)
        }
        insert(
            Self.normalized(digest), payload: position.payloadDigest?.low ?? 0, partition: position.partition,
            sequence: position.sequence, time: position.enqueuedTime.microseconds)
    }

    /// Puts an entry in its slot unless its key is there; false when it was.
    ///
    /// A process can be killed between any two stores, and a file-backed table keeps what it had
    /// written: the oldest time is lowered first, the entry's fields are written before its key
    /// (a slot whose key is not complete is never found), and the count last (a count a few short
    /// only sweeps or grows a little later).
    @discardableResult
    private func insert(_ digest: PayloadDigest, payload: UInt64, partition: Int, sequence: UInt64, time: Int64) -> Bool {
        let table = self.table.entries
        let mask = self.mask
        var slot = Int(truncatingIfNeeded: digest.low) & mask
        while !table[slot].isEmpty {
            if table[slot].keyLow == digest.low && table[slot].keyHigh == digest.high { return false }
            slot = (slot + 1) & mask
        }
        if time < self.table.oldest { self.table.oldest = time }
        table[slot].payload = payload
        table[slot].location = UInt64(partition) << Self.sequenceBits | (sequence & ((1 << Self.sequenceBits) - 1))
        table[slot].time = time
        csystemio_store_fence()
        table[slot].keyLow = digest.low
        table[slot].keyHigh = digest.high
        csystemio_store_fence()
        self.table.count += 1
        return true
    }

    /// Records a committed group's keys, each key's slots asked for sixteen keys ahead of its
    /// insert (the slots a group's decisions asked for have mostly left the cache by then).
    public mutating func remember(_ entries: [(digest: PayloadDigest, position: Position)]) {
        let ahead = 16
        for index in entries.indices.prefix(ahead) { prefetch(digest: entries[index].digest) }
        for index in entries.indices {
            if index + ahead < entries.count { prefetch(digest: entries[index + ahead].digest) }
            remember(digest: entries[index].digest, at: entries[index].position)
        }
    }

    /// Records the keys a segment holds (a rebuild), those at or after `horizon` only. The table's
    /// slots are reached in a random order, so each insert would wait for memory: the slot of the
    /// key a few places ahead is asked for while this one is inserted.
    public mutating func remember(_ keys: [SegmentSummary.Key], retainedFrom horizon: Timestamp) {
        reserveCapacity(keys.count)
        let table = self.table.entries
        let mask = self.mask
        let lookahead = 12
        for index in keys.indices {
            if index + lookahead < keys.count {
                let ahead = Self.normalized(keys[index + lookahead].key)
                csystemio_prefetch(table + (Int(truncatingIfNeeded: ahead.low) & mask))
            }
            let key = keys[index]
            guard key.time.microseconds >= horizon.microseconds else { continue }
            insert(
                Self.normalized(key.key), payload: key.payload.low, partition: key.partition, sequence: key.sequence,
                time: key.time.microseconds)
        }
    }

    /// Makes room for `additional` more keys (a rebuild knows how many records it will visit).
    public mutating func reserveCapacity(_ additional: Int) {
        let slots = Self.slots(for: count + additional)
        if slots > mask + 1 { grow(to: slots) }
    }

    /// Moves the entries into a table of `slots` slots: for a file, a new file that replaces the
    /// old one once complete (a process killed meanwhile leaves the old one, still whole). When no
    /// new file can be made (a full disk), the index goes on in memory and the file is removed, so
    /// a restart rebuilds the keys from the log instead of taking over a table that stopped.
    private mutating func grow(to slots: Int) {
        let old = table
        var new = successor.take(slots: slots)
        if new == nil, let path = old.path {
            let owner = IdempotencyTable.Owner(
                identity: old.identity, bootID: old.bootID, partitions: old.partitions, retention: old.retention)
            do {
                new = try IdempotencyTable.create(path: path, slots: slots, owner: owner)
            } catch {
                Log.warning(
                    "cannot grow the idempotency table \(path) to \(slots) slots (\(error)); it is kept in memory from now on, and the next start rebuilds it from the log"
                )
                unlink(path)
            }
        }
        let grown = new ?? IdempotencyTable.anonymous(slots: slots, retention: old.retention, partitions: old.partitions)
        let mask = slots - 1
        for index in 0..<old.slots where !old.entries[index].isEmpty {
            var slot = Int(truncatingIfNeeded: old.entries[index].keyLow) & mask
            while !grown.entries[slot].isEmpty { slot = (slot + 1) & mask }
            grown.entries[slot] = old.entries[index]
        }
        grown.count = old.count
        grown.oldest = old.oldest
        grown.lastSweep = old.lastSweep
        grown.cover(old.covered)
        if let path = grown.path {
            do {
                try grown.install()
            } catch {
                // The mapping stays usable; only a restart's takeover is lost.
                Log.warning("cannot put the grown idempotency table in place (\(error)); the next start rebuilds it from the log")
                unlink(path + ".new")
                unlink(path)
            }
        }
        table = grown
        // The old table's file was replaced: its last close frees its blocks (20 ms for 160 MiB
        // with discard on this VM's ext4), which the commit whose key made it grow need not wait for.
        TableSuccessor.release(old)
    }

    /// Starts making the table the next growth moves the entries into, of the same kind as this one
    /// (a file beside it, or anonymous memory with its pages mapped), on a background thread.
    private func prepareSuccessor(slots: Int) {
        let retention = table.retention
        let partitions = table.partitions
        if let path = table.path {
            let owner = IdempotencyTable.Owner(
                identity: table.identity, bootID: table.bootID, partitions: partitions, retention: retention)
            successor.prepare(slots: slots) { () throws(SystemError) in
                try IdempotencyTable.create(path: path, slots: slots, owner: owner)
            }
        } else {
            successor.prepare(slots: slots) {
                IdempotencyTable.anonymous(slots: slots, retention: retention, partitions: partitions, populated: true)
            }
        }
    }

    /// Whether the next table is being made, or made and waiting (for tests).
    var hasSuccessor: Bool { successor.isPrepared }

    /// Whether a key recorded at `time` is still inside the window when the log is at `now`.
    public func isRetained(_ time: Timestamp, now: Timestamp) -> Bool {
        time.microseconds >= now.microseconds &- retentionMicroseconds
    }

    /// Forgets keys recorded before `now - retention`. Sweeps the table at most once per hour of
    /// log time and only when an entry can have expired; a key kept up to an hour longer is harmless.
    public mutating func expire(now: Timestamp) {
        let horizon = now.microseconds &- retentionMicroseconds
        guard table.oldest < horizon else { return }
        if let lastSweep = table.lastSweep, now.microseconds &- lastSweep < Timestamp.microsecondsPerHour { return }
        table.lastSweep = now.microseconds
        let entries = table.entries
        let mask = self.mask
        // Start at an empty slot, so no run of entries wraps past the start of the sweep.
        guard let start = (0...mask).first(where: { entries[$0].isEmpty }) else { return }
        table.changing = true
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
        table.oldest = newOldest
        table.changing = false
        // Keys left the window: a table made ahead for a growth that is now far off would hold
        // twice this table's memory and disk for nothing.
        if count < (mask + 1) / 2 { successor.discard() }
    }

    /// Removes the entry at `slot`, shifting back the entries after it that probed past it.
    private func delete(_ slot: Int) {
        let entries = table.entries
        let mask = self.mask
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
        table.count -= 1
    }
}
