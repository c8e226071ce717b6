public import Billing

/// The records of one `follow` answer, in log order, handed from the follower to a fold that takes
/// each one out in turn (`takeEach`): moved, not copied, so passing a record on retains none of its
/// strings, and no record is moved twice. An array could only be emptied from its end, which took
/// reversing it first: about 560 instructions a record under callgrind, 7.6% of meter-aggregator's
/// catch-up.
public final class RecordBatch: @unchecked Sendable {
    // One owner at a time: filled by the thread that reads an answer, then handed to the fold.
    private var base: UnsafeMutablePointer<BillingRecord>
    private var capacity: Int
    /// The records not taken yet are those from `start` to `end`.
    private var start = 0
    private var end = 0

    /// An empty batch with room for `capacity` records (it grows past them when needed).
    public init(capacity: Int = 16) {
        self.capacity = max(1, capacity)
        base = .allocate(capacity: self.capacity)
    }

    /// A batch of `records`, in their order.
    public convenience init(_ records: [BillingRecord]) {
        self.init(capacity: records.count)
        for record in records { append(record) }
    }

    deinit {
        (base + start).deinitialize(count: end - start)
        base.deallocate()
    }

    /// Records not taken yet.
    public var count: Int { end - start }
    public var isEmpty: Bool { start == end }

    /// Adds `record` after the others.
    public func append(_ record: consuming BillingRecord) {
        if end == capacity { grow() }
        (base + end).initialize(to: record)
        end += 1
    }

    private func grow() {
        let larger = capacity * 2
        let moved = UnsafeMutablePointer<BillingRecord>.allocate(capacity: larger)
        moved.moveInitialize(from: base + start, count: end - start)
        base.deallocate()
        base = moved
        end -= start
        start = 0
        capacity = larger
    }

    /// The records not taken yet, to read in place.
    public func withRecords<Result>(_ body: (UnsafeBufferPointer<BillingRecord>) throws -> Result) rethrows -> Result {
        try body(UnsafeBufferPointer(start: base + start, count: end - start))
    }

    /// Drops the first `count` records (at most all of them).
    public func dropFirst(_ count: Int) {
        let dropped = min(max(0, count), end - start)
        (base + start).deinitialize(count: dropped)
        start += dropped
    }

    /// Hands every record to `body` in order, each taken out of the batch first, which is left
    /// empty. Should `body` throw, the records after the one it threw on stay in the batch.
    public func takeEach(_ body: (BillingRecord) throws -> Void) rethrows {
        while start < end {
            let record = (base + start).move()
            start += 1
            try body(record)
        }
    }

    /// `takeEach`, and before handing each record to `body`, `ahead` for each of the `steps`
    /// records after it, in place: step `k` for the record `steps - k` places ahead (step 0 for
    /// the farthest). A record thus gets every step, in order, one record apart: for a fold to ask
    /// for the memory of the records it folds next (`PartitionState.prefetch`).
    public func takeEach(
        readingAhead steps: Int, _ ahead: (UnsafePointer<BillingRecord>, Int) -> Void, _ body: (BillingRecord) throws -> Void
    ) rethrows {
        // The first records get the steps they would have had, in the same order.
        for step in 0..<steps {
            for offset in 0..<(steps - step) where start + offset < end { ahead(UnsafePointer(base + start + offset), step) }
        }
        while start < end {
            for step in 0..<steps where start + steps - step < end { ahead(UnsafePointer(base + start + steps - step), step) }
            let record = (base + start).move()
            start += 1
            try body(record)
        }
    }

    /// Copies of the records not taken yet (for tests).
    public var records: [BillingRecord] { withRecords { Array($0) } }
}
