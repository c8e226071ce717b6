import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

/// Plan changes, voids and late usage through the real executables: ingest (manual clock) →
/// aggregator → submitter → marketplace emulator, and the query service; the marketplace's ledger
/// is compared with one worked out by hand from docs/BILLING.md.
@Suite("Plan changes, voids and late usage end to end", .serialized)
struct ChangesEndToEndTests {
    static func message(_ text: String) throws -> JSONValue { try JSONParser.parse(text) }

    static func use(_ resource: String, _ meter: String, _ quantity: String, id: String, at timestamp: String = "2024-03-10T10:00:00Z")
        throws -> JSONValue
    {
        try message(
            #"{"type":"UsageReported","id":"\#(id)","value":{"resourceId":"\#(resource)","timestamp":"\#(timestamp)","meterName":"\#(meter)","quantity":\#(quantity)}}"#
        )
    }

    static func void(_ id: String) throws -> JSONValue {
        try message(#"{"type":"UsageVoided","value":{"ids":["\#(id)"],"reason":"end-to-end test"}}"#)
    }

    /// Waits until the aggregator has folded everything ingest has.
    static func folded(_ stack: Stack) throws { try stack.aggregator.waitUntilCaughtUp(with: stack.ingest, timeout: 60) }

    @Test(
        "a plan change mid-hour, voids before and after submission: the marketplace holds exactly the hand-computed slots, the rest is a credit netted, then refunded"
    )
    func planChangeAndVoids() throws {
        let stack = try Stack()
        try stack.startQuery()
        let basic =
            #"{"planId":"basic","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":100},"legacy":{"type":"simple","dimension":"legacy_units"}}}"#
        let pro =
            #"{"planId":"pro","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":120},"sms":{"type":"simple","dimension":"texts"}}}"#
        try stack.advance(to: "2024-03-10T10:00:00Z")
        try stack.send([
            try Self.message(
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"e2e-change","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(basic)}}}"#
            )
        ])
        try stack.advance(to: "2024-03-10T10:10:00Z")
        try stack.send([try Self.use("e2e-change", "email", "150", id: "u1")])  // 50 over basic's 100
        try stack.advance(to: "2024-03-10T10:15:00Z")
        try stack.send([try Self.use("e2e-change", "legacy", "7", id: "u-legacy")])
        try stack.advance(to: "2024-03-10T10:20:00Z")
        try stack.send([try Self.message(#"{"type":"PlanChanged","value":{"resourceId":"e2e-change","plan":\#(pro)}}"#)])
        try stack.advance(to: "2024-03-10T10:30:00Z")
        // 160 consumed under pro's 120: 160 − max(120, 150) = 10 more in the hour.
        try stack.send([try Self.use("e2e-change", "email", "10", id: "u2"), try Self.use("e2e-change", "sms", "5", id: "u3")])
        try stack.advance(to: "2024-03-10T10:40:00Z")
        try stack.send([try Self.void("u3")])  // before submission, its hour still open
        try stack.advance(to: "2024-03-10T11:00:01Z")
        try stack.advance(to: "2024-03-10T11:05:00Z")
        try stack.send([try Self.void("u2")])  // before submission, its hour closed: the pending item shrinks to 50
        try Self.folded(stack)
        #expect(
            (try stack.aggregator.client().call("pending")["items"]?.arrayValue ?? []).map {
                "\($0["dimension"]?.stringValue ?? "") \($0["quantity"].map(JSONWriter.string) ?? "") \($0["planId"]?.stringValue ?? "")"
            }.sorted() == ["emails 50 pro", "legacy_units 7 basic"])

        try stack.startSubmitter()
        let reported = try stack.waitUntilSettled(count: 2)
        #expect(reported == ["e2e-change emails 2024-03-10T10:00:00Z 50", "e2e-change legacy_units 2024-03-10T10:00:00Z 7"])
        #expect(
            try stack.ledger(plan: true) == [
                "e2e-change emails 2024-03-10T10:00:00Z 50 pro", "e2e-change legacy_units 2024-03-10T10:00:00Z 7 basic",
            ])

        try stack.advance(to: "2024-03-10T11:10:00Z")
        try stack.send([try Self.use("e2e-change", "email", "20", id: "u5")])  // 170: 20 over, in hour 11
        try stack.advance(to: "2024-03-10T11:15:00Z")
        // After submission: 150 out, 20 consumed, nothing owed; hour 11 gives back its 20, the 50 accepted are a credit.
        try stack.send([try Self.void("u1")])
        try stack.advance(to: "2024-03-10T11:30:00Z")
        try stack.send([try Self.use("e2e-change", "email", "130", id: "u6")])  // 150: 30 over, netted: 20 of credit left
        try stack.advance(to: "2024-03-10T12:00:01Z")
        try Self.folded(stack)
        let query = try #require(stack.query)
        try query.waitUntilCaughtUp(with: stack.ingest, timeout: 60)
        let rate = try query.client().call(Request(op: "runrate", fields: JSONObject(["resourceId": "e2e-change"])))
        let email = try #require(rate["meters"]?.arrayValue?.first { $0["meterName"] == "email" })
        #expect(email["consumed"] == 150 && email["voided"] == 160 && email["credit"] == 20, "\(JSONWriter.string(email))")
        #expect(rate["plans"]?.arrayValue?.map { $0["planId"] } == ["basic", "pro"])
        // The period ends: the 20 of credit left are listed for refund.
        try stack.advance(to: "2024-04-01T00:00:01Z")
        try Self.folded(stack)
        let refunds = try stack.aggregator.client().call(Request(op: "ledger", fields: JSONObject(["list": "refunds"])))
        let refund = try #require(refunds["refunds"]?.arrayValue?.first)
        #expect(
            refunds["total"] == 1 && refund["quantity"] == 20 && refund["dimension"] == "emails", "\(JSONWriter.string(.object(refunds)))")
        #expect(refund["period"]?["start"] == "2024-03-01T00:00:00Z")
        // Nothing more reached the marketplace.
        #expect(try stack.waitUntilSettled(count: 2) == reported)
        // The query service's marketplace ledger: both outcomes, the credit and the refund.
        try query.waitUntilCaughtUp(with: stack.ingest, timeout: 60)
        let records =
            try query.client().call(Request(op: "submissions", fields: JSONObject(["resourceId": "e2e-change"])))["records"]?.arrayValue
            ?? []
        #expect(
            records.map { "\($0["status"]?.stringValue ?? "") \($0["quantity"].map(JSONWriter.string) ?? "")" }.sorted() == [
                "Accepted 50", "Accepted 7", "Credited 50", "Refund 20",
            ], "\(records)")
    }

    @Test(
        "event-time attribution: usage timed before a renewal and sent after it, within the grace, is billed in the ended period's last hours"
    )
    func lateUsageAcrossRenewal() throws {
        let stack = try Stack(ingestEnvironment: ["METERING_CLOCK": "manual", "METERING_ATTRIBUTION": "event", "METERING_LATE_GRACE": "2h"])
        try stack.startSubmitter()
        let plan =
            #"{"planId":"p","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":100},"seats":{"type":"simple","dimension":"seats","included":5,"aggregation":"max"}}}"#
        try stack.advance(to: "2024-03-31T22:00:00Z")
        try stack.send([
            try Self.message(
                #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"e2e-late","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(plan)}}}"#
            ),
            try Self.use("e2e-late", "email", "90", id: "l1", at: "2024-03-31T22:00:00Z"),
            try Self.use("e2e-late", "seats", "6", id: "l2", at: "2024-03-31T22:00:00Z"),
        ])
        // The period renews at midnight; hour 23 of March stays open until 02:00, hour 22 until 01:00.
        try stack.advance(to: "2024-04-01T00:30:00Z")
        try stack.send([
            try Self.use("e2e-late", "email", "30", id: "l3", at: "2024-03-31T23:40:00Z"),  // March: 120, 20 over in hour 23
            try Self.use("e2e-late", "seats", "8", id: "l4", at: "2024-03-31T23:50:00Z"),  // March's maximum
            try Self.use("e2e-late", "email", "10", id: "l5", at: "2024-04-01T00:20:00Z"),  // April
        ])
        try stack.advance(to: "2024-04-01T00:40:00Z")
        // Its hour (21) closed at midnight: late, into the oldest open hour, 22 of March.
        try stack.send([try Self.use("e2e-late", "email", "5", id: "l6", at: "2024-03-31T21:10:00Z")])
        try stack.advance(to: "2024-04-01T01:30:00Z")
        try stack.advance(to: "2024-04-01T02:00:01Z")
        let ledger = try stack.waitUntilSettled(count: 3)
        #expect(
            ledger == [
                "e2e-late emails 2024-03-31T22:00:00Z 5", "e2e-late emails 2024-03-31T23:00:00Z 20",
                "e2e-late seats 2024-03-31T23:00:00Z 3",
            ])
        #expect(try stack.aggregatorTotal("lateUsage") == 1)
        let state = try stack.aggregator.client().call(Request(op: "state", fields: JSONObject(["resourceId": "e2e-late"])))
        #expect(state["subscription"]?["period"]?["start"] == "2024-04-01T00:00:00Z")
        #expect(state["subscription"]?["meters"]?.arrayValue?.first { $0["meterName"] == "email" }?["consumed"] == 10)
    }
}
