public import CPrefetch

/// A dictionary whose entries sit in two dense arrays (keys, values; a position is an `Int`)
/// found through a table of slots with open addressing, so that the memory a lookup will read can
/// be asked for ahead of it (`prefetchSlot`, `prefetchEntry`).
///
/// Why not `Dictionary`: folding a usage event reaches one subscription out of hundreds of
/// thousands, whose bucket, key and figures are not in any cache, and the fold waits for each in
/// turn (a profile of a catch-up over 100,000 subscriptions had 88% of the dictionary lookup's
/// samples on the load of the key and 82% of the meter lookup's on the meters). A dictionary gives
/// no way to know where a key's bucket is before looking it up; this table does, so a fold can
/// ask for the records ahead's memory while it works on the current one.
///
/// A slot holds the entry's position + 1 (0: empty) in its low 32 bits and the low 32 bits of its
/// key's hash in the high ones: a probe compares keys only when those agree, and a removal finds
/// where each following slot belongs without hashing its key again (linear probing, backward-shift
/// removal, no tombstones). The slots are at most half full. Removing an entry moves the last one
/// into its position. Keys are hashed with `Hasher` (seeded per process), as a dictionary's are.
///
/// The type is public and its members package: Swift 6.3 does not specialize the inlinable
/// members of a `package` type in another module, so the read model (QueryModel) called every
/// lookup unspecialized, looking up generic metadata at run time (meter-query's catch-up spends
/// less CPU per record specialized; docs/BENCHMARKS.md). `Boxed` is public for the same reason; a test
/// (`SharedGenericTypesTests`) fails on any generic `package` type with inlinable members.
public struct DenseTable<Key: Hashable, Value> {
    @usableFromInline var slots: [UInt64] = []
    @usableFromInline var storedKeys: [Key] = []
    @usableFromInline var storedValues: [Value] = []

    @inlinable package init() {}

    /// The number of entries.
    @inlinable package var count: Int { storedKeys.count }
    @inlinable package var isEmpty: Bool { storedKeys.isEmpty }

    /// The keys by position.
    @inlinable package var keys: [Key] { storedKeys }

    /// The values by position, to read or change in place. Changing how many there are is not
    /// allowed (use `subscript(key)`, `insert` and `remove(at:)`).
    @inlinable package var values: [Value] {
        _read { yield storedValues }
        _modify {
            let count = storedValues.count
            yield &storedValues
            precondition(storedValues.count == count, "DenseTable.values changed its count")
        }
    }

    /// The hash a lookup of `key` starts from (for `prefetchSlot` and `prefetchEntry`).
    @inlinable package static func hash(_ key: Key) -> Int {
        var hasher = Hasher()
        hasher.combine(key)
        return hasher.finalize()
    }

    @inlinable static func tag(_ hash: Int) -> UInt64 { UInt64(truncatingIfNeeded: hash) & 0xFFFF_FFFF }

    /// The position of `key`, or nil.
    @inlinable package func index(forKey key: Key) -> Int? {
        index(forKey: key, hash: Self.hash(key))
    }

    /// The position of `key`, whose hash is `hash`, or nil.
    @inlinable package func index(forKey key: Key, hash: Int) -> Int? {
        probe(hash: hash) { storedKeys[$0] == key }
    }

    /// The position of `key`, or nil, looked up first from `hint` (when given), a hash `key`
    /// probably has (a record's `BillingRecord.nameHash`): a wrong hint costs a probe, and the key
    /// is then hashed and looked up again.
    @inlinable package func index(forKey key: Key, hint: Int?) -> Int? {
        if let hint, let found = index(forKey: key, hash: hint) { return found }
        return index(forKey: key)
    }

    /// The position of the first entry, from `hash`'s own slot on, whose slot has `hash`'s tag and
    /// that `matches`; nil at the first empty slot.
    @inlinable func probe(hash: Int, _ matches: (Int) -> Bool) -> Int? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        let tag = Self.tag(hash)
        var slot = hash & mask
        while true {
            let entry = slots[slot]
            if entry == 0 { return nil }
            if entry >> 32 == tag {
                let position = Int(truncatingIfNeeded: entry & 0xFFFF_FFFF) - 1
                if matches(position) { return position }
            }
            slot = (slot + 1) & mask
        }
    }

    /// The value of `key`; setting nil removes the entry.
    @inlinable package subscript(key: Key) -> Value? {
        get { index(forKey: key).map { storedValues[$0] } }
        set {
            let hash = Self.hash(key)
            if let position = index(forKey: key, hash: hash) {
                if let newValue {
                    storedValues[position] = newValue
                } else {
                    remove(at: position)
                }
            } else if let newValue {
                append(key, newValue, hash: hash)
            }
        }
    }

    /// The value of `key`, or `defaultValue` (added first when the value is changed in place).
    @inlinable package subscript(key: Key, default defaultValue: @autoclosure () -> Value) -> Value {
        get { index(forKey: key).map { storedValues[$0] } ?? defaultValue() }
        _modify { yield &storedValues[position(of: key, hint: nil, orAdding: defaultValue)] }
    }

    /// `subscript(key:default:)` looked up first from `hint`, a hash `key` probably has (the one a
    /// record carries, `BillingRecord.nameHash`), which saves hashing the key: a lookup that finds
    /// nothing from the hint is made again from the key's own hash, so a wrong hint costs a probe
    /// and nothing else (a key is found only where it is).
    @inlinable package subscript(key: Key, hint hint: Int?, default defaultValue: @autoclosure () -> Value) -> Value {
        get { index(forKey: key).map { storedValues[$0] } ?? defaultValue() }
        _modify { yield &storedValues[position(of: key, hint: hint, orAdding: defaultValue)] }
    }

    /// The position of `key` (looked up from `hint` first, when given), `value()` added under it
    /// first when it is not there.
    @inlinable package mutating func position(of key: Key, hint: Int?, orAdding value: () -> Value) -> Int {
        if let hint, let found = index(forKey: key, hash: hint) { return found }
        // The key's own hash, kept for adding it when it is not there.
        let hash = Self.hash(key)
        if let found = index(forKey: key, hash: hash) { return found }
        append(key, value(), hash: hash)
        return storedKeys.count - 1
    }

    /// Removes `key` and returns its value; nil when it was not there.
    @discardableResult
    @inlinable package mutating func removeValue(forKey key: Key) -> Value? {
        index(forKey: key).map { remove(at: $0).value }
    }

    /// Adds `key`, which is not in the table, with `value`; its position is the last.
    @inlinable mutating func append(_ key: Key, _ value: Value, hash: Int) {
        precondition(storedKeys.count < Int(UInt32.max - 1), "DenseTable is full")
        if (storedKeys.count + 1) * 2 > slots.count { resizeSlots(toHold: storedKeys.count + 1) }
        storedKeys.append(key)
        storedValues.append(value)
        place(position: storedKeys.count - 1, hash: hash)
    }

    /// Writes a slot for the entry at `position` (hash `hash`) in the first free slot from its own.
    @inlinable mutating func place(position: Int, hash: Int) {
        let mask = slots.count - 1
        var slot = hash & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = Self.tag(hash) << 32 | UInt64(position + 1)
    }

    /// Makes room for `count` entries without growing the slots again.
    @inlinable package mutating func reserveCapacity(_ count: Int) {
        storedKeys.reserveCapacity(count)
        storedValues.reserveCapacity(count)
        if count * 2 > slots.count { resizeSlots(toHold: count) }
    }

    /// New slots, at least twice `count` (a power of two), every entry placed again.
    @usableFromInline mutating func resizeSlots(toHold count: Int) {
        var size = Swift.max(8, slots.count)
        while size < count * 2 { size *= 2 }
        slots = [UInt64](repeating: 0, count: size)
        for position in storedKeys.indices { place(position: position, hash: Self.hash(storedKeys[position])) }
    }

    /// Removes the entry at `position` and returns it; the last entry takes its position.
    @discardableResult
    @inlinable package mutating func remove(at position: Int) -> (key: Key, value: Value) {
        let last = storedKeys.count - 1
        clearSlot(of: position)
        if position != last {
            // The last entry's slot now points at `position`.
            let slot = slotIndex(of: last)
            slots[slot] = slots[slot] & 0xFFFF_FFFF_0000_0000 | UInt64(position + 1)
            storedKeys.swapAt(position, last)
            storedValues.swapAt(position, last)
        }
        return (storedKeys.removeLast(), storedValues.removeLast())
    }

    /// The slot that holds the entry at `position`.
    @inlinable func slotIndex(of position: Int) -> Int {
        let mask = slots.count - 1
        let wanted = UInt64(position + 1)
        var slot = Self.hash(storedKeys[position]) & mask
        while slots[slot] & 0xFFFF_FFFF != wanted { slot = (slot + 1) & mask }
        return slot
    }

    /// Empties the slot of the entry at `position`, moving back the slots after it that would no
    /// longer be found from their own (backward-shift removal).
    @inlinable mutating func clearSlot(of position: Int) {
        let mask = slots.count - 1
        var hole = slotIndex(of: position)
        var next = hole
        while true {
            next = (next + 1) & mask
            let entry = slots[next]
            if entry == 0 { break }
            let home = Int(truncatingIfNeeded: entry >> 32) & mask
            // The entry at `next` stays when its home is cyclically in (hole, next].
            let stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if !stays {
                slots[hole] = entry
                hole = next
            }
        }
        slots[hole] = 0
    }

    // MARK: - Reading ahead

    /// Asks the CPU for the slot a lookup of a key with hash `hash` reads first.
    @inlinable package func prefetchSlot(hash: Int) {
        guard !slots.isEmpty else { return }
        slots.withUnsafeBufferPointer { cprefetch_read($0.baseAddress! + (hash & ($0.count - 1))) }
    }

    /// The position of the first entry whose slot has `hash`'s tag, reading only slots (asked for
    /// earlier by `prefetchSlot`); nil when none has it. The key is not compared: the position is
    /// a guess, right whenever the key is in the table.
    @inlinable package func guessPosition(hash: Int) -> Int? {
        probe(hash: hash) { _ in true }
    }

    /// Asks the CPU for the key and value at the position `guessPosition(hash:)` finds, and
    /// returns that position.
    @discardableResult
    @inlinable package func prefetchEntry(hash: Int) -> Int? {
        guard let position = guessPosition(hash: hash) else { return nil }
        storedKeys.withUnsafeBufferPointer { cprefetch_read($0.baseAddress! + position) }
        storedValues.withUnsafeBufferPointer { values in
            let start = UnsafeRawPointer(values.baseAddress! + position)
            // Every line the value spans (it may start anywhere in a line).
            for offset in stride(from: 0, to: MemoryLayout<Value>.stride, by: 64) { cprefetch_read(start + offset) }
            cprefetch_read(start + (MemoryLayout<Value>.stride - 1))
        }
        return position
    }

    /// Step `step` of reading ahead for the key whose hash is `hash`, each a record (or a visit)
    /// after the one before: 0 asks for its slot; 1 (the slot has arrived) for its key and value;
    /// 2 (the value has arrived) calls `contents` with the value in place, to ask for what it holds.
    @inlinable package func prefetch(hash: Int, step: Int, contents: (UnsafeRawPointer) -> Void) {
        switch step {
        case 0: prefetchSlot(hash: hash)
        case 1: prefetchEntry(hash: hash)
        default:
            guard let position = guessPosition(hash: hash) else { return }
            withValue(at: position) { contents(UnsafeRawPointer($0)) }
        }
    }

    /// Calls `body` with the value at `position` in place (for reading the addresses of what it
    /// holds, to ask for them ahead); nothing when `position` is out of range.
    @inlinable package func withValue(at position: Int, _ body: (UnsafePointer<Value>) -> Void) {
        storedValues.withUnsafeBufferPointer { values in
            guard position >= 0, position < values.count else { return }
            body(values.baseAddress! + position)
        }
    }
}

extension DenseTable: Sequence {
    public struct Iterator: IteratorProtocol {
        @usableFromInline let table: DenseTable
        @usableFromInline var position = 0

        @inlinable init(table: DenseTable) { self.table = table }

        @inlinable public mutating func next() -> (key: Key, value: Value)? {
            guard position < table.storedKeys.count else { return nil }
            defer { position += 1 }
            return (table.storedKeys[position], table.storedValues[position])
        }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(table: self) }
    @inlinable public var underestimatedCount: Int { count }
}

/// Equal when they hold the same keys with equal values, in any order.
extension DenseTable: Equatable where Value: Equatable {
    @inlinable public static func == (lhs: DenseTable, rhs: DenseTable) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for position in lhs.storedKeys.indices {
            guard let other = rhs.index(forKey: lhs.storedKeys[position]), rhs.storedValues[other] == lhs.storedValues[position] else {
                return false
            }
        }
        return true
    }
}

extension DenseTable: Sendable where Key: Sendable, Value: Sendable {}

/// Asks the CPU for the first `bytes` bytes of the elements of the array stored at `address` (a
/// hint; it never faults), without retaining the array: retaining it would write its header, and
/// so wait for the memory that is being asked for. An array is one reference to a heap object
/// whose elements start 32 bytes in (its header, count and capacity before them).
@inlinable package func prefetchArray(at address: UnsafeRawPointer, bytes: Int) {
    prefetchLines(address.load(as: UnsafeRawPointer.self), bytes: 32 + bytes)
}

/// Asks the CPU for every cache line of the `bytes` bytes from `start` (a hint; it never faults).
@inlinable package func prefetchLines(_ start: UnsafeRawPointer, bytes: Int) {
    for offset in stride(from: 0, to: bytes, by: 64) { cprefetch_read(start + offset) }
    cprefetch_read(start + (bytes - 1))
}

/// Calls `body` with the address of the first element of the array stored at `address` and its
/// count (at most `limit`), without retaining the array: for reading ahead what its elements hold,
/// once `prefetchArray` has had the elements arrive. The count is the header's third word.
@inlinable package func withArrayElements(at address: UnsafeRawPointer, upTo limit: Int, _ body: (UnsafeRawPointer, Int) -> Void) {
    let object = address.load(as: UnsafeRawPointer.self)
    body(object + 32, min(max(0, object.load(fromByteOffset: 16, as: Int.self)), limit))
}
