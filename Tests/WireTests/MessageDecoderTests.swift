import TestFixtures
import Testing
import Wire

@Suite("Messages")
struct MessageDecoderTests {
    @Test("the repository's sample messages cover every message type and both resource names")
    func fixturesExist() throws {
        let messages = try Fixtures.internalMessages().map(\.message)
        #expect(Fixtures.files("InternalMessages").count >= 14)
        let types = Set(messages.compactMap { $0["type"]?.stringValue })
        #expect(
            types == [
                "SubscriptionPurchased", "UsageReported", "SubscriptionDeleted", "UsageSubmittedToAPI", "RemoveUnprocessedMessages", "Ping",
            ])
    }

    @Test("every message of the repository's InternalMessages samples is accepted as-is", arguments: Fixtures.files("InternalMessages"))
    func acceptsSample(path: String) throws {
        try Self.expectAccepted(path)
    }

    @Test(
        "every message of the reference's own InternalMessages samples is accepted as-is",
        .enabled(if: Fixtures.referenceDirectory != nil, reference))
    func acceptsReferenceSamples() throws {
        let files = Fixtures.files("InternalMessages", in: Fixtures.referenceDirectory ?? "")
        #expect(files.count >= 14)
        for path in files { try Self.expectAccepted(path) }
    }

    static func expectAccepted(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let messages = try Fixtures.messages(path)
        #expect(!messages.isEmpty, sourceLocation: sourceLocation)
        for message in messages {
            switch Message.decode(message) {
            case .success: break
            case .failure(let error): Issue.record("\(path): \(error)", sourceLocation: sourceLocation)
            }
        }
    }

    static func decode(_ text: String) throws -> Result<Message, MessageError> {
        Message.decode(try JSONParser.parse(text))
    }

    @Test("a purchase decodes every dimension kind, Infinite, absent and string quantities")
    func purchaseDetails() throws {
        let message = try Message.decode(Fixtures.json(Fixtures.path("InternalMessages/SubscriptionPurchased both names.json"))).get()
        guard case .subscriptionPurchased(let purchase) = message.body else {
            Issue.record("not a purchase")
            return
        }
        #expect(purchase.renewalInterval == .monthly)
        #expect(purchase.subscriptionStart.iso8601 == "2024-05-01T08:30:00Z")
        let dimensions = Dictionary(uniqueKeysWithValues: purchase.plan.billingDimensions.map { ($0.meterName, $0.dimension) })
        #expect(dimensions["api"] == .simple(dimension: "api_calls", included: .finite(Quantity(1000)), aggregation: .sum))
        #expect(dimensions["storage"] == .simple(dimension: "storage_gb", included: .infinite, aggregation: .sum))
        #expect(dimensions["support"] == .simple(dimension: "support_hours", included: .finite(.zero), aggregation: .sum))
        #expect(dimensions["export"] == .simple(dimension: "exports", included: .finite(.zero), aggregation: .sum))
        #expect(dimensions["sms"] == .simple(dimension: "sms_messages", included: .finite(Quantity(10000)), aggregation: .sum))
        #expect(purchase.plan.billingDimensions.map(\.meterName) == ["api", "storage", "support", "export", "sms"])
    }

    @Test("a waterfall purchase keeps its tiers in order, with their thresholds as band sizes")
    func waterfallPurchase() throws {
        let message = try Message.decode(Fixtures.json(Fixtures.path("InternalMessages/SubscriptionPurchased waterfall annual.json"))).get()
        guard case .subscriptionPurchased(let purchase) = message.body else {
            Issue.record("not a purchase")
            return
        }
        #expect(purchase.renewalInterval == .annually)
        #expect(purchase.resource.resourceId == nil && purchase.resource.resourceUri?.hasSuffix("contoso-analytics") == true)
        let egress = try #require(purchase.plan.billingDimensions.first { $0.meterName == "egress" })
        guard case .waterfall(let tiers) = egress.dimension else {
            Issue.record("not a waterfall: \(egress)")
            return
        }
        #expect(tiers.map(\.dimension) == ["egress_first_tb", "egress_next_9tb", "egress_next_40tb", "egress_beyond"])
        #expect(tiers.map(\.threshold) == [Quantity(1024), Quantity(9216), Quantity(40960), Quantity(102_400)])
    }

    @Test("the plan samples parse as plans")
    func planSamples() throws { try Self.expectPlans(in: Fixtures.directory) }

    @Test("the reference's own plan samples parse as plans", .enabled(if: Fixtures.referenceDirectory != nil, reference))
    func referencePlanSamples() throws { try Self.expectPlans(in: Fixtures.referenceDirectory ?? "") }

    /// Why the reference checks are skipped where its files are absent.
    static let reference = Comment(rawValue: Fixtures.referenceMissing)

    static func expectPlans(in directory: String) throws {
        let files = Fixtures.files("plans", in: directory)
        #expect(files.count >= 3)
        for path in files {
            let plan = try #require(try Fixtures.json(path)["value"]?["subscription"]?["plan"])
            let wrapped = try JSONParser.parse(
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Monthly","plan":"#
                    + JSONWriter.string(plan) + "}}}")
            #expect(throws: Never.self, "\(path)") { try Message.decode(wrapped).get() }
        }
    }

    @Test("our plan samples are whole purchases that decode as they are")
    func planPurchases() throws {
        for path in Fixtures.files("plans") { try Self.expectAccepted(path) }
    }

    @Test("the idempotency key and the aggregation extensions are read")
    func extensions() throws {
        let usage = try Self.decode(
            #"{"type":"UsageReported","id":"k-1","value":{"resourceId":"r","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":"0.5","properties":{"campaign":"spring"}}}"#
        ).get()
        #expect(usage.id == "k-1")
        guard case .usageReported(let reported) = usage.body else { return }
        #expect(reported.quantity == Quantity(exactly: "0.5"))
        #expect(reported.properties == ["campaign": "spring"])
        let purchase = try Self.decode(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"3-years","plan":{"planId":"p","billingDimensions":{"seats":{"type":"simple","dimension":"seat","included":5,"aggregation":"max"}}}}}}"#
        ).get()
        guard case .subscriptionPurchased(let bought) = purchase.body else { return }
        #expect(bought.renewalInterval == .threeYears)
        #expect(bought.plan.billingDimensions[0].dimension == .simple(dimension: "seat", included: .finite(Quantity(5)), aggregation: .max))
    }

    static let usagePrefix =
        #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":"#

    @Test(
        "invalid messages are rejected with a path and an actionable reason",
        arguments: [
            (#"{"type":"UsageReportd","value":{}}"#, "type", "unknown message type"),
            (#"{"value":{}}"#, "type", "missing"),
            (#"[1]"#, "", "must be a JSON object"),
            (
                #"{"type":"UsageReported","value":{"timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":1}}"#, "value",
                "names no resource"
            ),
            (usagePrefix + #""ten"}}"#, "value.quantity", "is not a decimal number"),
            (usagePrefix + #"-1}}"#, "value.quantity", "must not be negative"),
            (usagePrefix + #""NaN"}}"#, "value.quantity", "not a finite quantity"),
            (usagePrefix + #""Infinity"}}"#, "value.quantity", "not a finite quantity"),
            (usagePrefix + #"true}}"#, "value.quantity", "must be a number"),
            (usagePrefix + #"1e400}}"#, "value.quantity", "is out of range"),
            (
                #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"01/02/2022","meterName":"m","quantity":1}}"#,
                "value.timestamp", "is not an ISO 8601"
            ),
            (
                #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"2022-01-01T00:00:00Z","meterName":"","quantity":1}}"#,
                "value.meterName", "must not be empty"
            ),
            (
                #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":1,"properties":{"a":1}}}"#,
                "value.properties.a", "must be strings"
            ),
            (
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Weekly","plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}}}}}}"#,
                "value.subscription.renewalInterval", "unknown renewal interval"
            ),
            (
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{}}}}}"#,
                "value.subscription.plan.billingDimensions", "is empty"
            ),
            (
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"a":{"type":"tiered"}}}}}}"#,
                "value.subscription.plan.billingDimensions.a.type", "unknown dimension type"
            ),
            (
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"a":{"type":"waterfall","tiers":[]}}}}}}"#,
                "value.subscription.plan.billingDimensions.a.tiers", "non-empty array"
            ),
            (
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d","included":-3}}}}}}"#,
                "value.subscription.plan.billingDimensions.a.included", "must not be negative"
            ),
            (
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d","aggregation":"avg"}}}}}}"#,
                "value.subscription.plan.billingDimensions.a.aggregation", "unknown aggregation"
            ),
            (#"{"type":"SubscriptionDeleted","value":{"resourceId":7}}"#, "value.resourceId", "must be a string"),
            (#"{"type":"SubscriptionDeleted","id":"","value":{"resourceId":"r"}}"#, "id", "idempotency key"),
            (#"{"type":"RemoveUnprocessedMessages","value":{"partitionId":"0"}}"#, "value", "beforeIncluding"),
        ])
    func rejectsInvalid(text: String, path: String, reason: String) throws {
        switch try Self.decode(text) {
        case .success: Issue.record("accepted: \(text)")
        case .failure(let error):
            #expect(error.path == path, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
        }
    }

    @Test("the quantity, time and interval lists are all understood")
    func valueLists() throws { try Self.expectValueLists(in: Fixtures.directory) }

    @Test(
        "the reference's own quantity, time and interval lists are all understood",
        .enabled(if: Fixtures.referenceDirectory != nil, reference))
    func referenceValueLists() throws { try Self.expectValueLists(in: Fixtures.referenceDirectory ?? "") }

    static func expectValueLists(in directory: String) throws {
        let quantities = try Fixtures.json(Fixtures.path("InternalDataStructures/Quantity list.json", in: directory)).arrayValue ?? []
        #expect(quantities.count >= 5)
        for value in quantities {
            if value == .string("Infinite") { continue }
            let text: String
            switch value {
            case .number(let literal), .string(let literal): text = literal
            default: text = ""
            }
            #expect(Quantity(exactly: text) != nil, "\(value)")
        }
        let times = try Fixtures.json(Fixtures.path("InternalDataStructures/MeteringDateTime list.json", in: directory)).arrayValue ?? []
        #expect(times.count >= 2)
        for value in times { #expect(Timestamp(iso8601: value.stringValue ?? "") != nil, "\(value)") }
        let intervals = try Fixtures.json(Fixtures.path("InternalDataStructures/RenewalInterval list.json", in: directory)).arrayValue ?? []
        #expect(intervals.count >= 2)
        for value in intervals { #expect(RenewalInterval(rawValue: value.stringValue ?? "") != nil, "\(value)") }
    }

    @Test("our time list: seven fraction digits are cut to microseconds, no zone means UTC")
    func timeForms() throws {
        let times = try Fixtures.json(Fixtures.path("InternalDataStructures/MeteringDateTime list.json")).arrayValue ?? []
        let parsed = times.compactMap { $0.stringValue.flatMap(Timestamp.init(iso8601:))?.iso8601 }
        #expect(
            parsed == [
                "2024-05-14T10:41:07Z", "2024-05-14T10:41:07.250000Z", "2024-05-14T09:12:44.512093Z", "2024-05-14T03:00:00Z",
                "2024-02-29T23:59:59.500000Z",
            ])
    }

    @Test("our plan and waterfall value samples decode inside a purchase")
    func dimensionForms() throws {
        let plan = try Fixtures.json(Fixtures.path("InternalDataStructures/Plan.json"))
        var plans = [plan]
        for waterfall in try Fixtures.json(Fixtures.path("InternalDataStructures/WaterfallDimension list.json")).arrayValue ?? [] {
            plans.append(.object(JSONObject(["planId": "p", "billingDimensions": .object(JSONObject(["m": waterfall]))])))
        }
        #expect(plans.count == 3)
        for plan in plans {
            let wrapped = try JSONParser.parse(
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":"#
                    + JSONWriter.string(plan) + "}}}")
            #expect(throws: Never.self, "\(JSONWriter.string(plan))") { try Message.decode(wrapped).get() }
        }
    }
}
