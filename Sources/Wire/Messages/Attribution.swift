/// How usage is attributed to hours and billing periods (docs/BILLING.md, "Late usage").
///
/// - `enqueued` (the default, the reference's rule): ingest's enqueued time decides; an hour closes
///   when the partition clock reaches its end.
/// - `event`: the usage's own `timestamp` decides while its hour is open; an hour closes only at
///   its end plus the late grace, and usage for an hour already closed goes to the oldest open hour.
///
/// Ingest runs with one of them and writes it into every tick it appends (`Ping.attribution`), so
/// the folds take it from the log: a replay, the aggregator and the query service decide alike.
public enum Attribution: Hashable, Sendable, CustomStringConvertible {
    case enqueued
    /// Event-time attribution with a grace, in microseconds (0 to `maximumLateGrace`).
    case event(lateGrace: Int64)

    /// The longest grace accepted: six hours leave the marketplace's 24-hour window room for an
    /// outage of the submitter after the hour closes.
    public static let maximumLateGrace: Int64 = 6 * Timestamp.microsecondsPerHour
    /// How far a usage's `timestamp` may be ahead of ingest's clock under event-time attribution
    /// (clocks of senders drift); beyond it ingest refuses the usage.
    public static let maximumClockSkew: Int64 = 300_000_000

    /// The grace after an hour's end before it closes (0 under `enqueued`).
    public var lateGrace: Int64 {
        switch self {
        case .enqueued: return 0
        case .event(let grace): return grace
        }
    }

    /// The oldest hour still open at `now`: hour H is open while `now < H + 1 h + grace`.
    public func oldestOpenHour(at now: Timestamp) -> Timestamp {
        now.adding(microseconds: -lateGrace).hourStart
    }

    /// When the hour starting at `hour` closes.
    public func closing(ofHour hour: Timestamp) -> Timestamp {
        hour.adding(microseconds: Timestamp.microsecondsPerHour + lateGrace)
    }

    /// Where usage with the sender's time `timestamp`, enqueued at `now`, belongs: the time that
    /// decides its billing period and the hour its overage goes to, and whether it came late (its
    /// own hour had closed, so it went to the oldest open hour). A timestamp ahead of the log's
    /// clock counts at the clock.
    public func place(timestamp: Timestamp, enqueued now: Timestamp) -> (time: Timestamp, late: Bool) {
        guard case .event = self else { return (now, false) }
        let own = min(timestamp, now)
        let oldest = oldestOpenHour(at: now)
        return own < oldest ? (oldest, true) : (own, false)
    }

    /// `enqueued`, or `event` with its grace.
    public var description: String {
        switch self {
        case .enqueued: return "enqueued"
        case .event(let grace): return "event (late grace \(grace / 1_000_000) s)"
        }
    }

    /// The members a tick carries: `"attribution"` and, for `event`, `"lateGraceSeconds"`.
    public var tickMembers: [JSONObject.Member] {
        switch self {
        case .enqueued: return [.init("attribution", "enqueued")]
        case .event(let grace):
            return [.init("attribution", "event"), .init("lateGraceSeconds", .number(String(grace / 1_000_000)))]
        }
    }

    /// Reads a duration such as `7200`, `7200s`, `90m` or `2h` (whole seconds, minutes or hours),
    /// for `METERING_LATE_GRACE`; nil when it is not one.
    public static func parseDuration(_ text: String) -> Int64? {
        var digits = Substring(text)
        var unit: Int64 = 1_000_000
        switch text.last {
        case "s"?: digits = digits.dropLast()
        case "m"?:
            digits = digits.dropLast()
            unit = 60_000_000
        case "h"?:
            digits = digits.dropLast()
            unit = Timestamp.microsecondsPerHour
        default: break
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let value = Int64(digits), value >= 0, value <= 1_000_000 else {
            return nil
        }
        return value * unit
    }
}
