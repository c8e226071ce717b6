import Testing
import Wire

@Suite("Plan changes, voids and attribution on the wire")
struct ExtensionMessageTests {
    static func decode(_ text: String) throws -> Result<Message, MessageError> { Message.decode(try JSONParser.parse(text)) }

    @Test("PlanChanged names the subscription either way and carries a plan in the purchase's form")
    func planChanged() throws {
        let message = try Self.decode(
            #"{"type":"PlanChanged","id":"change-1","value":{"resourceUri":"/subscriptions/x/apps/a","plan":{"planId":"pro","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":"Infinite"},"gb":{"type":"waterfall","tiers":[{"dimension":"t1","threshold":10}]}}}}}"#
        ).get()
        guard case .planChanged(let change) = message.body else {
            Issue.record("not a plan change")
            return
        }
        #expect(message.id == "change-1" && message.type == .planChanged && message.type.isClientMessage)
        #expect(change.resource == ResourceName(resourceUri: "/subscriptions/x/apps/a"))
        #expect(message.resource == change.resource)
        #expect(change.plan.planId == "pro")
        #expect(change.plan.billingDimensions.map(\.meterName) == ["email", "gb"])
    }

    @Test("a client's UsageVoided names ids and a reason; the record ingest writes carries the voided usage")
    func usageVoided() throws {
        let client = try Self.decode(#"{"type":"UsageVoided","value":{"ids":["u-1","u-2"],"reason":"sent twice"}}"#).get()
        guard case .usageVoided(let void) = client.body else {
            Issue.record("not a void")
            return
        }
        #expect(void.ids == ["u-1", "u-2"] && void.reason == "sent twice" && void.voided == nil)
        #expect(client.resource == nil && client.type.isClientMessage)

        let record = try Self.decode(
            #"{"type":"UsageVoided","value":{"ids":["u-1"],"voided":{"sequence":12,"enqueuedTime":"2024-01-01T10:00:00Z","event":{"type":"UsageReported","id":"u-1","value":{"resourceId":"r","timestamp":"2024-01-01T09:59:00Z","meterName":"m","quantity":2.5}}}}}"#
        ).get()
        guard case .usageVoided(let written) = record.body, let voided = written.voided else {
            Issue.record("no voided usage")
            return
        }
        #expect(voided.sequence == 12 && voided.enqueuedTime == Timestamp(iso8601: "2024-01-01T10:00:00Z"))
        #expect(voided.usage.quantity == Quantity(exactly: "2.5") && voided.usage.meterName == "m")
        // In the log a void is about the subscription of its usage: its partition, the audit trail.
        #expect(record.resource == ResourceName(resourceId: "r"))
    }

    @Test(
        "malformed plan changes and voids are refused with a path and a reason",
        arguments: [
            (#"{"type":"PlanChanged","value":{"resourceId":"r"}}"#, "value.plan", "missing"),
            (
                #"{"type":"PlanChanged","value":{"plan":{"planId":"p","billingDimensions":{"a":{"type":"simple","dimension":"d"}}}}}"#,
                "value", "names no resource"
            ),
            (
                #"{"type":"PlanChanged","value":{"resourceId":"r","plan":{"planId":"p","billingDimensions":{}}}}"#,
                "value.plan.billingDimensions", "is empty"
            ),
            (#"{"type":"UsageVoided","value":{}}"#, "value.ids", "missing"),
            (#"{"type":"UsageVoided","value":{"ids":[]}}"#, "value.ids", "1 to 100"),
            (#"{"type":"UsageVoided","value":{"ids":"u-1"}}"#, "value.ids", "an array"),
            (#"{"type":"UsageVoided","value":{"ids":["u-1",""]}}"#, "value.ids[1]", "non-empty string"),
            (#"{"type":"UsageVoided","value":{"ids":["u-1","u-1"]}}"#, "value.ids[1]", "named twice"),
            (#"{"type":"UsageVoided","value":{"ids":["u-1"],"reason":7}}"#, "value.reason", "a string"),
            (
                #"{"type":"UsageVoided","value":{"ids":["u-1","u-2"],"voided":{"sequence":1,"enqueuedTime":"2024-01-01T00:00:00Z","event":{}}}}"#,
                "value.voided", "one id"
            ),
            (
                #"{"type":"UsageVoided","value":{"ids":["u-1"],"voided":{"sequence":1,"enqueuedTime":"2024-01-01T00:00:00Z","event":{"type":"SubscriptionDeleted","id":"u-1","value":{"resourceId":"r"}}}}}"#,
                "value.voided.event", "must be the UsageReported"
            ),
            (#"{"type":"Ping","value":{"partitionId":"0","attribution":"clock"}}"#, "value.attribution", "unknown attribution"),
            (#"{"type":"Ping","value":{"partitionId":"0","attribution":"event"}}"#, "value.lateGraceSeconds", "whole seconds"),
            (
                #"{"type":"Ping","value":{"partitionId":"0","attribution":"event","lateGraceSeconds":86400}}"#, "value.lateGraceSeconds",
                "0 to 21600"
            ),
        ])
    func rejectsInvalid(text: String, path: String, reason: String) throws {
        switch try Self.decode(text) {
        case .success: Issue.record("accepted: \(text)")
        case .failure(let error):
            #expect(error.path == path, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
        }
    }

    @Test("a tick names its attribution; one without it changes nothing")
    func tickAttribution() throws {
        let event = try Self.decode(#"{"type":"Ping","value":{"partitionId":"1","attribution":"event","lateGraceSeconds":7200}}"#).get()
        let enqueued = try Self.decode(#"{"type":"Ping","value":{"partitionId":"1","attribution":"enqueued"}}"#).get()
        let plain = try Self.decode(#"{"type":"Ping","value":{"partitionId":"1"}}"#).get()
        func attribution(_ message: Message) -> Attribution?? {
            guard case .ping(let ping) = message.body else { return nil }
            return .some(ping.attribution)
        }
        #expect(attribution(event) == .some(.event(lateGrace: 7_200_000_000)))
        #expect(attribution(enqueued) == .some(.enqueued))
        #expect(attribution(plain) == .some(nil))
    }

    @Test(
        "event-time attribution: an hour closes at its end plus the grace; a closed hour's usage goes to the oldest open one; the future counts now"
    )
    func place() throws {
        let grace = Attribution.event(lateGrace: 2 * Timestamp.microsecondsPerHour)
        let now = try #require(Timestamp(iso8601: "2024-03-01T12:30:00Z"))
        func time(_ text: String) -> Timestamp { Timestamp(iso8601: text)! }
        #expect(grace.oldestOpenHour(at: now) == time("2024-03-01T10:00:00Z"))
        #expect(grace.closing(ofHour: time("2024-03-01T10:00:00Z")) == time("2024-03-01T13:00:00Z"))
        #expect(grace.place(timestamp: time("2024-03-01T10:59:59Z"), enqueued: now) == (time("2024-03-01T10:59:59Z"), false))
        #expect(grace.place(timestamp: time("2024-03-01T09:59:59Z"), enqueued: now) == (time("2024-03-01T10:00:00Z"), true))
        #expect(grace.place(timestamp: time("2024-03-01T12:31:00Z"), enqueued: now) == (now, false))
        #expect(Attribution.enqueued.place(timestamp: time("2020-01-01T00:00:00Z"), enqueued: now) == (now, false))
        #expect(Attribution.enqueued.oldestOpenHour(at: now) == time("2024-03-01T12:00:00Z"))
        #expect(Attribution.parseDuration("7200") == 7_200_000_000 && Attribution.parseDuration("90m") == 5_400_000_000)
        #expect(Attribution.parseDuration("2h") == 7_200_000_000 && Attribution.parseDuration("15s") == 15_000_000)
        #expect(
            Attribution.parseDuration("-1h") == nil && Attribution.parseDuration("h") == nil && Attribution.parseDuration("1.5h") == nil)
    }
}
