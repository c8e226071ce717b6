public import Wire

/// Remembers idempotency keys and where their first record landed, for a retention window of
/// log time (7 days by default), so a retried message is answered `duplicate` and never counted twice.
///
/// Keys are global to the log. Expiry follows the log's newest enqueued time, never the wall
/// clock, so a log replayed or moved keeps the same answers.
public struct IdempotencyIndex: Sendable {
    public struct Position: Hashable, Sendable {
        public var partition: Int
        public var sequence: UInt64
        public var enqueuedTime: Timestamp

        public init(partition: Int, sequence: UInt64, enqueuedTime: Timestamp) {
            self.partition = partition
            self.sequence = sequence
            self.enqueuedTime = enqueuedTime
        }
    }

    public let retentionMicroseconds: Int64
    private var positions: [String: Position] = [:]
    private var byAge: [(key: String, time: Timestamp)] = []
    private var ageStart = 0

    public init(retentionDays: Int = 7) {
        self.retentionMicroseconds = Int64(retentionDays) * Timestamp.microsecondsPerDay
    }

    public var count: Int { positions.count }

    /// Where `key` was first recorded, if it is remembered.
    public func lookup(_ key: String) -> Position? { positions[key] }

    /// Records `key` at `position` unless it is known already.
    public mutating func remember(_ key: String, at position: Position) {
        guard positions[key] == nil else { return }
        positions[key] = position
        byAge.append((key, position.enqueuedTime))
    }

    /// Forgets keys recorded before `now - retention`. Records arrive in nearly time order across
    /// partitions, so the age queue is scanned from its oldest end.
    public mutating func expire(now: Timestamp) {
        let horizon = now.microseconds - retentionMicroseconds
        while ageStart < byAge.count && byAge[ageStart].time.microseconds < horizon {
            let entry = byAge[ageStart]
            if positions[entry.key]?.enqueuedTime == entry.time { positions[entry.key] = nil }
            ageStart += 1
        }
        if ageStart > 4096 && ageStart > byAge.count / 2 {
            byAge.removeFirst(ageStart)
            ageStart = 0
        }
    }
}
