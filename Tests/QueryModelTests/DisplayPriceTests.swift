import Billing
import BillingTestSupport
import QueryModel
import Testing
import Wire

@Suite("Run-rate read model: display prices")
struct DisplayPriceTests {
    static let dimensions: JSONValue = [
        "email": Messages.simple("emails", included: 100),
        "calls": Messages.waterfall([("calls-a", "10"), ("calls-b", "20")]),
        "sms": Messages.simple("texts"),
    ]

    /// A purchase of the plan with `prices` in it, as ingest stores a purchase of a catalog plan.
    static func purchase(_ resource: String, prices: JSONValue?, planId: String = "gold") -> JSONValue {
        var message = Messages.purchase(resource, start: "2024-03-01T00:00:00Z", planId: planId, dimensions: dimensions)
        guard let prices, case .object(var envelope) = message, case .object(var value)? = envelope["value"],
            case .object(var subscription)? = value["subscription"], case .object(var plan)? = subscription["plan"]
        else { return message }
        plan["prices"] = prices
        plan["catalogVersion"] = 1
        subscription["plan"] = .object(plan)
        value["subscription"] = .object(subscription)
        envelope["value"] = .object(value)
        message = .object(envelope)
        return message
    }

    static let usd: JSONValue = ["currency": "USD", "perUnit": ["emails": .number("0.02"), "calls-a": .number("0.5"), "calls-b": 1]]

    @Test(
        "the run-rate carries each priced dimension's price (simple meters and waterfall tiers), none for unpriced ones, and keeps them through a snapshot"
    )
    func pricesInTheRunRate() throws {
        var fold = ViewFold()
        fold.apply(Self.purchase("sub-1", prices: Self.usd), at: "2024-03-01T10:00:00Z")
        fold.apply(Self.purchase("sub-2", prices: nil, planId: "plain"), at: "2024-03-01T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "150"), at: "2024-03-01T10:05:00Z")
        let email = try #require(fold.meter("sub-1", "email"))
        #expect(email["price"] == ["currency": "USD", "perUnit": .number("0.02")])
        #expect(fold.meter("sub-1", "sms")?["price"] == nil, "a dimension without a price has none")
        let calls = try #require(fold.meter("sub-1", "calls"))
        #expect(calls["price"] == nil, "a waterfall meter's prices are its tiers'")
        #expect(calls["tiers"]?.arrayValue?.map { $0["price"]?["perUnit"] } == [.number("0.5"), .number("1")])
        #expect(fold.meter("sub-2", "email")?["price"] == nil, "a plan without prices shows none")

        let restored = try PartitionView(snapshot: try JSONParser.parse(JSONWriter.string(fold.view.snapshot())))
        let again = restored.runRateJSON(ResourceName(resourceId: "sub-1"))?["meters"]?.arrayValue?.first { $0["meterName"] == "email" }
        #expect(again?["price"] == email["price"])
        #expect(JSONWriter.string(restored.snapshot()) == JSONWriter.string(fold.view.snapshot()))
    }

    @Test("a plan change brings the new plan's prices, also when only the prices differ; a deletion's removal forgets them")
    func pricesFollowThePlan() throws {
        var fold = ViewFold()
        fold.apply(Self.purchase("sub-1", prices: Self.usd), at: "2024-03-01T10:00:00Z")
        let euro: JSONValue = ["currency": "EUR", "perUnit": ["emails": .number("0.01")]]
        let change: JSONValue = [
            "type": "PlanChanged",
            "value": [
                "resourceId": "sub-1",
                "plan": ["planId": "gold", "billingDimensions": Self.dimensions, "prices": euro],
            ],
        ]
        fold.apply(change, at: "2024-03-02T10:00:00Z")
        #expect(fold.meter("sub-1", "email")?["price"] == ["currency": "EUR", "perUnit": .number("0.01")])
        #expect(fold.meter("sub-1", "calls")?["tiers"]?.arrayValue?.first?["price"] == nil)
        fold.apply(Messages.deletion("sub-1"), at: "2024-03-03T10:00:00Z")
        fold.ping(at: "2024-03-05T10:00:00Z")
        fold.apply(Self.purchase("sub-1", prices: nil, planId: "plain"), at: "2024-03-06T10:00:00Z")
        #expect(fold.meter("sub-1", "email")?["price"] == nil, "bought again on a plan without prices")
    }
}
