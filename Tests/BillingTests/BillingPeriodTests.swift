import Billing
import Testing
import Wire

@Suite("Billing periods")
struct BillingPeriodTests {
    static func time(_ text: String) -> Timestamp { Timestamp(iso8601: text)! }

    @Test("bought on January 31st monthly, periods start on the last day of short months and return to the 31st")
    func monthEndClamping() {
        let start = Self.time("2024-01-31T15:20:00Z")
        let starts = (0..<6).map { BillingPeriod(index: $0, subscriptionStart: start, interval: .monthly).start.iso8601 }
        #expect(
            starts == [
                "2024-01-31T00:00:00Z", "2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z", "2024-04-30T00:00:00Z",
                "2024-05-31T00:00:00Z", "2024-06-30T00:00:00Z",
            ])
        let february2025 = BillingPeriod(index: 12, subscriptionStart: start, interval: .monthly)
        #expect(february2025.start.iso8601 == "2025-01-31T00:00:00Z")
        #expect(february2025.end.iso8601 == "2025-02-28T00:00:00Z")
    }

    @Test("bought on February 29th annually, renewals fall on February 28th until the next leap year")
    func leapDayAnnual() {
        let start = Self.time("2024-02-29T08:00:00Z")
        let starts = (0..<5).map { BillingPeriod(index: $0, subscriptionStart: start, interval: .annually).start.iso8601 }
        #expect(
            starts == [
                "2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z", "2026-02-28T00:00:00Z", "2027-02-28T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ])
    }

    @Test("the period containing a time is found, including the last microsecond and times before the start")
    func containing() {
        let start = Self.time("2024-01-31T00:00:00Z")
        let period = BillingPeriod(containing: Self.time("2024-02-28T23:59:59.999999Z"), subscriptionStart: start, interval: .monthly)
        #expect(period.index == 0)
        let next = BillingPeriod(containing: Self.time("2024-02-29T00:00:00Z"), subscriptionStart: start, interval: .monthly)
        #expect(next.index == 1)
        let early = BillingPeriod(containing: Self.time("2023-12-01T00:00:00Z"), subscriptionStart: start, interval: .monthly)
        #expect(early.index == 0)
        let later = BillingPeriod(containing: Self.time("2030-07-15T00:00:00Z"), subscriptionStart: start, interval: .twoYears)
        #expect(later.contains(Self.time("2030-07-15T00:00:00Z")))
        #expect(later.start.iso8601 == "2030-01-31T00:00:00Z")
    }

    @Test("the reference's example: bought on June 20th, the month runs to July 19th")
    func anniversary() {
        let period = BillingPeriod(index: 0, subscriptionStart: Self.time("2022-06-20T10:00:00Z"), interval: .monthly)
        #expect(period.end.iso8601 == "2022-07-20T00:00:00Z")
    }
}
