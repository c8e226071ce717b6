import Billing
import BillingTestSupport
import QueryModel
import Testing
import Wire

@Suite("Plan changes, voids and late usage in the read model")
struct ChangesViewTests {
    static let plan: JSONValue = [
        "email": Messages.simple("emails", included: 100), "gb": Messages.waterfall([("t1", "10"), ("t2", "5")]),
    ]

    static func bought() -> ViewFold {
        var fold = ViewFold()
        fold.apply(Messages.purchase("s", start: "2024-01-31T09:00:00Z", planId: "basic", dimensions: plan), at: "2024-02-01T00:00:00Z")
        return fold
    }

    /// Voids `id` as ingest records it: the usage attached.
    static func void(_ fold: inout ViewFold, _ id: String, at time: String) throws {
        let record = try #require(
            fold.records.first { $0.message.id == id && { if case .usageReported = $0.message.body { true } else { false } }($0) })
        guard case .usageReported(let usage) = record.message.body else { return }
        let message = Messages.usage(
            usage.resource.resourceId, usage.meterName, usage.quantity.description, properties: usage.properties,
            timestamp: usage.timestamp.iso8601, id: id)
        fold.apply(Messages.void(id, usage: message, sequence: record.sequence, enqueuedTime: record.enqueuedTime), at: time)
    }

    @Test("a slot whose item a void emptied shows pending until billing forgets it, then nothing billed, in the view and its snapshot")
    func emptiedSlotForgotten() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "email", "130", id: "a"), at: "2024-02-10T10:00:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        let hour = at("2024-02-10T10:00:00Z")
        #expect(fold.view.marketplaceStatus(subscription: "s", dimension: "emails", hour: hour) == "pending")
        try Self.void(&fold, "a", at: "2024-02-10T11:10:00Z")
        // Emptied, not gone: the outcome of a call made before the void may still come.
        #expect(fold.view.state.pendingCount == 0)
        #expect(fold.view.state.hasPendingItem(key: "s", dimension: "emails", hour: hour))
        #expect(fold.view.marketplaceStatus(subscription: "s", dimension: "emails", hour: hour) == "pending")
        // Past the marketplace's window for the hour, billing forgets the item without an outcome.
        fold.ping(at: "2024-02-12T00:00:00Z")
        #expect(!fold.view.state.hasPendingItem(key: "s", dimension: "emails", hour: hour))
        #expect(fold.view.marketplaceStatus(subscription: "s", dimension: "emails", hour: hour) == nil)
        let restored = try PartitionView(snapshot: fold.view.snapshot())
        #expect(restored.marketplaceStatus(subscription: "s", dimension: "emails", hour: hour) == nil)
        #expect(fold.submissions.isEmpty)
    }

    @Test("the run-rate lists the period's plans, and per meter what was voided and the credit left")
    func runRate() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "email", "130", id: "a"), at: "2024-02-10T10:00:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        fold.apply(Messages.outcome(try #require(fold.view.state.pending.first), status: "Accepted"), at: "2024-02-10T11:01:00Z")
        fold.apply(Messages.planChange("s", planId: "pro", dimensions: Self.plan), at: "2024-02-10T12:00:00Z")
        try Self.void(&fold, "a", at: "2024-02-10T12:10:00Z")
        let rate = try #require(fold.runRate("s"))
        #expect(rate["planId"] == "pro")
        #expect(
            rate["plans"]
                == [["planId": "basic", "from": "2024-02-01T00:00:00Z"], ["planId": "pro", "from": "2024-02-10T12:00:00Z"]])
        let email = try #require(fold.meter("s", "email"))
        #expect(number(email["voided"]) == Quantity(130))
        #expect(number(email["credit"]) == Quantity(30))
        #expect(number(email["consumed"]) == .zero)
        #expect(number(email["marketplace"]?["accepted"]) == Quantity(30))
        // A meter without voids or credit keeps its answer's shape.
        #expect(fold.meter("s", "gb")?["voided"] == nil && fold.meter("s", "gb")?["credit"] == nil)
    }

    @Test("usage records show the usage voided in each hour and the overage it took back; credits and refunds are in the ledger")
    func records() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "email", "90", properties: ["campaign": "x"], id: "a"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("s", "email", "25", properties: ["campaign": "y"], id: "b"), at: "2024-02-10T10:10:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        fold.apply(Messages.outcome(try #require(fold.view.state.pending.first), status: "Accepted"), at: "2024-02-10T11:01:00Z")
        try Self.void(&fold, "b", at: "2024-02-10T11:30:00Z")
        fold.apply(Messages.usage("s", "email", "12", id: "c"), at: "2024-02-10T11:40:00Z")
        fold.ping(at: "2024-02-10T12:00:00Z")
        #expect(fold.usageSummary == ["email/emails@2024-02-10T10 115 15", "email/emails@2024-02-10T11 12 0"])
        let voidHour = try #require(fold.usage.last)
        // 15 accepted became a credit; 2 of the 12 after it were netted against it.
        #expect(voidHour.voided == Quantity(25) && voidHour.reversed == Quantity(15) && voidHour.netted == Quantity(2))
        #expect(voidHour.fields["voided"] == 25 && voidHour.fields["netted"] == 2)
        #expect(fold.usage.first?.fields["voided"] == nil)
        #expect(fold.submissions.map(\.status) == ["Accepted", "Credited"])
        #expect(fold.submissions.last?.quantity == Quantity(15))
        let breakdown = try #require(fold.view.breakdownJSON(ResourceName(resourceId: "s"), meterName: "email", property: "campaign"))
        #expect(breakdown["groups"]?.arrayValue?.map { $0["value"] } == ["x", "y"])
        #expect(number(breakdown["groups"]?.arrayValue?.last?["quantity"]) == .zero)
        fold.ping(at: "2024-02-29T00:00:00Z")
        #expect(fold.submissions.map(\.status) == ["Accepted", "Credited", "Refund"])
        #expect(fold.submissions.last?.quantity == Quantity(13))
        #expect(fold.submissions.last?.fields["periodStart"] == "2024-01-31T00:00:00Z")
    }

    @Test("late usage of the period before is a usage record of its hour and no part of the new period's breakdown and series")
    func lateUsage() throws {
        var fold = ViewFold()
        fold.apply(Messages.tick(lateGraceSeconds: 3600), at: "2024-02-01T00:00:00Z")
        fold.apply(Messages.purchase("s", start: "2024-01-31T09:00:00Z", dimensions: Self.plan), at: "2024-02-01T00:00:00Z")
        fold.apply(
            Messages.usage("s", "email", "101", properties: ["campaign": "x"], timestamp: "2024-02-28T23:50:00Z"),
            at: "2024-02-29T00:20:00Z")
        fold.apply(
            Messages.usage("s", "email", "2", properties: ["campaign": "x"], timestamp: "2024-02-29T00:10:00Z"), at: "2024-02-29T00:21:00Z")
        fold.ping(at: "2024-02-29T02:00:00Z")
        #expect(fold.usageSummary == ["email/emails@2024-02-28T23 101 1", "email/emails@2024-02-29T00 2 0"])
        let breakdown = try #require(fold.view.breakdownJSON(ResourceName(resourceId: "s"), meterName: "email", property: "campaign"))
        #expect(number(breakdown["total"]) == Quantity(2))
        let series = try #require(
            fold.view.runRateJSON(ResourceName(resourceId: "s"), series: true)?["meters"]?.arrayValue?.first?["series"])
        #expect(series["points"]?.arrayValue?.map { number($0["quantity"]) } == [Quantity(2)])
    }

    @Test("a view snapshot of the format before voids loads, and the view folds on like one that never stopped")
    func earlierFormat() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("s", "email", "130", id: "a"), at: "2024-02-10T10:00:00Z")
        guard case .object(var snapshot) = fold.view.snapshot() else { return }
        snapshot["format"] = "query-view-1"
        var restored = try PartitionView(snapshot: .object(snapshot))
        try Self.void(&fold, "a", at: "2024-02-10T10:30:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        var output = PartitionView.Output()
        for record in fold.records.suffix(2) { restored.apply(record, into: &output) }
        #expect(output.usage == fold.usage)
        #expect(JSONWriter.string(restored.snapshot()) == JSONWriter.string(fold.view.snapshot()))
    }
}
