import Testing
import Wire

@Suite("Messages")
struct MessageDecoderTests {
    @Test("the sample directory is there")
    func samplesExist() {
        #expect(Samples.files("InternalMessages").count >= 14)
    }

    @Test("every message of the reference's InternalMessages samples is accepted as-is", arguments: Samples.files("InternalMessages"))
    func acceptsSample(path: String) throws {
        let messages = try Samples.messages(path)
        #expect(!messages.isEmpty)
        for message in messages {
            switch Message.decode(message) {
            case .success: break
            case .failure(let error): Issue.record("\(path): \(error)")
            }
        }
    }

    static func decode(_ text: String) throws -> Result<Message, MessageError> {
        Message.decode(try JSONParser.parse(text))
    }

    @Test("a purchase decodes every dimension kind, Infinite, absent and string quantities")
    func purchaseDetails() throws {
        let path = Samples.directory + "/InternalMessages/SubscriptionPurchased.json"
        let message = try Message.decode(Samples.json(path)).get()
        guard case .subscriptionPurchased(let purchase) = message.body else {
            Issue.record("not a purchase")
            return
        }
        #expect(purchase.renewalInterval == .monthly)
        #expect(purchase.subscriptionStart.iso8601 == "2021-11-04T16:12:26Z")
        let dimensions = Dictionary(uniqueKeysWithValues: purchase.plan.billingDimensions.map { ($0.meterName, $0.dimension) })
        #expect(dimensions["nde"] == .simple(dimension: "nodecharge", included: .finite(Quantity(1000)), aggregation: .sum))
        #expect(dimensions["cpu"] == .simple(dimension: "cpucharge", included: .infinite, aggregation: .sum))
        #expect(dimensions["dta"] == .simple(dimension: "datasourcecharge", included: .finite(.zero), aggregation: .sum))
        #expect(dimensions["msg"] == .simple(dimension: "messagecharge", included: .finite(Quantity(10000)), aggregation: .sum))
        #expect(purchase.plan.billingDimensions.map(\.meterName) == ["nde", "cpu", "dta", "obj", "msg"])
    }

    @Test("the reference's plan samples parse as plans")
    func planSamples() throws {
        for path in Samples.files("plans") {
            let plan = try #require(try Samples.json(path)["value"]?["subscription"]?["plan"])
            let wrapped = try JSONParser.parse(
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"r","subscriptionStart":"2022-01-01T00:00:00Z","renewalInterval":"Monthly","plan":"#
                    + JSONWriter.string(plan) + "}}}")
            #expect(throws: Never.self, "\(path)") { try Message.decode(wrapped).get() }
        }
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

    @Test("the reference's quantity, time and interval lists are all understood")
    func referenceLists() throws {
        for value in try Samples.json(Samples.directory + "/InternalDataStructures/Quantity list.json").arrayValue ?? [] {
            if value == .string("Infinite") { continue }
            let text: String
            switch value {
            case .number(let literal), .string(let literal): text = literal
            default: text = ""
            }
            #expect(Quantity(exactly: text) != nil, "\(value)")
        }
        for value in try Samples.json(Samples.directory + "/InternalDataStructures/MeteringDateTime list.json").arrayValue ?? [] {
            #expect(Timestamp(iso8601: value.stringValue ?? "") != nil, "\(value)")
        }
        for value in try Samples.json(Samples.directory + "/InternalDataStructures/RenewalInterval list.json").arrayValue ?? [] {
            #expect(RenewalInterval(rawValue: value.stringValue ?? "") != nil, "\(value)")
        }
    }
}
