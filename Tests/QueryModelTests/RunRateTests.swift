import Billing
import BillingTestSupport
import QueryModel
import Testing
import Wire

@Suite("Run-rate read model")
struct RunRateTests {
    static let plan: JSONValue = [
        "email": Messages.simple("email-dim", included: 1000),
        "sms": Messages.simple("sms-dim"),
        "storage": Messages.simple("storage-dim", included: "Infinite"),
        "seats": Messages.simple("seat-dim", included: 5, aggregation: "max"),
        "calls": Messages.waterfall([("calls-a", "100"), ("calls-b", "900"), ("calls-c", "1000")]),
    ]

    static func bought() -> ViewFold {
        var fold = ViewFold()
        fold.apply(Messages.purchase("sub-1", start: "2024-01-31T08:00:00Z", dimensions: plan), at: "2024-02-10T00:00:00Z")
        return fold
    }

    @Test("a fresh subscription shows its whole included quantity and the period from its anniversary")
    func freshSubscription() throws {
        let fold = Self.bought()
        let runRate = try #require(fold.runRate("sub-1"))
        #expect(runRate["period"]?["start"] == "2024-01-31T00:00:00Z")
        #expect(runRate["period"]?["end"] == "2024-02-29T00:00:00Z")
        #expect(number(fold.meter("sub-1", "email")?["remaining"]) == Quantity(1000))
        #expect(fold.meter("sub-1", "storage")?["remaining"] == "Infinite")
        #expect(fold.meter("sub-1", "storage")?["included"] == "Infinite")
        #expect(number(fold.meter("sub-1", "sms")?["remaining"]) == .zero)
    }

    @Test("usage consumes the included quantity first; the rest is overage of the open hour, exactly")
    func includedThenOverage() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "email", "999.9"), at: "2024-02-10T10:05:00Z")
        for _ in 0..<10 { fold.apply(Messages.usage("sub-1", "email", "0.1"), at: "2024-02-10T10:06:00Z") }
        let email = try #require(fold.meter("sub-1", "email"))
        #expect(number(email["consumed"]) == quantity("1000.9"))
        #expect(number(email["remaining"]) == .zero)
        #expect(number(email["overage"]) == quantity("0.9"))
        #expect(number(email["openHourOverage"]) == quantity("0.9"))
        #expect(number(email["marketplace"]?["pending"]) == .zero)
        fold.ping(at: "2024-02-10T11:00:00Z")
        let closed = try #require(fold.meter("sub-1", "email"))
        #expect(number(closed["openHourOverage"]) == .zero)
        #expect(number(closed["marketplace"]?["pending"]) == quantity("0.9"))
    }

    @Test("the projection scales the period's usage so far to the whole period")
    func projection() throws {
        var fold = Self.bought()
        // 2024-01-31 to 2024-02-29 is 29 days; at 2024-02-14T12:00 half of it has passed.
        fold.apply(Messages.usage("sub-1", "email", "300"), at: "2024-02-14T12:00:00Z")
        #expect(number(fold.meter("sub-1", "email")?["projected"]) == Quantity(600))
    }

    @Test("a waterfall meter shows each tier's usage and the tier being consumed")
    func waterfallTiers() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "calls", "150"), at: "2024-02-10T10:00:00Z")
        let calls = try #require(fold.meter("sub-1", "calls"))
        #expect(calls["dimension"] == "calls-a")
        #expect(number(calls["overage"]) == Quantity(50))
        let tiers = try #require(calls["tiers"]?.arrayValue)
        #expect(tiers.map { number($0["consumed"]) } == [Quantity(50), .zero, .zero])
        fold.apply(Messages.usage("sub-1", "calls", "900"), at: "2024-02-10T10:30:00Z")
        let more = try #require(fold.meter("sub-1", "calls"))
        #expect(more["dimension"] == "calls-b")
        #expect(more["tiers"]?.arrayValue?.map { number($0["consumed"]) } == [Quantity(900), Quantity(50), .zero])
    }

    @Test("a gauge meter shows its maximum and what it would bill, not yet reported")
    func gauge() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "seats", "7"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "seats", "6"), at: "2024-02-11T10:00:00Z")
        let seats = try #require(fold.meter("sub-1", "seats"))
        #expect(number(seats["consumed"]) == Quantity(7))
        #expect(number(seats["overage"]) == Quantity(2))
        #expect(number(seats["marketplace"]?["pending"]) == .zero)
    }

    @Test("the renewal refills the included quantity and the marketplace summary starts over")
    func renewal() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "email", "1200"), at: "2024-02-28T22:00:00Z")
        fold.ping(at: "2024-02-29T01:00:00Z")
        let email = try #require(fold.meter("sub-1", "email"))
        #expect(number(email["consumed"]) == .zero)
        #expect(number(email["remaining"]) == Quantity(1000))
        #expect(number(email["marketplace"]?["pending"]) == .zero)
        #expect(fold.runRate("sub-1")?["period"]?["start"] == "2024-02-29T00:00:00Z")
        #expect(fold.runRate("sub-1")?["period"]?["end"] == "2024-03-31T00:00:00Z")
    }

    @Test("marketplace outcomes move quantities from pending to accepted, rejected or conflicts")
    func marketplaceOutcomes() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "email", "1010"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "sms", "4"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "5"), at: "2024-02-10T11:00:00Z")
        fold.ping(at: "2024-02-10T12:00:00Z")
        let items = fold.view.state.pending
        #expect(items.count == 3)
        let email10 = try #require(items.first { $0.dimension == "email-dim" && $0.effectiveStartTime == at("2024-02-10T10:00:00Z") })
        let email11 = try #require(items.first { $0.dimension == "email-dim" && $0.effectiveStartTime == at("2024-02-10T11:00:00Z") })
        let sms = try #require(items.first { $0.dimension == "sms-dim" })
        fold.apply(Messages.outcome(email10, status: "Accepted"), at: "2024-02-10T12:01:00Z")
        fold.apply(Messages.outcome(email11, status: "Duplicate", acceptedQuantity: Quantity(4)), at: "2024-02-10T12:01:00Z")
        fold.apply(Messages.outcome(sms, status: "ResourceNotFound", errorMessage: "no such resource"), at: "2024-02-10T12:01:00Z")
        let email = try #require(fold.meter("sub-1", "email")?["marketplace"])
        #expect(number(email["pending"]) == .zero)
        #expect(number(email["accepted"]) == Quantity(14))
        #expect(email["conflicts"] == 1)
        #expect(number(fold.meter("sub-1", "sms")?["marketplace"]?["rejected"]) == Quantity(4))
        #expect(fold.submissions.map { $0.settled } == ["Accepted", "Conflict", "ResourceNotFound"])
        #expect(fold.submissions[1].acceptedQuantity == Quantity(4))
        #expect(fold.submissions[2].reason?.contains("no such resource") == true)
        #expect(fold.view.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: at("2024-02-10T10:00:00Z")) == "rejected")
    }

    @Test("an outcome that matches no pending item is in the ledger but settles nothing")
    func unmatchedOutcome() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "sms", "4"), at: "2024-02-10T10:00:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        let item = try #require(fold.view.state.pending.first)
        fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-02-10T11:01:00Z")
        fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-02-10T11:02:00Z")
        #expect(fold.submissions.map(\.settled) == ["Accepted", nil])
        #expect(number(fold.meter("sub-1", "sms")?["marketplace"]?["accepted"]) == Quantity(4))
    }

    @Test("settled slots are forgotten two days later, pending ones never, and the period's totals stay")
    func slotRetention() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "sms", "4"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "sms", "6"), at: "2024-02-10T11:00:00Z")
        fold.ping(at: "2024-02-10T12:00:00Z")
        let first = try #require(fold.view.state.pending.first { $0.effectiveStartTime == at("2024-02-10T10:00:00Z") })
        fold.apply(Messages.outcome(first, status: "Accepted"), at: "2024-02-10T12:01:00Z")
        let hour10 = at("2024-02-10T10:00:00Z")
        let hour11 = at("2024-02-10T11:00:00Z")
        fold.ping(at: "2024-02-12T12:00:00Z")
        #expect(fold.view.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: hour10) == "accepted")
        fold.ping(at: "2024-02-12T13:00:00Z")
        #expect(fold.view.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: hour10) == nil)
        #expect(fold.view.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: hour11) == "pending")
        let sms = try #require(fold.meter("sub-1", "sms")?["marketplace"])
        #expect(number(sms["accepted"]) == Quantity(4))
        #expect(number(sms["pending"]) == Quantity(6))
        let restored = try PartitionView(snapshot: fold.view.snapshot())
        #expect(restored.runRateJSON(ResourceName(resourceId: "sub-1")) == fold.runRate("sub-1"))
    }
}
