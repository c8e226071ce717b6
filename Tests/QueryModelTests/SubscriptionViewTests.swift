import Billing
import BillingTestSupport
import Testing
import Wire

@testable import QueryModel

@Suite("One entry per subscription in the read model: open usage, breakdown, series, ledger and prices together")
struct SubscriptionViewTests {
    /// `subscription meter@hour` of each usage record, in ordinal order.
    static func closed(_ fold: ViewFold) -> [String] {
        fold.usage.map { "\($0.subscription) \($0.meterName)@\(hourText($0.hour).suffix(2))" }
    }

    @Test("hours that close together come out hour first, then subscription, meter and dimension, numbered in that order")
    func severalHoursCloseInOrder() throws {
        var fold = ViewFold()
        // Event-time attribution with an hour's grace: late usage goes back to its own hour, which
        // the read model closed already, so two hours close at the next hour's end.
        fold.apply(Messages.tick(lateGraceSeconds: 3600), at: "2024-03-01T10:00:00Z")
        for key in ["b-sub", "a-sub"] {
            fold.apply(Messages.purchase(key, start: "2024-03-01T00:00:00Z", dimensions: RunRateTests.plan), at: "2024-03-01T10:00:00Z")
        }
        fold.apply(Messages.usage("b-sub", "sms", "1", timestamp: "2024-03-01T10:05:00Z"), at: "2024-03-01T10:05:00Z")
        fold.apply(Messages.usage("a-sub", "sms", "1", timestamp: "2024-03-01T10:06:00Z"), at: "2024-03-01T10:06:00Z")
        fold.apply(Messages.usage("a-sub", "email", "1", timestamp: "2024-03-01T10:07:00Z"), at: "2024-03-01T10:07:00Z")
        #expect(fold.usage.isEmpty)
        fold.apply(Messages.usage("b-sub", "sms", "1", timestamp: "2024-03-01T11:05:00Z"), at: "2024-03-01T11:05:00Z")
        #expect(Self.closed(fold) == ["a-sub email@10", "a-sub sms@10", "b-sub sms@10"])
        // Late usage of hour 10, and usage of hour 11 of both.
        fold.apply(Messages.usage("b-sub", "email", "1", timestamp: "2024-03-01T10:30:00Z"), at: "2024-03-01T11:20:00Z")
        fold.apply(Messages.usage("a-sub", "sms", "1", timestamp: "2024-03-01T11:25:00Z"), at: "2024-03-01T11:25:00Z")
        fold.apply(Messages.usage("a-sub", "email", "1", timestamp: "2024-03-01T11:26:00Z"), at: "2024-03-01T11:26:00Z")
        fold.apply(Messages.ping(), at: "2024-03-01T12:01:00Z")
        #expect(
            Self.closed(fold) == [
                "a-sub email@10", "a-sub sms@10", "b-sub sms@10", "b-sub email@10", "a-sub email@11", "a-sub sms@11", "b-sub sms@11",
            ])
        #expect(fold.usage.map(\.ordinal) == Array(0..<7))
        #expect(fold.view.openKeys.isEmpty)
        #expect(fold.view.subscriptionViews.values.allSatisfy { $0.open.isEmpty })
    }

    @Test("a forgotten subscription's open usage still closes into its record, and its entry goes with it")
    func removedSubscriptionKeepsOpenUsage() throws {
        var fold = ViewFold()
        fold.apply(Messages.purchase("gone", start: "2024-03-01T00:00:00Z", dimensions: RunRateTests.plan), at: "2024-03-01T10:00:00Z")
        fold.apply(Messages.purchase("kept", start: "2024-03-01T00:00:00Z", dimensions: RunRateTests.plan), at: "2024-03-01T10:00:00Z")
        // Within the included quantity: no item waits for the marketplace, so the deletion forgets it.
        fold.apply(Messages.usage("gone", "email", "2", properties: ["campaign": "c1"]), at: "2024-03-01T10:05:00Z")
        fold.apply(Messages.deletion("gone"), at: "2024-03-01T10:10:00Z")
        fold.apply(Messages.ping(), at: "2024-03-01T10:20:00Z")
        #expect(fold.view.runRateJSON(ResourceName(resourceId: "gone")) == nil, "the billing state forgot the subscription")
        let entry = try #require(fold.view.subscriptionViews["gone"])
        #expect(entry.breakdown == nil && entry.series == nil && entry.market == nil && entry.prices == nil && entry.ledger.isEmpty)
        #expect(entry.open.map { "\($0.meterName) \($0.total.quantity)" } == ["email 2"])

        // A restart from a snapshot taken now keeps the open usage too.
        let restored = try PartitionView(binarySnapshot: fold.view.binarySnapshot())
        #expect(restored.subscriptionViews["gone"]?.open == entry.open)
        #expect(restored.openKeys == ["gone"])

        fold.apply(Messages.ping(), at: "2024-03-01T11:01:00Z")
        #expect(Self.closed(fold) == ["gone email@10"])
        #expect(fold.usage.first?.quantity == Quantity(2))
        #expect(fold.view.subscriptionViews["gone"] == nil)
        #expect(fold.view.openKeys.isEmpty)
    }

    @Test("a subscription without figures has no entry; the entry goes once its last figure does")
    func entriesGoWhenEmpty() throws {
        var fold = ViewFold()
        fold.apply(Messages.purchase("quiet", start: "2024-03-01T00:00:00Z", dimensions: RunRateTests.plan), at: "2024-03-01T10:00:00Z")
        #expect(fold.view.subscriptionViews["quiet"] == nil, "a purchase without prices keeps nothing")
        fold.apply(Messages.usage("quiet", "storage", "3"), at: "2024-03-01T10:05:00Z")
        #expect(fold.view.subscriptionViews["quiet"]?.series != nil)
        #expect(fold.view.subscriptionViews["quiet"]?.open.count == 1)
        // The renewal starts the series and the breakdown again; the closed hour took the open usage.
        fold.apply(Messages.ping(), at: "2024-04-01T00:30:00Z")
        #expect(fold.view.subscriptionViews["quiet"] == nil)
    }

    @Test("a subscription's open entries share one copy of its names and plan; a void gives its entry its own totals, also after a restart")
    func openEntriesShareTheirTerms() throws {
        var fold = ViewFold()
        fold.apply(Messages.purchase("s", start: "2024-03-01T00:00:00Z", dimensions: RunRateTests.plan), at: "2024-03-01T10:00:00Z")
        fold.apply(Messages.usage("s", "email", "1200", id: "a"), at: "2024-03-01T10:05:00Z")
        fold.apply(Messages.usage("s", "sms", "3", id: "b"), at: "2024-03-01T10:06:00Z")
        fold.apply(Messages.usage("s", "storage", "4", id: "c"), at: "2024-03-01T10:07:00Z")
        let open = try #require(fold.view.subscriptionViews["s"]?.open)
        #expect(open.map(\.meterName) == ["email", "sms", "storage"])
        #expect(open.allSatisfy { $0.terms === open[0].terms }, "one copy of the names and plan for the three")
        #expect(open[0].total.resource == ResourceName(resourceId: "s"))

        try ChangesViewTests.void(&fold, "b", at: "2024-03-01T10:20:00Z")
        let afterVoid = try #require(fold.view.subscriptionViews["s"]?.open)
        let sms = try #require(afterVoid.first { $0.meterName == "sms" })
        #expect(sms.total.voided == Quantity(3))
        #expect(sms.terms !== afterVoid[0].terms)
        #expect(afterVoid.filter { $0.meterName != "sms" }.allSatisfy { $0.terms === afterVoid[0].terms && $0.total.voided == .zero })

        // Read back from a snapshot: the same entries, sharing as they did.
        let restored = try PartitionView(binarySnapshot: fold.view.binarySnapshot())
        let back = try #require(restored.subscriptionViews["s"]?.open)
        #expect(back.sorted { $0.meterName < $1.meterName } == afterVoid.sorted { $0.meterName < $1.meterName })
        let shared = back.filter { $0.meterName != "sms" }
        #expect(shared.count == 2 && shared[1].terms === shared[0].terms)

        fold.apply(Messages.ping(), at: "2024-03-01T11:01:00Z")
        #expect(
            fold.usage.map { "\($0.meterName) \($0.quantity) \($0.billed) \($0.voided)" } == [
                "email 1200 200 0", "sms 3 3 3", "storage 4 0 0",
            ])
        #expect(fold.usage.allSatisfy { $0.resource == ResourceName(resourceId: "s") && $0.planId == fold.usage[0].planId })
    }

    @Test("open usage grows its table about an entry at a time, its entries sharing one copy of the names and plan")
    func openUsageGrowsByAboutOne() {
        var view = PartitionView.SubscriptionView()
        for number in 0..<5 {
            _ = view.addUsage(
                meterName: "m\(number)", dimension: "d", hour: Timestamp(microseconds: 0), terms: { (ResourceName(resourceId: "s"), "p") },
                .init(quantity: Quantity(1)))
        }
        #expect(view.open.count == 5)
        #expect(view.open.allSatisfy { $0.terms === view.open[0].terms }, "one copy of the names and plan")
        #expect(view.open.capacity < 8, "doubling would have left room for eight")
    }

    @Test("the next hour's entries share the names and plan of the last closed hour's, while they are the same; equality does not see it")
    func nextHourSharesTheLastTerms() throws {
        let ten = try #require(Timestamp(iso8601: "2024-03-01T10:00:00Z"))
        let eleven = ten.adding(microseconds: Timestamp.microsecondsPerHour)
        let noon = eleven.adding(microseconds: Timestamp.microsecondsPerHour)
        func add(_ view: inout PartitionView.SubscriptionView, _ hour: Timestamp, plan: String) {
            _ = view.addUsage(
                meterName: "m", dimension: "d", hour: hour, terms: { (ResourceName(resourceId: "s"), plan) }, .init(quantity: Quantity(1)))
        }
        var view = PartitionView.SubscriptionView()
        add(&view, ten, plan: "p")
        let first = view.open[0].terms
        var closed: [PartitionView.KeyedUsage] = []
        _ = view.takeClosed(key: "s", before: eleven, into: &closed)
        var restored = view
        restored.lastTerms = nil
        #expect(view == restored, "not part of what the entry keeps")
        add(&view, eleven, plan: "p")
        #expect(view.open[0].terms === first, "the same box, not a new one")
        _ = view.takeClosed(key: "s", before: noon, into: &closed)
        add(&view, noon, plan: "q")
        #expect(view.open[0].terms !== first && view.open[0].terms.value.planId == "q", "another plan, another box")
    }

    @Test("an open usage entry takes 80 bytes: a busy hour holds one per subscription-meter")
    func openUsageLayout() {
        #expect(MemoryLayout<PartitionView.OpenUsage>.stride == 80)
    }

    @Test("closing takes out the entries of ended hours, keeps the others, and says whether the entry is still open, kept or empty")
    func takeClosedSaysWhatIsLeft() throws {
        let terms = Boxed(PartitionView.OpenTerms(resource: ResourceName(resourceId: "s"), planId: "p"))
        let ten = try #require(Timestamp(iso8601: "2024-03-01T10:00:00Z"))
        let eleven = ten.adding(microseconds: Timestamp.microsecondsPerHour)
        func usage(_ meter: String, _ hour: Timestamp, _ quantity: Int) -> PartitionView.OpenUsage {
            var entry = PartitionView.OpenUsage(meterName: meter, dimension: meter, hour: hour, terms: terms)
            entry.add(PartitionView.UsageChange(quantity: Quantity(quantity)))
            return entry
        }
        var view = PartitionView.SubscriptionView()
        for entry in [usage("a", ten, 1), usage("b", eleven, 2), usage("c", ten, 3)] { view.append(entry) }
        var closed: [PartitionView.KeyedUsage] = []
        // At 11:00, hour 10 ended: its two entries go (in no particular order), hour 11's stays.
        #expect(view.takeClosed(key: "s", before: eleven, into: &closed) == .open)
        #expect(closed.map { "\($0.key) \($0.usage.meterName) \($0.usage.quantity)" }.sorted() == ["s a 1", "s c 3"])
        #expect(view.open.map(\.meterName) == ["b"])
        // Nothing ended an hour later than that: nothing moves.
        #expect(view.takeClosed(key: "s", before: eleven.adding(microseconds: 1), into: &closed) == .open)
        #expect(closed.count == 2)
        // With the ledger holding a slot, the emptied entry is kept; without anything, it can go.
        var settled = view
        settled.ledger[PartitionView.Slot(dimension: "a", hour: ten)] = PartitionView.SlotStatus(status: .accepted, settledAt: eleven)
        let noon = eleven.adding(microseconds: Timestamp.microsecondsPerHour)
        #expect(settled.takeClosed(key: "s", before: noon, into: &closed) == .closed)
        #expect(settled.open.isEmpty && settled.open.capacity >= 1, "the emptied table keeps its room for the next hour")
        #expect(view.takeClosed(key: "s", before: noon, into: &closed) == .empty)
        #expect(closed.dropFirst(2).map(\.usage.meterName) == ["b", "b"])
    }
}
