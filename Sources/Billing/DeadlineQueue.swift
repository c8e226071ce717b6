import Wire

/// The subscriptions' next renewal deadlines, earliest first: a binary min-heap, so advancing the
/// partition clock touches only the subscriptions whose period has ended instead of scanning all.
///
/// Entries are never updated in place: a subscription whose period changed (renewal, new purchase)
/// gets a new entry, and the consumer skips entries that no longer match the subscription. The heap
/// is an index derived from the subscriptions, rebuilt on restore and left out of the state's `==`
/// (its array layout depends on insertion history, the meaning does not).
struct DeadlineQueue: Sendable {
    struct Entry: Sendable {
        var deadline: Timestamp
        var key: String

        /// Deadline first; the key only makes the order total.
        func precedes(_ other: Entry) -> Bool {
            deadline != other.deadline ? deadline < other.deadline : key < other.key
        }
    }

    private var heap: [Entry] = []

    var count: Int { heap.count }

    /// The earliest entry.
    var first: Entry? { heap.first }

    mutating func push(_ deadline: Timestamp, _ key: String) {
        heap.append(Entry(deadline: deadline, key: key))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    @discardableResult
    mutating func removeFirst() -> Entry? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let first = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].precedes(heap[smallest]) { smallest = left }
            if right < heap.count && heap[right].precedes(heap[smallest]) { smallest = right }
            if smallest == parent { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }
}
