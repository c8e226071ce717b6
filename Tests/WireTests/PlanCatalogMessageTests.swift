import Foundation
import Testing
import Wire

@Suite("The plan catalog on the wire: PlanDefined, plans named by id, display prices")
struct PlanCatalogMessageTests {
    static func decode(_ text: String) throws -> Result<Message, MessageError> { Message.decode(try JSONParser.parse(text)) }

    static let gold =
        #"{"planId":"gold","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":1000},"egress":{"type":"waterfall","tiers":[{"dimension":"t1","threshold":100},{"dimension":"t2","threshold":400}]}},"prices":{"currency":"USD","perUnit":{"emails":"0.002","t2":3e-2}}}"#

    @Test("PlanDefined is a client message carrying a whole plan with its display prices, exactly, and no resource")
    func planDefined() throws {
        let message = try Self.decode(#"{"type":"PlanDefined","id":"gold-1","value":{"plan":\#(Self.gold)}}"#).get()
        guard case .planDefined(let definition) = message.body else {
            Issue.record("not a plan definition")
            return
        }
        #expect(message.type == .planDefined && message.type.isClientMessage && message.id == "gold-1")
        #expect(message.resource == nil && message.addressedPartition == nil)
        #expect(definition.version == nil)
        #expect(definition.plan.planId == "gold" && !definition.plan.isCatalogReference)
        #expect(definition.plan.dimensions == ["emails", "t1", "t2"])
        let prices = try #require(definition.plan.prices)
        #expect(prices.currency == "USD")
        #expect(prices.price(of: "emails") == Quantity(exactly: "0.002"))
        #expect(prices.price(of: "t2") == Quantity(exactly: "0.03"))
        #expect(prices.price(of: "t1") == nil)
        #expect(prices.json(of: "emails") == ["currency": "USD", "perUnit": .number("0.002")])

        let numbered = try Self.decode(#"{"type":"PlanDefined","value":{"version":3,"plan":\#(Self.gold)}}"#).get()
        guard case .planDefined(let stored) = numbered.body else { return }
        #expect(stored.version == 3)
        // The validated event names the plan id, for ingest to number it in log order.
        #expect(
            ValidatedEvent(message: message, json: try JSONParser.parse(#"{"type":"PlanDefined","value":{"plan":\#(Self.gold)}}"#))
                .catalogPlanId == "gold")
    }

    @Test("a purchase or plan change whose plan gives only its planId names the catalog's plan; an inline plan stays as it was")
    func referenceByID() throws {
        let purchase = try Self.decode(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"s","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"gold"}}}}"#
        ).get()
        guard case .subscriptionPurchased(let bought) = purchase.body else {
            Issue.record("not a purchase")
            return
        }
        #expect(bought.plan.isCatalogReference && bought.plan.planId == "gold")
        let json = try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"s","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"gold"}}}}"#
        )
        #expect(ValidatedEvent(message: purchase, json: json).catalogPlanId == "gold")

        let changeJSON = try JSONParser.parse(#"{"type":"PlanChanged","value":{"resourceId":"s","plan":{"planId":"silver"}}}"#)
        let change = try Message.decode(changeJSON).get()
        #expect(ValidatedEvent(message: change, json: changeJSON).catalogPlanId == "silver")

        let inlineJSON = try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"s","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(Self.gold)}}}"#
        )
        let inline = try Message.decode(inlineJSON).get()
        #expect(ValidatedEvent(message: inline, json: inlineJSON).catalogPlanId == nil)
        guard case .subscriptionPurchased(let whole) = inline.body else { return }
        #expect(whole.plan.prices?.currency == "USD", "an inline plan may carry prices too")
    }

    @Test("prices are part of the plan's value: the same dimensions with other prices are another plan")
    func pricesInEquality() throws {
        let a = try Self.decode(#"{"type":"PlanDefined","value":{"plan":\#(Self.gold)}}"#).get()
        let b = try Self.decode(#"{"type":"PlanDefined","value":{"plan":\#(Self.gold.replacingOccurrences(of: "USD", with: "EUR"))}}"#)
            .get()
        #expect(a != b)
    }

    @Test(
        "malformed definitions, references and prices are refused with a path and a reason",
        arguments: [
            (#"{"type":"PlanDefined","value":{}}"#, "value.plan", "missing; give the plan"),
            (#"{"type":"PlanDefined","value":{"plan":{"planId":"gold"}}}"#, "value.plan.billingDimensions", "missing"),
            (
                #"{"type":"PlanDefined","value":{"plan":{"billingDimensions":{"a":{"type":"simple","dimension":"d"}}}}}"#,
                "value.plan.planId", "missing"
            ),
            (
                #"{"type":"PlanDefined","value":{"version":0,"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}}}}}"#,
                "value.version", "at least 1"
            ),
            (
                #"{"type":"PlanDefined","value":{"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}},"prices":{"perUnit":{"d":1}}}}}"#,
                "value.plan.prices.currency", "missing"
            ),
            (
                #"{"type":"PlanDefined","value":{"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}},"prices":{"currency":"dollars","perUnit":{"d":1}}}}}"#,
                "value.plan.prices.currency", "not an ISO 4217 currency code"
            ),
            (
                #"{"type":"PlanDefined","value":{"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}},"prices":{"currency":"USD"}}}}"#,
                "value.plan.prices.perUnit", "missing"
            ),
            (
                #"{"type":"PlanDefined","value":{"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}},"prices":{"currency":"USD","perUnit":{}}}}}"#,
                "value.plan.prices.perUnit", "is empty"
            ),
            (
                #"{"type":"PlanDefined","value":{"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}},"prices":{"currency":"USD","perUnit":{"a":1}}}}}"#,
                "value.plan.prices.perUnit.a", "is not a dimension of this plan"
            ),
            (
                #"{"type":"PlanDefined","value":{"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}},"prices":{"currency":"USD","perUnit":{"d":-1}}}}}"#,
                "value.plan.prices.perUnit.d", "must not be negative"
            ),
            (
                #"{"type":"PlanDefined","value":{"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}},"prices":{"currency":"USD","perUnit":{"d":"NaN"}}}}}"#,
                "value.plan.prices.perUnit.d", "not a finite quantity"
            ),
            (
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"s","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"gold","prices":{"currency":"USD","perUnit":{"d":1}}}}}}"#,
                "value.subscription.plan.prices", "the catalog's prices"
            ),
            (
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"s","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{}}}}}"#,
                "value.subscription.plan.billingDimensions", "is empty"
            ),
            (#"{"type":"PlanChanged","value":{"resourceId":"r","plan":{}}}"#, "value.plan.planId", "missing"),
        ])
    func malformed(_ text: String, path: String, words: String) throws {
        switch try Self.decode(text) {
        case .success(let message): Issue.record("accepted: \(message)")
        case .failure(let error):
            #expect(error.path == path, "\(error)")
            #expect(error.reason.contains(words), "\(error)")
        }
    }

    @Test("a catalog plan's id is at most 200 bytes")
    func longPlanID() throws {
        let id = String(repeating: "p", count: 201)
        let result = try Self.decode(
            #"{"type":"PlanDefined","value":{"plan":{"planId":"\#(id)","billingDimensions":{"a":{"type":"simple","dimension":"d"}}}}}"#)
        guard case .failure(let error) = result else {
            Issue.record("accepted")
            return
        }
        #expect(error.path == "value.plan.planId" && error.reason.contains("at most 200 bytes"))
    }
}
