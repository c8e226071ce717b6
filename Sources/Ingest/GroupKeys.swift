import EventStore
import Wire

/// The idempotency keys a commit group adds, by digest, in the order they were placed: what a
/// later event of the same group is checked against, and what the index remembers once the group
/// is durable. The digests are hashes already, so their low bits pick the slot (linear probing):
/// no second hash per key, as a `Dictionary` would compute.
struct GroupKeys {
    /// Each key once, in the order first placed, with its latest position.
    private(set) var entries: [(digest: PayloadDigest, position: IdempotencyIndex.Position)] = []
    /// Per slot, the entry's index + 1, or 0 for an empty slot.
    private var slots: [Int32]

    init(capacity: Int = 0) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        entries.reserveCapacity(capacity)
    }

    subscript(digest: PayloadDigest) -> IdempotencyIndex.Position? {
        guard let entry = find(digest).entry else { return nil }
        return entries[entry].position
    }

    /// Records `digest` at `position` (replacing the position of a key already there).
    mutating func set(_ digest: PayloadDigest, _ position: IdempotencyIndex.Position) {
        let (slot, entry) = find(digest)
        if let entry {
            entries[entry].position = position
            return
        }
        entries.append((digest, position))
        slots[slot] = Int32(entries.count)
        if entries.count * 2 > slots.count { grow() }
    }

    /// The slot holding `digest`, or the empty one where it would go.
    private func find(_ digest: PayloadDigest) -> (slot: Int, entry: Int?) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: digest.low) & mask
        while slots[slot] != 0 {
            let entry = Int(slots[slot]) - 1
            if entries[entry].digest == digest { return (slot, entry) }
            slot = (slot + 1) & mask
        }
        return (slot, nil)
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        let mask = slots.count - 1
        for (index, entry) in entries.enumerated() {
            var slot = Int(truncatingIfNeeded: entry.digest.low) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(index + 1)
        }
    }
}
