import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Subscription deletion and new purchases")
struct DeletionTests {
    static let plan: JSONValue = [
        "m": Messages.simple("dim", included: 10),
        "seats": Messages.simple("seatcharge", included: 1, aggregation: "max"),
    ]

    func purchased() -> Fold {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-01-10T00:00:00Z", dimensions: Self.plan), at: "2024-01-10T00:00:00Z")
        return fold
    }

    @Test("deletion closes the open hour at once and the subscription disappears only after its outcomes arrive")
    func deletionFlushesAndWaitsForOutcomes() throws {
        var fold = purchased()
        fold.apply(Messages.usage("s", "m", "12"), at: "2024-01-10T09:30:00Z")
        fold.apply(Messages.usage("s", "m", "3"), at: "2024-01-10T10:20:00Z")
        fold.apply(Messages.usage("s", "seats", "4"), at: "2024-01-10T10:21:00Z")
        fold.apply(Messages.deletion("s"), at: "2024-01-10T10:40:00Z")
        #expect(fold.pendingSummary == ["dim@2024-01-10T09=2", "dim@2024-01-10T10=3", "seatcharge@2024-01-10T10=3"])
        #expect(
            fold.state.pending.filter { $0.effectiveStartTime == at("2024-01-10T10:00:00Z") }.allSatisfy {
                $0.readySince == at("2024-01-10T10:40:00Z")
            })
        #expect(fold.state.subscriptionCount == 1)
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["deleted"] == true)

        fold.apply(Messages.usage("s", "m", "1"), at: "2024-01-10T10:50:00Z")
        #expect(fold.state.unprocessable.examples.map(\.reason) == ["subscription s was deleted"])
        #expect(fold.state.unprocessable.examples.first?.event?["value"]?["meterName"] == "m")

        let items = fold.state.pending
        for (index, item) in items.enumerated() {
            #expect(fold.state.subscriptionCount == 1)
            fold.apply(Messages.outcome(item, status: "Accepted"), at: at("2024-01-10T11:00:00Z").adding(microseconds: Int64(index)))
        }
        #expect(fold.state.subscriptionCount == 0)
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s")) == nil)
        #expect(fold.state.accepted == 3)
        // Outcomes for a removed subscription change nothing.
        let before = fold.state.snapshot()
        fold.apply(Messages.outcome(try #require(items.first), status: "Accepted"), at: "2024-01-10T11:05:00Z")
        #expect(fold.state.accepted == 3)
        #expect(fold.state.snapshot()["subscriptions"] == before["subscriptions"])
    }

    @Test("a subscription with nothing outstanding disappears as soon as it is deleted, and deleting it again is unprocessable")
    func deletionWithoutItems() {
        var fold = purchased()
        fold.apply(Messages.usage("s", "m", "1"), at: "2024-01-10T09:30:00Z")
        fold.apply(Messages.deletion("s"), at: "2024-01-10T09:40:00Z")
        #expect(fold.state.subscriptionCount == 0)
        fold.apply(Messages.deletion("s"), at: "2024-01-10T09:41:00Z")
        #expect(fold.state.unprocessable.count == 1)
        #expect(fold.state.unprocessable.examples.first?.event?["type"] == "SubscriptionDeleted")
    }

    @Test("an expired item of a deleted subscription is billed again in the next hour, since the deletion used this hour's slots")
    func expiredAfterDeletion() throws {
        var fold = purchased()
        fold.apply(Messages.usage("s", "m", "15"), at: "2024-01-10T10:20:00Z")
        fold.apply(Messages.deletion("s"), at: "2024-01-10T10:40:00Z")
        let item = try #require(fold.state.pending.first)
        fold.apply(Messages.outcome(item, status: "Expired"), at: "2024-01-10T10:45:00Z")
        #expect(fold.state.pending.isEmpty)
        #expect(
            fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["openHours"]?.arrayValue?.first?["start"] == "2024-01-10T11:00:00Z")
        fold.ping(at: "2024-01-10T11:59:00Z")
        #expect(fold.state.pending.isEmpty)
        fold.ping(at: "2024-01-10T12:00:00Z")
        #expect(fold.pendingSummary == ["dim@2024-01-10T11=5"])
        fold.apply(Messages.outcome(try #require(fold.state.pending.first), status: "Accepted"), at: "2024-01-10T12:01:00Z")
        #expect(fold.state.subscriptionCount == 0)
    }

    @Test(
        "a repeated identical purchase changes nothing; one with another plan changes the plan and keeps the period's consumption; one with another start is refused"
    )
    func repurchase() {
        var fold = purchased()
        fold.apply(Messages.usage("s", "m", "12"), at: "2024-01-10T10:20:00Z")
        fold.apply(Messages.purchase("s", start: "2024-01-10T00:00:00Z", dimensions: Self.plan), at: "2024-01-10T10:25:00Z")
        #expect(fold.meter("s", "m")?["consumed"] == 12)
        #expect(fold.state.pending.isEmpty)

        let newPlan: JSONValue = ["m": Messages.simple("dim", included: 100)]
        fold.apply(
            Messages.purchase("s", start: "2024-01-10T00:00:00Z", planId: "bigger", dimensions: newPlan), at: "2024-01-10T10:30:00Z")
        // The dimension is billed by both plans: its overage stays in the hour, nothing is reported early.
        #expect(fold.state.pending.isEmpty)
        #expect(fold.meter("s", "m")?["consumed"] == 12)
        #expect(fold.meter("s", "m")?["remaining"] == 88)
        fold.apply(Messages.usage("s", "m", "101"), at: "2024-01-10T10:50:00Z")
        fold.ping(at: "2024-01-10T11:00:00Z")
        // 2 under the old plan, then 113 − 100 = 13 under the new one: one item, under the plan in force at the close.
        #expect(fold.pendingSummary == ["dim@2024-01-10T10=15"])
        #expect(fold.state.pending.first?.planId == "bigger")

        fold.apply(
            Messages.purchase("s", start: "2024-01-05T00:00:00Z", planId: "other", dimensions: newPlan), at: "2024-01-10T11:10:00Z")
        #expect(fold.state.unprocessable.groups.map(\.reason) == [.conflictingPurchase])
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["planId"] == "bigger")
        #expect(fold.meter("s", "m")?["consumed"] == 113)
    }

    @Test("a purchase naming the resource both ways makes it reachable by either name")
    func bothNames() {
        var fold = Fold()
        fold.apply(
            Messages.purchase("id-1", resourceUri: "/uri/1", start: "2024-01-10T00:00:00Z", dimensions: Self.plan),
            at: "2024-01-10T00:00:00Z")
        fold.apply(Messages.usage(nil, resourceUri: "/uri/1", "m", "11"), at: "2024-01-10T10:00:00Z")
        fold.apply(Messages.usage("id-1", "m", "1"), at: "2024-01-10T10:00:00Z")
        fold.ping(at: "2024-01-10T11:00:00Z")
        #expect(fold.state.pending.first?.resource == ResourceName(resourceId: "id-1", resourceUri: "/uri/1"))
        #expect(fold.state.pending.first?.quantity == Quantity(2))
        #expect(fold.state.subscriptionJSON(ResourceName(resourceUri: "/uri/1"))?["resourceId"] == "id-1")
    }
}
