import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

@Suite("meter-ingest: the plan catalog")
struct PlanCatalogTests {
    static let gold =
        #"{"planId":"gold","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":100}},"prices":{"currency":"USD","perUnit":{"emails":0.02}}}"#
    static let goldV2 =
        #"{"planId":"gold","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":500}},"prices":{"currency":"USD","perUnit":{"emails":0.01}}}"#

    static func define(_ plan: String, id: String? = nil) throws -> JSONValue {
        try JSONParser.parse(#"{"type":"PlanDefined",\#(id.map { #""id":"\#($0)","# } ?? "")"value":{"plan":\#(plan)}}"#)
    }

    static func purchase(_ resource: String, plan: String = #"{"planId":"gold"}"#, id: String? = nil) throws -> JSONValue {
        try JSONParser.parse(
            #"{\#(id.map { #""id":"\#($0)","# } ?? "")"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(resource)","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(plan)}}}"#
        )
    }

    static func results(_ client: UnixClient, _ events: [JSONValue]) throws -> [JSONValue] {
        try client.call(appendRequest(events))["results"]?.arrayValue ?? []
    }

    static func record(_ client: UnixClient, _ result: JSONValue) throws -> JSONValue {
        let partition = try #require(result["partition"]?.intValue)
        let sequence = try #require(result["sequence"]?.intValue)
        let answer = try client.call(
            Request(op: "read", fields: JSONObject(["partition": .number(String(partition)), "from": .number(String(sequence)), "max": 1])))
        return try #require(answer["records"]?.arrayValue?.first)
    }

    @Test(
        "a purchase naming a catalog plan is stored with the plan whole (prices and version included), even when defined in the same append; an unknown id is refused by name"
    )
    func purchaseByID() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_CLOCK": "manual"])
        let client = try ingest.client()
        let results = try Self.results(
            client, [try Self.define(Self.gold), try Self.purchase("sub-1"), try Self.purchase("sub-2", plan: #"{"planId":"silver"}"#)])
        #expect(results.map { $0["status"]?.stringValue } == ["accepted", "accepted", "rejected"], "\(results)")
        #expect(results[0]["partition"]?.intValue == 0)
        let message = results[2]["error"]?["message"]?.stringValue ?? ""
        #expect(results[2]["error"]?["code"] == "invalid_event")
        #expect(message.contains("value.subscription.plan.planId: no plan \"silver\" in the plan catalog"), "\(message)")

        let definition = try Self.record(client, results[0])
        #expect(definition["event"]?["value"]?["version"]?.intValue == 1)
        let stored = try Self.record(client, results[1])
        let plan = try #require(stored["event"]?["value"]?["subscription"]?["plan"])
        #expect(plan["billingDimensions"]?["email"]?["included"] == .number("100"))
        #expect(plan["prices"]?["perUnit"]?["emails"] == .number("0.02"))
        #expect(plan["catalogVersion"]?.intValue == 1)
        // The stored record is a purchase in the reference's format: it decodes with a whole plan.
        guard case .success(let decoded) = Message.decode(try #require(stored["event"])),
            case .subscriptionPurchased(let purchase) = decoded.body
        else {
            Issue.record("the stored purchase does not decode: \(stored)")
            return
        }
        #expect(!purchase.plan.isCatalogReference)
        #expect(purchase.plan.prices?.price(of: "emails") == Quantity(exactly: "0.02"))

        let change = try Self.results(
            client, [try JSONParser.parse(#"{"type":"PlanChanged","value":{"resourceId":"sub-1","plan":{"planId":"bronze"}}}"#)])
        #expect(
            change.first?["error"]?["message"]?.stringValue?.contains("value.plan.planId: no plan \"bronze\" in the plan catalog") == true,
            "\(change)")

        let listed = try client.call(Request(op: "plans"))["plans"]?.arrayValue ?? []
        #expect(listed.count == 1)
        #expect(listed.first?["planId"] == "gold")
        #expect(listed.first?["version"]?.intValue == 1)
        #expect(listed.first?["plan"]?["prices"]?["currency"] == "USD")
        #expect(throws: UnixClient.Failure.self) { try client.call(Request(op: "plans", fields: JSONObject(["planId": "silver"]))) }
    }

    @Test(
        "the same plan again is a duplicate of its version; a different plan under the id is the next version, which later purchases get, while a resend of an earlier purchase stays a duplicate"
    )
    func redefinition() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_CLOCK": "manual"])
        let client = try ingest.client()
        let first = try Self.results(client, [try Self.define(Self.gold), try Self.purchase("sub-1", id: "buy-1")])
        #expect(first.map { $0["status"]?.stringValue } == ["accepted", "accepted"])
        // Written differently (member order, number spelling), it is still the same plan.
        let same = try Self.results(
            client,
            [
                try Self.define(
                    #"{"prices":{"perUnit":{"emails":2e-2},"currency":"USD"},"planId":"gold","billingDimensions":{"email":{"included":100.0,"type":"simple","dimension":"emails"}}}"#
                )
            ])
        #expect(same.first?["status"] == "duplicate", "\(same)")
        #expect(same.first?["sequence"] == first[0]["sequence"])

        let second = try Self.results(client, [try Self.define(Self.goldV2), try Self.purchase("sub-2")])
        #expect(second.map { $0["status"]?.stringValue } == ["accepted", "accepted"])
        #expect(try Self.record(client, second[0])["event"]?["value"]?["version"]?.intValue == 2)
        let later = try Self.record(client, second[1])["event"]?["value"]?["subscription"]?["plan"]
        #expect(later?["billingDimensions"]?["email"]?["included"] == .number("500"))
        #expect(later?["catalogVersion"]?.intValue == 2)
        let earlier = try Self.record(client, first[1])["event"]?["value"]?["subscription"]?["plan"]
        #expect(earlier?["catalogVersion"]?.intValue == 1, "a purchase keeps the version it bought")

        let resend = try Self.results(client, [try Self.purchase("sub-1", id: "buy-1")])
        #expect(resend.first?["status"] == "duplicate", "\(resend)")
        #expect(try client.call(Request(op: "plans"))["plans"]?.arrayValue?.first?["version"]?.intValue == 2)
    }

    @Test("the catalog survives a kill -9, from the tail segment and from sealed segments' summaries, in log order")
    func survivesRestart() throws {
        let home = StackHome()
        let environment = ["METERING_CLOCK": "manual", "METERING_SEGMENT_BYTES": String(64 << 10)]
        var ingest = try IngestProcess(home: home, environment: environment)
        var client = try ingest.client()
        let silver = #"{"planId":"silver","billingDimensions":{"cpu":{"type":"simple","dimension":"cpu"}}}"#
        #expect(
            try Self.results(client, [try Self.define(Self.gold), try Self.define(silver)]).map { $0["status"] } == [
                "accepted", "accepted",
            ])
        // Enough traffic to seal the segment holding the first definition.
        let padding = String(repeating: "x", count: 2000)
        for batch in 0..<8 {
            let events = (0..<10).map { index -> JSONValue in
                var event = usage("sub-\(batch)-\(index)", "1").objectValue!
                var value = event["value"]!.objectValue!
                value["properties"] = .object(JSONObject(["pad": .string(padding)]))
                event["value"] = .object(value)
                return .object(event)
            }
            _ = try Self.results(client, events)
        }
        let segments = try FileManager.default.contentsOfDirectory(atPath: home.path + "/data/log/wal").filter { $0.hasSuffix(".idx") }
        #expect(!segments.isEmpty, "a segment was sealed with its summary")
        #expect(try Self.results(client, [try Self.define(Self.goldV2)]).first?["status"] == "accepted")

        ingest.kill(SIGKILL)
        ingest = try IngestProcess(home: home, environment: environment)
        client = try ingest.client()
        let listed = try client.call(Request(op: "plans"))["plans"]?.arrayValue ?? []
        // Silver is only in the sealed segment: its summary must have pointed at it.
        #expect(listed.map { $0["planId"]?.stringValue } == ["gold", "silver"])
        #expect(listed.first?["version"]?.intValue == 2)
        #expect(ingest.log().contains("2 catalog plans"), "\(ingest.log())")
        #expect(try client.call(Request(op: "status"))["catalogPlans"]?.intValue == 2)
        let again = try Self.results(client, [try Self.define(Self.goldV2), try Self.purchase("sub-9")])
        #expect(again.first?["status"] == "duplicate", "\(again)")
        let plan = try Self.record(client, again[1])["event"]?["value"]?["subscription"]?["plan"]
        #expect(plan?["catalogVersion"]?.intValue == 2)

        // And once more with every segment summarized: a clean stop seals nothing new, the summaries stay.
        ingest.kill(SIGTERM)
        ingest = try IngestProcess(home: home, environment: environment)
        #expect(try ingest.client().call(Request(op: "plans"))["plans"]?.arrayValue?.count == 2)
    }

    @Test("a plan definition that is not a whole plan, or prices that do not fit the plan, are refused with the path and the reason")
    func badDefinitions() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_CLOCK": "manual"])
        let client = try ingest.client()
        let cases: [(String, String)] = [
            (#"{"planId":"gold"}"#, "value.plan.billingDimensions: missing"),
            (
                #"{"planId":"gold","billingDimensions":{"email":{"type":"simple","dimension":"emails"}},"prices":{"currency":"usd","perUnit":{"emails":1}}}"#,
                "value.plan.prices.currency: \"usd\" is not an ISO 4217 currency code"
            ),
            (
                #"{"planId":"gold","billingDimensions":{"email":{"type":"simple","dimension":"emails"}},"prices":{"currency":"USD","perUnit":{"email":1}}}"#,
                "value.plan.prices.perUnit.email: \"email\" is not a dimension of this plan"
            ),
        ]
        for (plan, words) in cases {
            let result = try Self.results(client, [try Self.define(plan)]).first
            #expect(result?["status"] == "rejected")
            #expect(result?["error"]?["message"]?.stringValue?.contains(words) == true, "\(String(describing: result))")
        }
        #expect(try client.call(Request(op: "plans"))["plans"]?.arrayValue?.isEmpty == true)
    }
}
