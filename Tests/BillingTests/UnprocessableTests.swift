import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Unprocessable records")
struct UnprocessableTests {
    /// Five unprocessable records (sequences 2 to 6) after one purchase.
    func withUnprocessable() -> Fold {
        var fold = Fold()
        fold.apply(
            Messages.purchase("s", start: "2024-01-10T00:00:00Z", dimensions: ["m": Messages.simple("dim")]), at: "2024-01-10T00:00:00Z")
        fold.apply(Messages.usage("nobody", "m", "1"), at: "2024-01-10T10:00:00Z")
        fold.apply(Messages.usage("s", "nometer", "1"), at: "2024-01-10T10:01:00Z")
        fold.apply(Messages.usage(nil, resourceUri: "/nowhere", "m", "2"), at: "2024-01-10T10:02:00Z")
        fold.apply(Messages.usage("nobody", "m", "3"), at: "2024-01-10T10:03:00Z")
        fold.apply(Messages.usage("nobody", "m", "4"), at: "2024-01-10T10:04:00Z")
        return fold
    }

    @Test("usage for an unknown subscription or meter is kept with its reason and the message, never dropped")
    func kept() {
        let fold = withUnprocessable()
        let records = fold.state.unprocessable.examples
        #expect(records.map(\.sequence) == [2, 3, 4, 5, 6])
        #expect(records[0].reason == "no subscription nobody in partition 0: usage needs its SubscriptionPurchased first")
        #expect(records[1].reason == "subscription s has no meter \"nometer\"; plan plan has \"m\"")
        #expect(records[0].enqueuedTime == at("2024-01-10T10:00:00Z"))
        #expect(records[2].event?["value"]?["resourceUri"] == "/nowhere")
        #expect(records[2].event?["value"]?["quantity"] == 2)
        #expect(records[2].event?["type"] == "UsageReported")
        #expect(fold.state.pending.isEmpty)
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["openHours"] == nil)
    }

    @Test("RemoveUnprocessedMessages drops by beforeIncluding, exactly and all, only for its own partition")
    func removal() {
        var fold = withUnprocessable()
        fold.apply(Messages.removal(partition: 1, JSONObject.Member("all", "all")), at: "2024-01-10T11:00:00Z")
        #expect(fold.state.unprocessable.count == 5)
        fold.apply(Messages.removal(JSONObject.Member("exactly", 4)), at: "2024-01-10T11:00:00Z")
        #expect(fold.state.unprocessable.count == 4)
        #expect(fold.state.unprocessable.examples.map(\.sequence) == [2, 3, 5, 6])
        fold.apply(Messages.removal(JSONObject.Member("beforeIncluding", 5)), at: "2024-01-10T11:00:00Z")
        #expect(fold.state.unprocessable.examples.map(\.sequence) == [6])
        #expect(fold.state.unprocessable.count == 1)
        #expect(fold.state.unprocessable.groups.map(\.subscription) == ["nobody"])
        fold.apply(Messages.removal(JSONObject.Member("all", "all")), at: "2024-01-10T11:00:00Z")
        #expect(fold.state.unprocessable.isEmpty)
    }

    @Test("records at or before the last applied sequence are ignored, so re-reading an overlap never counts twice")
    func replayedRecordsIgnored() {
        var fold = withUnprocessable()
        let once = fold.state
        for record in fold.records { fold.state.apply(record) }
        #expect(fold.state == once)
    }
}
