import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Billing periods renew the included quantities")
struct PeriodRenewalTests {
    static let plan: JSONValue = ["m": Messages.simple("dim", included: 10)]

    /// In every period: 10 (all included) early, then 1 more in its last hour. Each period must
    /// give exactly one item of 1 for its last hour: the included quantity was refilled exactly at
    /// each boundary, never earlier and never later.
    func checkRenewals(start: String, interval: RenewalInterval, periods: Int) {
        var fold = Fold()
        let startTime = at(start)
        fold.apply(Messages.purchase("s", start: start, interval: interval.rawValue, dimensions: Self.plan), at: startTime)
        var expected: [String] = []
        for index in 0..<periods {
            let period = BillingPeriod(index: index, subscriptionStart: startTime, interval: interval)
            let early = index == 0 ? startTime : period.start.adding(microseconds: Timestamp.microsecondsPerHour)
            fold.apply(Messages.usage("s", "m", "10"), at: early)
            let json = fold.state.subscriptionJSON(ResourceName(resourceId: "s"))
            #expect(json?["period"]?["start"] == .string(period.start.iso8601), "period \(index)")
            #expect(json?["period"]?["end"] == .string(period.end.iso8601), "period \(index)")
            fold.apply(Messages.usage("s", "m", "1"), at: period.end.adding(microseconds: -60_000_000))
            expected.append("dim@\(hourText(period.end.adding(microseconds: -Timestamp.microsecondsPerHour)))=1")
        }
        fold.ping(at: BillingPeriod(index: periods, subscriptionStart: startTime, interval: interval).start)
        #expect(fold.pendingSummary == expected)
    }

    @Test("bought on January 31st monthly, included quantities refill on the 31st or the month's last day for years")
    func januaryThirtyFirstMonthly() {
        checkRenewals(start: "2024-01-31T10:00:00Z", interval: .monthly, periods: 40)
        let start = at("2024-01-31T10:00:00Z")
        #expect(BillingPeriod(index: 1, subscriptionStart: start, interval: .monthly).start == at("2024-02-29T00:00:00Z"))
        #expect(BillingPeriod(index: 13, subscriptionStart: start, interval: .monthly).start == at("2025-02-28T00:00:00Z"))
    }

    @Test("bought on February 29th annually, included quantities refill on February 28th and on the 29th in leap years")
    func leapDayAnnually() {
        checkRenewals(start: "2024-02-29T23:30:00Z", interval: .annually, periods: 9)
    }

    @Test("two- and three-year terms renew on their anniversaries")
    func multiYear() {
        checkRenewals(start: "2023-08-31T00:00:00Z", interval: .twoYears, periods: 4)
        checkRenewals(start: "2023-05-15T12:00:00Z", interval: .threeYears, periods: 3)
    }

    @Test("when the subscription's own usage is the first record after the boundary, the included quantity is refilled first")
    func renewalByOwnUsage() {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-03-10T08:00:00Z", dimensions: Self.plan), at: "2024-03-10T08:00:00Z")
        fold.apply(Messages.usage("s", "m", "10"), at: "2024-03-15T12:00:00Z")
        fold.apply(Messages.usage("s", "m", "10"), at: "2024-04-10T05:10:00Z")
        #expect(fold.meter("s", "m")?["consumed"] == .number("10"))
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["period"]?["start"] == "2024-04-10T00:00:00Z")
        fold.apply(Messages.usage("s", "m", "1.5"), at: "2024-04-10T05:20:00Z")
        fold.ping(at: "2024-04-10T06:00:00Z")
        #expect(fold.pendingSummary == ["dim@2024-04-10T05=1.5"])
    }

    @Test("a period with no records at all is skipped: the next record renews into the period containing it")
    func skippedPeriods() {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-01-31T00:00:00Z", dimensions: Self.plan), at: "2024-01-31T00:00:00Z")
        fold.apply(Messages.usage("s", "m", "12"), at: "2024-01-31T01:00:00Z")
        fold.apply(Messages.usage("s", "m", "3"), at: "2024-06-15T00:00:00Z")
        let json = fold.state.subscriptionJSON(ResourceName(resourceId: "s"))
        #expect(json?["period"]?["index"] == 4)
        #expect(json?["period"]?["start"] == "2024-05-31T00:00:00Z")
        #expect(fold.meter("s", "m")?["remaining"] == 7)
        #expect(fold.pendingSummary == ["dim@2024-01-31T01=2"])
    }

    @Test("a subscriptionStart later than the enqueued time is fine: usage before it counts against period 0")
    func startAfterEnqueuedTime() {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-05-20T09:00:00Z", dimensions: Self.plan), at: "2024-05-01T00:00:00Z")
        fold.apply(Messages.usage("s", "m", "8"), at: "2024-05-02T10:00:00Z")
        let json = fold.state.subscriptionJSON(ResourceName(resourceId: "s"))
        #expect(json?["period"]?["index"] == 0)
        #expect(json?["period"]?["start"] == "2024-05-20T00:00:00Z")
        fold.apply(Messages.usage("s", "m", "5"), at: "2024-05-25T10:00:00Z")
        fold.apply(Messages.usage("s", "m", "10"), at: "2024-06-20T00:30:00Z")
        fold.ping(at: "2024-06-20T02:00:00Z")
        #expect(fold.pendingSummary == ["dim@2024-05-25T10=3"])
    }
}
