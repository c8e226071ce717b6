import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Corrections: voiding usage before and after submission")
struct VoidTests {
    static let plan: JSONValue = [
        "email": Messages.simple("emails", included: 100),
        "seats": Messages.simple("seats", included: 5, aggregation: "max"),
        "gb": Messages.waterfall([("t1", "10"), ("t2", "10"), ("t3", "1")]),
    ]

    static func bought() -> Fold {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-01-31T09:00:00Z", dimensions: plan), at: "2024-02-01T00:00:00Z")
        return fold
    }

    static func use(_ meter: String, _ quantity: String, id: String) -> JSONValue {
        Messages.usage("s", meter, quantity, id: id)
    }

    func rate(_ fold: Fold, _ meter: String) throws -> MeterRunRate {
        try #require(fold.state.runRate(ResourceName(resourceId: "s"))?.meters.first { $0.meterName == meter })
    }

    @Test("usage voided while its hour is open leaves the hour and the period's consumption: the included quantity is back")
    func openHour() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "90", id: "a"), at: "2024-02-10T10:05:00Z")
        fold.apply(Self.use("email", "30.5", id: "b"), at: "2024-02-10T10:10:00Z")
        fold.void("b", at: "2024-02-10T10:20:00Z")
        #expect(try rate(fold, "email").consumed == Quantity(90))
        #expect(try rate(fold, "email").remaining == .finite(Quantity(10)))
        #expect(try rate(fold, "email").voided == quantity("30.5"))
        #expect(try rate(fold, "email").openHourOverage == .zero)
        fold.ping(at: "2024-02-10T11:00:00Z")
        #expect(fold.pendingSummary == [])
        #expect(fold.state.voids == 1)
    }

    @Test("voiding included usage takes back the overage later usage made, from the newest unreported hour")
    func includedThenOverage() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "80", id: "a"), at: "2024-02-10T09:05:00Z")
        fold.apply(Self.use("email", "50", id: "b"), at: "2024-02-10T10:10:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        fold.apply(Self.use("email", "5", id: "c"), at: "2024-02-10T11:10:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-10T10=30"])
        // Consumption 135 → 55: nothing is owed; the open hour 11 (5) and the pending item of 10 (30) give it back.
        fold.void("a", at: "2024-02-10T11:20:00Z")
        #expect(fold.pendingSummary == [])
        #expect(fold.state.pendingCount == 0)
        #expect(try rate(fold, "email").openHourOverage == .zero)
        #expect(try rate(fold, "email").overage == .zero)
        #expect(try rate(fold, "email").credit == .zero)
    }

    @Test("a closed hour's item not yet accepted is reduced before it is reported; its outcome settles the reduced quantity")
    func pendingItem() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "120", id: "a"), at: "2024-02-10T10:05:00Z")
        fold.apply(Self.use("email", "7.25", id: "b"), at: "2024-02-10T10:10:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        fold.void("b", at: "2024-02-10T11:05:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-10T10=20"])
        let item = try #require(fold.state.pending.first)
        #expect(item.withdrawn == quantity("7.25"))
        fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-02-10T11:06:00Z")
        #expect(fold.state.accepted == 1)
        #expect(try rate(fold, "email").credit == .zero)
    }

    @Test("an item sent before the void and accepted whole: the part the void took back becomes a credit")
    func sentBeforeVoid() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "120", id: "a"), at: "2024-02-10T10:05:00Z")
        fold.apply(Self.use("email", "7.25", id: "b"), at: "2024-02-10T10:10:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        let sent = try #require(fold.state.pending.first)
        fold.void("b", at: "2024-02-10T11:05:00Z")
        fold.apply(Messages.outcome(sent, status: "Accepted"), at: "2024-02-10T11:06:00Z")
        #expect(fold.state.accepted == 1)
        #expect(try rate(fold, "email").credit == quantity("7.25"))
        // The same after a resend of the reduced item: the marketplace answers Duplicate with what it holds.
        var again = Self.bought()
        again.apply(Self.use("email", "120", id: "a"), at: "2024-02-10T10:05:00Z")
        again.apply(Self.use("email", "7.25", id: "b"), at: "2024-02-10T10:10:00Z")
        again.ping(at: "2024-02-10T11:00:00Z")
        again.void("b", at: "2024-02-10T11:05:00Z")
        let reduced = try #require(again.state.pending.first)
        again.apply(Messages.outcome(reduced, status: "Duplicate", acceptedQuantity: quantity("27.25")), at: "2024-02-10T11:06:00Z")
        #expect(again.state.conflicts.isEmpty)
        #expect(try rate(again, "email").credit == quantity("7.25"))
    }

    @Test("after acceptance the voided overage is a credit, netted against later overage of the period; what is left is listed for refund")
    func creditNettedThenRefunded() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "150", id: "a"), at: "2024-02-10T10:05:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        fold.apply(Messages.outcome(try #require(fold.state.pending.first), status: "Accepted"), at: "2024-02-10T11:01:00Z")
        fold.apply(Self.use("email", "40", id: "b"), at: "2024-02-10T11:10:00Z")
        #expect(try rate(fold, "email").openHourOverage == Quantity(40))
        fold.void("a", at: "2024-02-10T11:20:00Z")
        // Consumption 190 → 40: 90 owed no more; the open hour gives back 40, 50 were accepted: a credit.
        #expect(try rate(fold, "email").openHourOverage == .zero)
        #expect(try rate(fold, "email").credit == Quantity(50))
        fold.apply(Self.use("email", "80", id: "c"), at: "2024-02-12T10:00:00Z")
        // 120 consumed: 20 overage, netted against the credit, nothing reported.
        #expect(try rate(fold, "email").credit == Quantity(30))
        #expect(try rate(fold, "email").openHourOverage == .zero)
        fold.ping(at: "2024-02-12T11:00:00Z")
        #expect(fold.pendingSummary == [])
        #expect(fold.state.refunds.isEmpty)
        // The period ends (Feb 29, bought on the 31st) with 30 unused.
        fold.ping(at: "2024-02-29T00:00:00Z")
        let refund = try #require(fold.state.refunds.first)
        #expect(fold.state.refunds.count == 1)
        #expect(refund.dimension == "emails" && refund.quantity == Quantity(30))
        #expect(refund.periodStart == at("2024-01-31T00:00:00Z") && refund.periodEnd == at("2024-02-29T00:00:00Z"))
        #expect(try rate(fold, "email").credit == .zero)
        try expectReplays(fold)
    }

    @Test(
        "an item a void emptied is not offered again; an outcome of a call made before still becomes a credit; 25 hours later it is forgotten"
    )
    func emptiedItem() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "100", id: "a"), at: "2024-02-10T09:05:00Z")
        fold.apply(Self.use("email", "3", id: "b"), at: "2024-02-10T10:10:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        let sent = try #require(fold.state.pending.first)
        fold.void("b", at: "2024-02-10T11:05:00Z")
        #expect(fold.state.pending.isEmpty)
        #expect(fold.state.pendingCount == 0)
        var late = fold
        late.apply(Messages.outcome(sent, status: "Accepted"), at: "2024-02-10T11:06:00Z")
        #expect(try rate(late, "email").credit == Quantity(3))
        fold.ping(at: "2024-02-11T11:00:00Z")
        fold.apply(Messages.outcome(sent, status: "Accepted"), at: "2024-02-11T12:00:00Z")
        #expect(try rate(fold, "email").credit == .zero)
        try expectReplays(fold)
    }

    @Test("a waterfall meter gives back its highest tiers first, exactly")
    func waterfall() throws {
        var fold = Self.bought()
        fold.apply(Self.use("gb", "15.5", id: "a"), at: "2024-02-10T10:05:00Z")
        fold.apply(Self.use("gb", "10.1", id: "b"), at: "2024-02-10T10:10:00Z")
        // Running total 25.6: free 10, t1 10, t2 1, t3 4.6.
        fold.void("a", at: "2024-02-10T10:20:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        // 10.1 left: free 10, t1 0.1.
        #expect(fold.pendingSummary == ["t1@2024-02-10T10=0.1"])
        #expect(try rate(fold, "gb").consumed == quantity("10.1"))
    }

    @Test("ten voids of 0.1 restore exactly 1")
    func exactDecimals() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "100", id: "base"), at: "2024-02-10T10:00:00Z")
        for index in 0..<10 { fold.apply(Self.use("email", "0.1", id: "u\(index)"), at: "2024-02-10T10:01:00Z") }
        #expect(try rate(fold, "email").openHourOverage == Quantity(1))
        for index in 0..<10 { fold.void("u\(index)", at: "2024-02-10T10:02:00Z") }
        #expect(try rate(fold, "email").openHourOverage == .zero)
        #expect(try rate(fold, "email").consumed == Quantity(100))
        #expect(try rate(fold, "email").voided == Quantity(1))
    }

    @Test("usage of the period before is voided against it: its unreported items shrink, the rest is listed for refund")
    func previousPeriod() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "130", id: "a"), at: "2024-02-28T22:10:00Z")
        fold.apply(Self.use("email", "20", id: "b"), at: "2024-02-28T23:10:00Z")
        fold.ping(at: "2024-02-29T00:00:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-28T22=30", "emails@2024-02-28T23=20"])
        fold.apply(Messages.outcome(try #require(fold.state.pending.first), status: "Accepted"), at: "2024-02-29T00:01:00Z")
        fold.apply(Self.use("email", "10", id: "c"), at: "2024-02-29T00:10:00Z")
        fold.void("a", at: "2024-02-29T00:20:00Z")
        // The period before: 150 → 20, nothing owed; 20 unreported leave hour 23, the accepted 30 are a refund.
        #expect(fold.pendingSummary == [])
        #expect(fold.state.refunds.map(\.quantity) == [Quantity(30)])
        #expect(fold.state.refunds.first?.periodStart == at("2024-01-31T00:00:00Z"))
        // The current period is untouched.
        #expect(try rate(fold, "email").consumed == Quantity(10))
        #expect(try rate(fold, "email").voided == .zero)
        try expectReplays(fold)
    }

    @Test("voids the accounting cannot apply are unprocessable with their reason, and change nothing")
    func unvoidable() throws {
        var fold = Self.bought()
        fold.apply(Self.use("seats", "9", id: "gauge"), at: "2024-02-10T10:05:00Z")
        fold.apply(Messages.usage("other", "email", "1", id: "elsewhere"), at: "2024-02-10T10:06:00Z")
        fold.apply(Self.use("email", "500", id: "old"), at: "2024-02-10T10:07:00Z")
        fold.ping(at: "2024-04-05T00:00:00Z")
        let before = fold.state.subscriptionJSON(ResourceName(resourceId: "s"))
        fold.void("gauge", at: "2024-04-05T00:01:00Z")
        fold.void("elsewhere", at: "2024-04-05T00:02:00Z")
        fold.void("old", at: "2024-04-05T00:03:00Z")
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s")) == before)
        let reasons = fold.state.unprocessable.groups.map { "\($0.subscription ?? "-")/\($0.reason.rawValue)" }.sorted()
        // The usage for "other" was refused, and so is its void.
        #expect(reasons == ["other/unknownSubscription", "s/unvoidable"])
        #expect(fold.state.unprocessable.groups.first { $0.reason == .unknownSubscription }?.count == 2)
        #expect(fold.state.unprocessable.groups.first { $0.reason == .unvoidable }?.count == 2)
        #expect(fold.state.voids == 0)
        // Usage before the purchase was refused: voiding it later must not take anything away.
        var early = Fold()
        early.apply(Self.use("email", "50", id: "before"), at: "2024-02-01T00:00:00Z")
        early.apply(Messages.purchase("s", start: "2024-01-31T09:00:00Z", dimensions: Self.plan), at: "2024-02-01T00:01:00Z")
        early.apply(Self.use("email", "50", id: "after"), at: "2024-02-01T00:02:00Z")
        early.void("before", at: "2024-02-01T00:03:00Z")
        #expect(try rate(early, "email").consumed == Quantity(50))
        #expect(early.state.unprocessable.groups.contains { $0.reason == .unvoidable })
    }

    @Test("a void after a plan change raised the included quantity still gives back what the voided usage made billable")
    func afterPlanChange() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "30", id: "a"), at: "2024-02-10T10:05:00Z")
        fold.apply(Self.use("email", "120", id: "b"), at: "2024-02-10T10:06:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        fold.apply(Messages.outcome(try #require(fold.state.pending.first), status: "Accepted"), at: "2024-02-10T11:01:00Z")
        let bigger: JSONValue = ["email": Messages.simple("emails", included: 200)]
        fold.apply(Messages.planChange("s", planId: "bigger", dimensions: bigger), at: "2024-02-10T12:00:00Z")
        fold.void("a", at: "2024-02-10T12:10:00Z")
        // 50 were billed; without "a" only 20 would have been: 30 back, as a credit.
        #expect(try rate(fold, "email").credit == Quantity(30))
        #expect(try rate(fold, "email").consumed == Quantity(120))
        #expect(try rate(fold, "email").remaining == .finite(Quantity(80)))
    }
}
