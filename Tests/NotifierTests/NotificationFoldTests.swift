import Billing
import BillingTestSupport
import Testing
import Wire

@testable import Notifier

/// Folds messages in code through `NotificationFold`, numbering them like a partition's log.
struct FoldHarness {
    var fold = NotificationFold(partition: 0)
    var sequence: UInt64 = 0
    var rules: ThresholdRules

    init(_ subscribers: [Subscriber]) { rules = ThresholdRules(subscribers) }

    mutating func send(_ message: JSONValue, at time: String) -> [JSONObject] {
        guard case .success(let decoded) = Message.decode(message) else { preconditionFailure("bad message in a test") }
        defer { sequence += 1 }
        return fold.apply(BillingRecord(partition: 0, sequence: sequence, enqueuedTime: at(time), message: decoded), rules: rules)
    }
}

func subscriber(_ fields: JSONValue) throws -> Subscriber {
    var request = fields.objectValue ?? JSONObject()
    request["url"] = "http://127.0.0.1:9/hooks"
    return try Subscriber(registration: request, id: "wh_test", created: at("2024-01-01T00:00:00Z"))
}

func types(_ notifications: [JSONObject]) -> [String] { notifications.compactMap { $0["type"]?.stringValue } }

@Suite("Notifications derived from the log")
struct NotificationFoldTests {
    static let plan = Messages.purchase(
        "sub-1", start: "2024-01-15T00:00:00Z", dimensions: ["email": Messages.simple("email", included: 100)])

    @Test("a threshold fires once per period at the first usage at or above it, and fires again early in the next period")
    func thresholdsRearm() throws {
        var harness = FoldHarness([try subscriber(["events": ["usage.threshold"], "percents": [50, 80, 100]])])
        #expect(types(harness.send(Self.plan, at: "2024-01-15T01:00:00Z")) == ["subscription.purchased"])
        #expect(harness.send(Messages.usage("sub-1", "email", "40"), at: "2024-01-15T02:00:00Z").isEmpty)
        let fifty = harness.send(Messages.usage("sub-1", "email", "15"), at: "2024-01-15T03:00:00Z")
        #expect(fifty.map { $0["threshold"]?["percent"]?.intValue } == [50])
        #expect(fifty.first?["consumed"] == .number("55"))
        // 55 → 99: 80 crossed; 50 is not announced again.
        #expect(
            harness.send(Messages.usage("sub-1", "email", "44"), at: "2024-01-20T00:00:00Z").map { $0["threshold"]?["percent"]?.intValue }
                == [80])
        #expect(harness.send(Messages.usage("sub-1", "email", "0.5"), at: "2024-01-21T00:00:00Z").isEmpty)
        // One usage past two marks announces both, in the order they were asked for.
        let period0 = harness.send(Messages.usage("sub-1", "email", "500"), at: "2024-02-10T00:00:00Z")
        #expect(period0.map { $0["threshold"]?["percent"]?.intValue } == [100])
        // The renewal on 2024-02-15 comes with this very usage: its 60 count against the new period.
        let renewed = harness.send(Messages.usage("sub-1", "email", "60"), at: "2024-02-15T00:30:00Z").filter {
            $0["type"] == "usage.threshold"
        }
        #expect(renewed.map { $0["threshold"]?["percent"]?.intValue } == [50])
        #expect(renewed.first?["period"]?["start"] == .string("2024-02-15T00:00:00Z"))
        let ids = Set((fifty + period0 + renewed).compactMap { $0["id"]?.stringValue })
        #expect(ids.count == 3)
    }

    @Test("folding the same records again gives the same notifications with the same ids")
    func replayIsIdentical() throws {
        let subscribers = [try subscriber(["percents": [50, 100], "quantities": ["120"]])]
        let script: [(JSONValue, String)] = [
            (Self.plan, "2024-01-15T01:00:00Z"), (Messages.usage("sub-1", "email", "60"), "2024-01-15T02:00:00Z"),
            (Messages.usage("sub-1", "email", "70"), "2024-01-16T02:00:00Z"), (Messages.ping(), "2024-01-16T05:00:00Z"),
            (Messages.deletion("sub-1"), "2024-01-17T00:00:00Z"),
        ]
        func run() -> [JSONObject] {
            var harness = FoldHarness(subscribers)
            return script.flatMap { harness.send($0.0, at: $0.1) }
        }
        let first = run()
        #expect(first == run())
        #expect(
            types(first) == [
                "subscription.purchased", "usage.threshold", "usage.threshold", "usage.threshold", "subscription.deleted",
                // The overage of 2024-01-16T02 was never reported: 22 hours later it is at risk.
                "marketplace.atRisk",
            ])
    }

    @Test("a fold restored from its snapshot goes on exactly as the one that never stopped")
    func snapshotRoundTrip() throws {
        let subscribers = [try subscriber(["percents": [50, 80]])]
        var straight = FoldHarness(subscribers)
        var restarted = FoldHarness(subscribers)
        for harness in [0, 1] {
            _ = harness == 0 ? straight.send(Self.plan, at: "2024-01-15T01:00:00Z") : restarted.send(Self.plan, at: "2024-01-15T01:00:00Z")
            _ =
                harness == 0
                ? straight.send(Messages.usage("sub-1", "email", "60"), at: "2024-01-15T02:00:00Z")
                : restarted.send(Messages.usage("sub-1", "email", "60"), at: "2024-01-15T02:00:00Z")
        }
        restarted.fold = try NotificationFold(snapshot: JSONParser.parse(JSONWriter.bytes(restarted.fold.snapshot())))
        let tail: [(JSONValue, String)] = [
            (Messages.usage("sub-1", "email", "5"), "2024-01-15T03:00:00Z"),
            (Messages.usage("sub-1", "email", "20"), "2024-01-15T04:00:00Z"),
        ]
        let a = tail.flatMap { straight.send($0.0, at: $0.1) }
        let b = tail.flatMap { restarted.send($0.0, at: $0.1) }
        #expect(a == b)
        #expect(a.map { $0["threshold"]?["percent"]?.intValue } == [80])
    }

    @Test("rejected and conflicting outcomes are announced with the marketplace's reason, accepted ones are not")
    func outcomes() throws {
        var harness = FoldHarness([])
        _ = harness.send(
            Messages.purchase("sub-1", start: "2024-01-15T00:00:00Z", dimensions: ["email": Messages.simple("email", included: 0)]),
            at: "2024-01-15T01:00:00Z")
        _ = harness.send(Messages.usage("sub-1", "email", "5"), at: "2024-01-15T01:10:00Z")
        _ = harness.send(Messages.usage("sub-1", "email", "7"), at: "2024-01-15T02:10:00Z")
        _ = harness.send(Messages.ping(), at: "2024-01-15T03:00:00Z")
        let items = harness.fold.state.pending
        #expect(items.count == 2)
        #expect(harness.send(Messages.outcome(items[0], status: "Accepted"), at: "2024-01-15T03:01:00Z").isEmpty)
        let rejected = harness.send(
            Messages.outcome(items[1], status: "ResourceNotFound", errorMessage: "no such resource"), at: "2024-01-15T03:02:00Z")
        #expect(types(rejected) == ["marketplace.rejected"])
        #expect(rejected.first?["status"] == .string("ResourceNotFound"))
        #expect(rejected.first?["reason"]?.stringValue?.contains("no such resource") == true)
        #expect(rejected.first?["hour"] == .string("2024-01-15T02:00:00Z"))
    }

    @Test("an item still unreported 20 hours after its hour is announced at risk once; one reported in time never is")
    func atRisk() throws {
        var harness = FoldHarness([])
        _ = harness.send(
            Messages.purchase("sub-1", start: "2024-01-15T00:00:00Z", dimensions: ["email": Messages.simple("email", included: 0)]),
            at: "2024-01-15T01:00:00Z")
        _ = harness.send(Messages.usage("sub-1", "email", "5"), at: "2024-01-15T01:10:00Z")
        _ = harness.send(Messages.usage("sub-1", "email", "3"), at: "2024-01-15T02:10:00Z")
        _ = harness.send(Messages.ping(), at: "2024-01-15T03:00:00Z")
        let reported = harness.fold.state.pending[1]
        #expect(harness.send(Messages.outcome(reported, status: "Accepted"), at: "2024-01-15T04:00:00Z").isEmpty)
        #expect(harness.send(Messages.ping(), at: "2024-01-15T20:59:00Z").isEmpty)
        let risky = harness.send(Messages.ping(), at: "2024-01-15T21:00:00Z")
        #expect(types(risky) == ["marketplace.atRisk"])
        #expect(risky.first?["hour"] == .string("2024-01-15T01:00:00Z"))
        #expect(risky.first?["refusedFrom"] == .string("2024-01-16T01:00:00Z"))
        #expect(harness.send(Messages.ping(), at: "2024-01-15T23:00:00Z").isEmpty)
    }

    @Test("absolute thresholds, plan and subscription filters: a subscriber gets only what it asked for")
    func filters() throws {
        let planWatcher = try subscriber(["events": ["usage.threshold"], "quantities": ["10"], "plans": ["gold"]])
        let subWatcher = try subscriber(["events": ["usage.threshold"], "percents": [100], "subscriptions": ["sub-2"]])
        var harness = FoldHarness([planWatcher, subWatcher])
        for (name, plan) in [("sub-1", "gold"), ("sub-2", "silver")] {
            _ = harness.send(
                Messages.purchase(
                    name, start: "2024-01-15T00:00:00Z", planId: plan, dimensions: ["email": Messages.simple("email", included: 10)]),
                at: "2024-01-15T01:00:00Z")
        }
        let gold = harness.send(Messages.usage("sub-1", "email", "10"), at: "2024-01-15T02:00:00Z")
        let silver = harness.send(Messages.usage("sub-2", "email", "10"), at: "2024-01-15T02:00:00Z")
        #expect(gold.map { $0["threshold"]?["quantity"] } == [.number("10")])
        #expect(silver.map { $0["threshold"]?["percent"]?.intValue } == [100])
        #expect(planWatcher.wants(gold[0]) && !planWatcher.wants(silver[0]))
        #expect(subWatcher.wants(silver[0]) && !subWatcher.wants(gold[0]))
    }
}
