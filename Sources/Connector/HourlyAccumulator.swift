import Wire

/// One source's sums per (meter, subscription, hour) that are not emitted yet, and the line
/// between emitted and open hours.
///
/// Pure and deterministic: the same records folded from the same state give the same buckets,
/// which is what makes re-emission after a crash safe (the same idempotency keys, the same sums).
struct HourlyAccumulator: Sendable, Equatable {
    /// A bucket's identity; sorted by hour first, the order in which buckets are emitted.
    struct Key: Sendable, Hashable, Comparable {
        var hour: Timestamp
        var meter: String
        var subscription: String

        static func < (lhs: Key, rhs: Key) -> Bool {
            (lhs.hour, lhs.meter, lhs.subscription) < (rhs.hour, rhs.meter, rhs.subscription)
        }
    }

    /// What is counted in one bucket so far.
    struct Bucket: Sendable, Equatable {
        /// The unscaled count or sum.
        var total: Quantity
        var records: Int
        /// How many of `records` belong to an earlier hour that had already been emitted.
        var late: Int
    }

    var open: [Key: Bucket] = [:]
    /// Every hour before this one has been emitted (nil: none yet). Records for those hours are late.
    var emittedBefore: Timestamp?
    /// The newest record time counted since start-up (not persisted): while a backlog is read,
    /// hours close by it rather than by the clock, so an old log read in order is not all late.
    var newestTime: Timestamp?

    /// Where a record went.
    enum Added: Equatable {
        /// Into its own hour.
        case onTime
        /// Its hour was already emitted: into the oldest open hour, the next to be emitted.
        case late(into: Timestamp)
        /// The bucket's total would leave `Quantity`'s range: not counted.
        case overflow
    }

    /// Counts `amount` for `subscription` in the hour of `time`, or in the oldest open hour when
    /// that hour has been emitted already (so a late record is neither lost nor counted into an
    /// emitted event).
    mutating func add(meter: String, subscription: String, time: Timestamp, amount: Quantity) -> Added {
        let hour = time.hourStart
        var target = hour
        var late = false
        if let emittedBefore, hour < emittedBefore {
            target = emittedBefore
            late = true
        }
        let key = Key(hour: target, meter: meter, subscription: subscription)
        var bucket = open[key] ?? Bucket(total: .zero, records: 0, late: 0)
        let (sum, overflow) = bucket.total.units.addingReportingOverflow(amount.units)
        guard !overflow else { return .overflow }
        bucket.total = Quantity(units: sum)
        bucket.records += 1
        if newestTime.map({ time > $0 }) ?? true { newestTime = time }
        if late { bucket.late += 1 }
        open[key] = bucket
        return late ? .late(into: target) : .onTime
    }

    /// The first hour still open at `now` with `graceSeconds` of grace: hour H is emitted once
    /// `now ≥ H + 1 h + grace`, the rule by which billing closes hours under event-time attribution.
    static func boundary(now: Timestamp, graceSeconds: Int) -> Timestamp {
        Attribution.event(lateGrace: Int64(graceSeconds) * 1_000_000).oldestOpenHour(at: now)
    }

    /// The grace the connector waits after an hour: its own (`configured`), but when ingest
    /// attributes usage by its timestamp, at most half of ingest's grace, so an hour's event
    /// reaches ingest while billing still holds that hour open (with time left for retries) and
    /// is billed in it, and in its billing period.
    static func effectiveGrace(configured: Int, ingest: Attribution?) -> Int {
        guard case .event(let grace)? = ingest else { return configured }
        return min(configured, Int(grace / 2_000_000))
    }

    /// Takes out every bucket of an hour before `boundary`, oldest first, and marks those hours
    /// emitted. A boundary behind the current one (a clock that stepped back) closes nothing.
    mutating func close(before boundary: Timestamp) -> [(key: Key, bucket: Bucket)] {
        if let emittedBefore, boundary <= emittedBefore { return [] }
        emittedBefore = boundary
        let closing = open.keys.filter { $0.hour < boundary }.sorted()
        return closing.map { key in (key, open.removeValue(forKey: key)!) }
    }

    /// Records counted into hours not emitted yet.
    var openRecords: Int { open.values.reduce(0) { $0 + $1.records } }

    /// The oldest hour with something counted, if any.
    var oldestOpenHour: Timestamp? { open.keys.map(\.hour).min() }
}
