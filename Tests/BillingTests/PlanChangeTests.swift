import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Plan changes in the middle of a period")
struct PlanChangeTests {
    static let basic: JSONValue = [
        "email": Messages.simple("emails", included: 1000),
        "sms": Messages.simple("texts", included: 10),
        "seats": Messages.simple("seats", included: 5, aggregation: "max"),
    ]
    static let pro: JSONValue = [
        "email": Messages.simple("emails", included: 5000),
        "storage": Messages.simple("gigabytes", included: 100),
        "seats": Messages.simple("seats", included: 20, aggregation: "max"),
    ]

    /// Bought on 2024-01-31 (periods from Jan 31, Feb 29, Mar 31, ...) on `basic`.
    static func bought(_ dimensions: JSONValue = basic) -> Fold {
        var fold = Fold()
        fold.apply(
            Messages.purchase("s", start: "2024-01-31T09:00:00Z", planId: "basic", dimensions: dimensions), at: "2024-02-01T00:00:00Z")
        return fold
    }

    @Test("a meter in both plans keeps what it consumed; the new included quantity applies from the change, remaining never below zero")
    func keptMeter() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "email", "1200"), at: "2024-02-10T10:10:00Z")
        fold.apply(Messages.planChange("s", planId: "pro", dimensions: Self.pro), at: "2024-02-10T10:20:00Z")
        #expect(fold.meter("s", "email")?["consumed"] == 1200)
        #expect(fold.meter("s", "email")?["remaining"] == 3800)
        fold.apply(Messages.usage("s", "email", "3900.5"), at: "2024-02-10T10:40:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        // 200 under basic before the change, then 5100.5 − 5000 under pro: one item for the hour, under pro.
        #expect(fold.pendingSummary == ["emails@2024-02-10T10=300.5"])
        #expect(fold.state.pending.first?.planId == "pro")
        let rate = try #require(fold.state.runRate(ResourceName(resourceId: "s")))
        #expect(rate.planId == "pro")
        #expect(rate.plans.map(\.planId) == ["basic", "pro"])
        #expect(rate.plans.map(\.from) == [at("2024-02-01T00:00:00Z"), at("2024-02-10T10:20:00Z")])
        // The overage billed before the change stays billed: the run-rate says what was billed.
        #expect(rate.meters.first { $0.meterName == "email" }?.overage == quantity("300.5"))
    }

    @Test("a lower included quantity bills only usage after the change, never the consumption before it again")
    func lowerIncluded() throws {
        var fold = Self.bought(Self.pro)
        fold.apply(Messages.usage("s", "email", "3000"), at: "2024-02-10T10:10:00Z")
        fold.apply(Messages.planChange("s", planId: "basic", dimensions: Self.basic), at: "2024-02-10T10:20:00Z")
        #expect(fold.meter("s", "email")?["remaining"] == 0)
        fold.apply(Messages.usage("s", "email", "7"), at: "2024-02-10T10:30:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-10T10=7"])
    }

    @Test("a meter only in the old plan has its open hour reported at the change, under the old plan, and stops")
    func droppedMeter() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "sms", "25"), at: "2024-02-10T10:10:00Z")
        fold.apply(Messages.usage("s", "email", "1001"), at: "2024-02-10T10:11:00Z")
        fold.apply(Messages.planChange("s", planId: "pro", dimensions: Self.pro), at: "2024-02-10T10:20:00Z")
        // texts is billed by no meter of pro: reported now, under basic. emails stays in the hour.
        #expect(fold.pendingSummary == ["texts@2024-02-10T10=15"])
        #expect(fold.state.pending.first?.planId == "basic")
        fold.apply(Messages.usage("s", "sms", "1"), at: "2024-02-10T10:30:00Z")
        #expect(fold.state.unprocessable.groups.map(\.reason) == [.unknownMeter])
        fold.ping(at: "2024-02-10T11:00:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-10T10=1", "texts@2024-02-10T10=15"])
        #expect(fold.state.pending.map(\.planId) == ["pro", "basic"])
    }

    @Test("a meter only in the new plan starts with its whole included quantity")
    func newMeter() throws {
        var fold = Self.bought()
        fold.apply(Messages.planChange("s", planId: "pro", dimensions: Self.pro), at: "2024-02-10T10:20:00Z")
        #expect(fold.meter("s", "storage")?["remaining"] == 100)
        fold.apply(Messages.usage("s", "storage", "100.25"), at: "2024-02-10T10:30:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        #expect(fold.pendingSummary == ["gigabytes@2024-02-10T10=0.25"])
    }

    @Test("a gauge in both plans keeps its value and is billed at the period's end against the new included quantity")
    func keptGauge() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "seats", "12"), at: "2024-02-10T10:10:00Z")
        fold.apply(Messages.planChange("s", planId: "pro", dimensions: Self.pro), at: "2024-02-15T00:00:00Z")
        fold.apply(Messages.usage("s", "seats", "9"), at: "2024-02-20T00:00:00Z")
        #expect(fold.meter("s", "seats")?["value"] == 12)
        fold.ping(at: "2024-02-29T00:00:00Z")
        // max 12 ≤ 20 included under pro: nothing to bill (under basic it would have been 7).
        #expect(fold.pendingSummary == [])
    }

    @Test("a gauge only in the old plan reports its value so far at the change")
    func droppedGauge() throws {
        let noSeats: JSONValue = ["email": Messages.simple("emails", included: 1000)]
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "seats", "12"), at: "2024-02-10T10:10:00Z")
        fold.apply(Messages.planChange("s", planId: "mail", dimensions: noSeats), at: "2024-02-15T08:30:00Z")
        #expect(fold.pendingSummary == ["seats@2024-02-15T08=7"])
        #expect(fold.state.pending.first?.planId == "basic")
        fold.ping(at: "2024-02-29T00:00:00Z")
        #expect(fold.pendingSummary == ["seats@2024-02-15T08=7"])
    }

    @Test("waterfall tiers: the running total is kept and the new plan's bands apply from the change")
    func waterfall() throws {
        let small: JSONValue = ["gb": Messages.waterfall([("t1", "100"), ("t2", "100"), ("t3", "1")])]
        let large: JSONValue = ["gb": Messages.waterfall([("big1", "500"), ("big2", "1000")])]
        var fold = Self.bought(small)
        fold.apply(Messages.usage("s", "gb", "250"), at: "2024-02-10T10:10:00Z")
        fold.apply(Messages.planChange("s", planId: "large", dimensions: large), at: "2024-02-10T10:20:00Z")
        // Free to 100, t1 100–200, t2 200–201, t3 beyond: reported at once (large bills other dimensions).
        #expect(fold.pendingSummary == ["t1@2024-02-10T10=100", "t2@2024-02-10T10=1", "t3@2024-02-10T10=49"])
        fold.apply(Messages.usage("s", "gb", "300"), at: "2024-02-10T10:30:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        // Running total 250 → 550: the free band of large ends at 500, big1 bills 500–550.
        #expect(fold.pendingSummary == ["big1@2024-02-10T10=50", "t1@2024-02-10T10=100", "t2@2024-02-10T10=1", "t3@2024-02-10T10=49"])
    }

    @Test("the same plan again changes nothing; a change for an unknown or a deleted subscription is unprocessable")
    func noChange() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "email", "10"), at: "2024-02-10T10:10:00Z")
        let before = fold.state.subscriptionJSON(ResourceName(resourceId: "s"))
        fold.apply(Messages.planChange("s", planId: "basic", dimensions: Self.basic), at: "2024-02-10T10:20:00Z")
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s")) == before)
        fold.apply(Messages.planChange("nobody", planId: "pro", dimensions: Self.pro), at: "2024-02-10T10:30:00Z")
        // Overage keeps the deleted subscription held until it is settled.
        fold.apply(Messages.usage("s", "email", "991"), at: "2024-02-10T10:35:00Z")
        fold.apply(Messages.deletion("s"), at: "2024-02-10T10:40:00Z")
        fold.apply(Messages.planChange("s", planId: "pro", dimensions: Self.pro), at: "2024-02-10T10:50:00Z")
        #expect(
            fold.state.unprocessable.groups.map(\.reason).sorted { $0.rawValue < $1.rawValue } == [
                .deletedSubscription, .unknownSubscription,
            ])
    }

    @Test("the plan history is the current period's: the renewal starts it over with the plan in force")
    func historyPerPeriod() throws {
        var fold = Self.bought()
        fold.apply(Messages.planChange("s", planId: "pro", dimensions: Self.pro), at: "2024-02-10T10:20:00Z")
        fold.apply(Messages.planChange("s", planId: "basic", dimensions: Self.basic), at: "2024-02-20T10:20:00Z")
        #expect(fold.state.runRate(ResourceName(resourceId: "s"))?.plans.map(\.planId) == ["basic", "pro", "basic"])
        // Bought on the 31st: the next period starts on Feb 29 (month-end clamping).
        fold.ping(at: "2024-02-29T00:00:00Z")
        let rate = try #require(fold.state.runRate(ResourceName(resourceId: "s")))
        #expect(rate.plans.map(\.planId) == ["basic"])
        #expect(rate.plans.first?.from == at("2024-02-29T00:00:00Z"))
        #expect(rate.period.start == at("2024-02-29T00:00:00Z"))
    }

    @Test("a dimension dropped and brought back within one hour never reports its slot twice")
    func droppedAndBack() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "sms", "12"), at: "2024-02-10T10:10:00Z")
        fold.apply(Messages.planChange("s", planId: "pro", dimensions: Self.pro), at: "2024-02-10T10:20:00Z")
        #expect(fold.pendingSummary == ["texts@2024-02-10T10=2"])
        fold.apply(Messages.planChange("s", planId: "basic", dimensions: Self.basic), at: "2024-02-10T10:30:00Z")
        // The sms meter starts over (it stopped), its slot of hour 10 is used: this hour's overage goes to 11.
        fold.apply(Messages.usage("s", "sms", "13"), at: "2024-02-10T10:40:00Z")
        fold.ping(at: "2024-02-10T12:00:00Z")
        #expect(fold.pendingSummary == ["texts@2024-02-10T10=2", "texts@2024-02-10T11=3"])
    }

    @Test("a purchase with the same start and another plan is a plan change; replays and snapshots anywhere give the same state")
    func replay() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "email", "999"), at: "2024-02-28T23:10:00Z")
        fold.apply(
            Messages.purchase("s", start: "2024-01-31T09:00:00Z", planId: "pro", dimensions: Self.pro), at: "2024-02-28T23:30:00Z")
        fold.apply(Messages.usage("s", "email", "4002"), at: "2024-02-28T23:50:00Z")
        fold.apply(Messages.usage("s", "email", "3"), at: "2024-02-29T00:00:00Z")
        fold.ping(at: "2024-02-29T01:00:00Z")
        // 999 + 4002 − 5000 = 1 in the last hour of the period; the renewal refills pro's 5000.
        #expect(fold.pendingSummary == ["emails@2024-02-28T23=1"])
        #expect(fold.meter("s", "email")?["consumed"] == 3)
        try expectReplays(fold)
    }
}

/// Folding the records again, and through a snapshot at every record, gives the fold's state.
func expectReplays(_ fold: Fold, sourceLocation: SourceLocation = #_sourceLocation) throws {
    var again = PartitionState(partition: 0)
    for record in fold.records { again.apply(record) }
    #expect(again == fold.state, "replay", sourceLocation: sourceLocation)
    for split in 0...fold.records.count {
        var first = PartitionState(partition: 0)
        for record in fold.records[..<split] { first.apply(record) }
        var resumed = try PartitionState(snapshot: try JSONParser.parse(JSONWriter.string(first.snapshot())))
        #expect(resumed == first, "restored at \(split)", sourceLocation: sourceLocation)
        for record in fold.records[split...] { resumed.apply(record) }
        #expect(resumed == fold.state, "resumed from \(split)", sourceLocation: sourceLocation)
        #expect(resumed.pending == fold.state.pending, sourceLocation: sourceLocation)
    }
}
