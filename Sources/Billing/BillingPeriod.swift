public import Wire

/// A billing period of a subscription: `[start, end)`, both at midnight UTC (DESIGN.md §4.2).
///
/// Period k runs from midnight UTC of (start date + k·interval) to midnight UTC of
/// (start date + (k+1)·interval), always counted from the *original* start date, with the day
/// clamped to the month's length: bought on 2024-01-31 monthly, periods start on 01-31, 02-29,
/// 03-31, 04-30, ... (never drifting to the 29th or 30th for good).
public struct BillingPeriod: Hashable, Sendable, CustomStringConvertible {
    /// The period's number, 0 for the first.
    public var index: Int
    public var start: Timestamp
    public var end: Timestamp

    /// Period `index` of a subscription that started at `subscriptionStart` and renews every `interval`.
    public init(index: Int, subscriptionStart: Timestamp, interval: RenewalInterval) {
        self.index = index
        self.start = Self.boundary(subscriptionStart, months: index * interval.months)
        self.end = Self.boundary(subscriptionStart, months: (index + 1) * interval.months)
    }

    /// The period containing `time`. Times before the subscription's start count against period 0
    /// (usage may be enqueued before a future `subscriptionStart`).
    public init(containing time: Timestamp, subscriptionStart: Timestamp, interval: RenewalInterval) {
        let (startYear, startMonth, _) = subscriptionStart.date
        let (year, month, _) = time.date
        let monthsApart = (year - startYear) * 12 + (month - startMonth)
        var index = max(0, monthsApart / interval.months)
        var period = BillingPeriod(index: index, subscriptionStart: subscriptionStart, interval: interval)
        while index > 0 && time < period.start {
            index -= 1
            period = BillingPeriod(index: index, subscriptionStart: subscriptionStart, interval: interval)
        }
        while time >= period.end {
            index += 1
            period = BillingPeriod(index: index, subscriptionStart: subscriptionStart, interval: interval)
        }
        self = period
    }

    /// Whether `time` falls inside this period.
    public func contains(_ time: Timestamp) -> Bool { time >= start && time < end }

    /// Midnight UTC of the start date moved by `months`, with the day clamped to the month's length.
    static func boundary(_ subscriptionStart: Timestamp, months: Int) -> Timestamp {
        let (year, month, day) = subscriptionStart.date
        let total = year * 12 + (month - 1) + months
        let targetYear = total / 12
        let targetMonth = total % 12 + 1
        let targetDay = min(day, Timestamp.daysInMonth(year: targetYear, month: targetMonth))
        return Timestamp(year: targetYear, month: targetMonth, day: targetDay)
    }

    public var description: String { "period \(index) [\(start.iso8601), \(end.iso8601))" }
}
