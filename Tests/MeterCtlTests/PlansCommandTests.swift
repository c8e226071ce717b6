import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

@Suite("meterctl plans and purchases by plan id against a real stack", .serialized)
struct PlansCommandTests {
    static let gold = """
        {"planId": "gold",
         "billingDimensions": {
           "email": {"type": "simple", "dimension": "emails", "included": 100},
           "egress": {"type": "waterfall", "tiers": [{"dimension": "egress_tier_1", "threshold": 10},
                                                     {"dimension": "egress_tier_2", "threshold": 20}]}},
         "prices": {"currency": "USD", "perUnit": {"emails": 0.02, "egress_tier_1": 0.5, "egress_tier_2": 0.25}}}
        """

    static func write(_ text: String, in stack: CommandStack, as name: String) throws -> String {
        let path = stack.home.path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(
        "plans add defines a plan and says its version (unchanged when sent again); list and show print it; a purchase by --plan-id alone gets it whole; runrate shows money"
    )
    func catalogRoundTrip() throws {
        let stack = try CommandStack()
        try stack.ok(["advance-clock", "2024-03-01T10:00:00Z"])
        let file = try Self.write(Self.gold, in: stack, as: "gold.json")
        #expect(try stack.ok(["plans", "add", file]).contains("plan gold: version 1 defined (partition 0, sequence"))
        #expect(try stack.ok(["plans", "add", file]).contains("plan gold: unchanged, version 1 is this plan"))

        let list = try stack.ok(["plans", "list"])
        #expect(list.contains("gold"), "\(list)")
        #expect(list.contains("egress, email"), "\(list)")
        #expect(
            list.contains("USD: emails 0.02, egress_tier_1 0.5, egress_tier_2 0.25") || list.contains("USD: egress_tier_1 0.5"), "\(list)")
        let show = try stack.ok(["plans", "show", "gold"])
        #expect(show.hasPrefix("plan gold version 1, defined 2024-03-01T10:00:00Z (partition 0"), "\(show)")
        let shown = try JSONParser.parse(Array(show.split(separator: "\n", maxSplits: 1)[1].utf8))
        #expect(shown["billingDimensions"]?["email"]?["included"] == .number("100"))
        let json = try JSONParser.parse(Array(try stack.ok(["plans", "list", "--json"]).utf8))
        #expect(json.arrayValue?.first?["version"]?.intValue == 1)

        #expect(try stack.ok(["status"]).contains("1 catalog plans"))
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        environment["METERING_HOME"] = stack.home.path
        let tail = try TestCommand.run(
            Binaries.path("meterctl"), ["tail", "--from-start", "--partition", "0"], environment: environment, timeout: 5)
        #expect(tail.output.contains("PlanDefined plan gold version 1 (the plan catalog)"), "\(tail.output)")

        let missing = try stack.meterctl(["plans", "show", "silver"])
        #expect(missing.status == 1)
        #expect(missing.errors.contains("no plan \"silver\" in the plan catalog"), "\(missing.errors)")

        try stack.ok(["send", "purchase", "--resource-id", "sub-1", "--plan-id", "gold", "--start", "2024-03-01T00:00:00Z"])
        let unknown = try stack.meterctl(["send", "purchase", "--resource-id", "sub-2", "--plan-id", "silver", "--no-check"])
        #expect(unknown.status == 1)
        #expect(unknown.errors.contains("no plan \"silver\" in the plan catalog"), "\(unknown.errors)")
        let purchase = try #require(try stack.events("SubscriptionPurchased").first)
        #expect(purchase["value"]?["subscription"]?["plan"]?["billingDimensions"]?["egress"]?["type"] == "waterfall")
        #expect(purchase["value"]?["subscription"]?["plan"]?["catalogVersion"]?.intValue == 1)

        try stack.ok(["send", "usage", "--resource-id", "sub-1", "--meter", "email", "--quantity", "150"])
        try stack.ok(["send", "usage", "--resource-id", "sub-1", "--meter", "egress", "--quantity", "35"])
        try stack.ok(["advance-clock", "2024-03-01T12:00:00Z"])
        try stack.caughtUp()
        let runRate = try stack.ok(["runrate", "--resource-id", "sub-1"])
        #expect(runRate.contains("at the plan's display prices"), "\(runRate)")
        #expect(runRate.contains("email: overage 50 × 0.02 = USD 1.00"), "\(runRate)")
        #expect(runRate.contains("egress: tier 1 20 × 0.5 = USD 10.00, tier 2 5 × 0.25 = USD 1.25"), "\(runRate)")
        let answer = try JSONParser.parse(Array(try stack.ok(["runrate", "--resource-id", "sub-1", "--json"]).utf8))
        let email = answer["meters"]?.arrayValue?.first { $0["meterName"] == "email" }
        #expect(email?["price"] == ["currency": "USD", "perUnit": .number("0.02")])
    }

    @Test("a new version goes to later purchases only; plan-change --plan-id moves a subscription to it; add reads standard input")
    func versions() throws {
        let stack = try CommandStack(aggregator: false)
        try stack.ok(["advance-clock", "2024-03-01T10:00:00Z"])
        _ = try stack.meterctl(["plans", "add", "-"], input: Self.gold)
        try stack.ok(["send", "purchase", "--resource-id", "early", "--plan-id", "gold", "--no-check"])
        let cheaper = Self.gold.replacingOccurrences(of: "0.02", with: "0.01")
        let added = try stack.meterctl(["plans", "add", "-"], input: cheaper)
        #expect(added.status == 0 && added.output.contains("plan gold: version 2 defined"), "\(added.errors)")
        try stack.ok(["send", "purchase", "--resource-id", "late", "--plan-id", "gold", "--no-check"])
        try stack.query?.waitUntilCaughtUp(with: stack.ingest, timeout: 60)
        func price(_ resource: String) throws -> JSONValue? {
            let answer = try JSONParser.parse(Array(try stack.ok(["runrate", "--resource-id", resource, "--json"]).utf8))
            return answer["meters"]?.arrayValue?.first { $0["meterName"] == "email" }?["price"]?["perUnit"]
        }
        #expect(try price("early") == .number("0.02"))
        #expect(try price("late") == .number("0.01"))
        try stack.ok(["send", "plan-change", "--resource-id", "early", "--plan-id", "gold", "--no-check"])
        try stack.query?.waitUntilCaughtUp(with: stack.ingest, timeout: 60)
        #expect(try price("early") == .number("0.01"))

        let bad = try stack.meterctl(
            ["plans", "add", "-"],
            input:
                #"{"planId":"x","billingDimensions":{"a":{"type":"simple","dimension":"d"}},"prices":{"currency":"USD","perUnit":{"a":1}}}"#
        )
        #expect(bad.status == 1)
        #expect(bad.errors.contains("plan x: rejected: value.plan.prices.perUnit.a"), "\(bad.errors)")
        let notAPlan = try stack.meterctl(["plans", "add", "-"], input: #"{"name":"x"}"#)
        #expect(notAPlan.status == 1 && notAPlan.errors.contains("not a plan"), "\(notAPlan.errors)")
    }
}
