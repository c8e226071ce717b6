import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

@testable import Notifier

func meterctl(_ home: StackHome, _ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
    var environment = ProcessInfo.processInfo.environment
    environment["METERING_HOME"] = home.path
    return try runToEnd("meterctl", arguments, environment: environment)
}

func purchase(_ id: String, included: Int, start: String = "2024-01-15T00:00:00Z") -> JSONValue {
    [
        "type": "SubscriptionPurchased",
        "value": [
            "subscription": [
                "resourceId": .string(id), "subscriptionStart": .string(start), "renewalInterval": "Monthly",
                "plan": [
                    "planId": "basic",
                    "billingDimensions": ["email": ["type": "simple", "dimension": "email", "included": .number(String(included))]],
                ],
            ]
        ],
    ]
}

func append(_ ingest: IngestProcess, _ events: [JSONValue]) throws {
    let response = try ingest.client().call(appendRequest(events))
    for result in response["results"]?.arrayValue ?? [] { #expect(result["status"] == "accepted") }
}

@Suite("meter-notifier with real processes", .serialized)
struct NotifierIntegrationTests {
    @Test("a receiver that fails and restarts gets every notification, signed, de-duplicated by id, in order per subscription")
    func failingReceiver() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "3"])
        var notifier = try NotifierProcess(home: home)
        let secretFile = home.path + "/secret"
        try "whsec_a-test-secret-of-enough-length".write(toFile: secretFile, atomically: true, encoding: .utf8)
        let receiver = try WebhookReceiver(port: try LoopbackPort.reusable(), secret: "whsec_a-test-secret-of-enough-length")
        let added = try meterctl(
            home,
            [
                "notifications", "add", "--url", receiver.url, "--secret-file", secretFile, "--percent", "10,20,30,40,50,60,70,80,90,100",
                "--events", "subscription.purchased,usage.threshold",
            ])
        #expect(added.status == 0, "\(added.errors)")
        #expect(!added.output.contains("whsec_"), "a secret given in a file is never printed")

        let subscriptions = (1...6).map { "sub-\($0)" }
        try append(ingest, subscriptions.map { purchase($0, included: 100) })
        // Ten rounds of 10% each; the receiver fails, goes away, comes back; the notifier is killed once.
        for round in 1...10 {
            switch round {
            case 3: receiver.fail(true)
            case 4: receiver.stop()
            case 6:
                try receiver.start()
                receiver.fail(false)
            case 7:
                notifier.kill(SIGKILL)
                notifier = try NotifierProcess(home: home)
            case 8: receiver.fail(true)
            case 9: receiver.fail(false)
            default: break
            }
            try append(ingest, subscriptions.map { usage($0, "10", meter: "email") })
            usleep(100_000)
        }
        let expected = subscriptions.count * 11
        #expect(receiver.wait { $0.count >= expected }, "\(receiver.unique.count) of \(expected): \(notifier.log())")
        let unique = receiver.unique
        #expect(unique.count == expected)
        // The receiver did refuse some attempts after the restart of round 7: they were retried.
        let failures = try notifier.call("subscribers")["subscribers"]?.arrayValue?.first?["failures"]?.intValue ?? 0
        #expect(failures > 0)
        #expect(receiver.deliveries.allSatisfy { $0.signed })
        for subscription in subscriptions {
            let mine = unique.filter { $0.body["subscription"]?["resourceId"]?.stringValue == subscription }
            let sequence = mine.map { $0.body["threshold"]?["percent"]?.intValue ?? 0 }
            #expect(sequence == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100], "\(subscription) received \(sequence)")
        }
        _ = ingest
    }

    @Test("thresholds fire once per billing period across restarts of the notifier, and again after the renewal")
    func thresholdsAcrossRestarts() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "2"])
        var notifier = try NotifierProcess(home: home)
        let receiver = try WebhookReceiver(port: try LoopbackPort.reusable(), secret: "whsec_another-test-secret")
        try "whsec_another-test-secret".write(toFile: home.path + "/secret", atomically: true, encoding: .utf8)
        let added = try meterctl(
            home,
            [
                "notifications", "add", "--url", receiver.url, "--secret-file", home.path + "/secret", "--percent", "50,100",
                "--subscription", "sub-1",
            ])
        #expect(added.status == 0, "\(added.errors)")
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-01-15T01:00:00Z"])))
        try append(ingest, [purchase("sub-1", included: 100), purchase("sub-2", included: 100)])
        try append(ingest, [usage("sub-1", "60", meter: "email"), usage("sub-2", "100", meter: "email")])
        #expect(receiver.wait { $0.count == 1 })
        try notifier.waitUntilDelivered()

        notifier.kill(SIGTERM)
        notifier = try NotifierProcess(home: home)
        try append(ingest, [usage("sub-1", "1", meter: "email")])
        notifier.kill(SIGKILL)
        notifier = try NotifierProcess(home: home)
        try append(ingest, [usage("sub-1", "39", meter: "email")])
        #expect(receiver.wait { $0.count == 2 })
        try notifier.waitUntilDelivered()
        notifier.kill(SIGKILL)
        // The snapshot is older than what was folded: the notifier folds those records again.
        notifier = try NotifierProcess(home: home, environment: ["METERING_NOTIFIER_SNAPSHOT_RECORDS": "1000000"])

        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-02-15T01:00:00Z"])))
        try append(ingest, [usage("sub-1", "70", meter: "email")])
        #expect(receiver.wait { $0.count == 3 })
        try notifier.waitUntilDelivered()
        usleep(500_000)
        let thresholds = receiver.deliveries.map {
            ($0.body["period"]?["start"]?.stringValue ?? "", $0.body["threshold"]?["percent"]?.intValue ?? 0)
        }
        #expect(thresholds.map { "\($0.0) \($0.1)" } == ["2024-01-15T00:00:00Z 50", "2024-01-15T00:00:00Z 100", "2024-02-15T00:00:00Z 50"])
        #expect(receiver.deliveries.allSatisfy { $0.body["subscription"]?["resourceId"] == "sub-1" })
        _ = ingest
    }

    @Test("after the last attempt a notification is a dead letter, listed by meterctl and delivered again on retry")
    func deadLetters() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "1"])
        let notifier = try NotifierProcess(home: home, environment: ["METERING_NOTIFIER_ATTEMPTS": "2"])
        let port = try LoopbackPort.reusable()
        let added = try meterctl(
            home, ["notifications", "add", "--url", "http://127.0.0.1:\(port)/hooks", "--events", "subscription.purchased", "--json"])
        #expect(added.status == 0, "\(added.errors)")
        let registration = try JSONParser.parse(Array(added.output.utf8))
        let id = try #require(registration["subscriber"]?["id"]?.stringValue)
        let secret = try #require(registration["subscriber"]?["secret"]?.stringValue)
        try append(ingest, [purchase("sub-1", included: 5), purchase("sub-2", included: 5)])
        let deadline = Date().addingTimeInterval(60)
        var listed = ""
        while Date() < deadline {
            listed = try meterctl(home, ["notifications", "dead-letters", id]).output
            if listed.contains("2 dead letters") { break }
            usleep(100_000)
        }
        #expect(listed.contains("2 dead letters"), "\(listed) \(notifier.log())")
        #expect(listed.contains("subscription.purchased"))
        let receiver = try WebhookReceiver(port: port, secret: secret)
        let retried = try meterctl(home, ["notifications", "retry", id])
        #expect(retried.output.contains("retrying 2"), "\(retried.output) \(retried.errors)")
        #expect(receiver.wait { $0.count == 2 })
        #expect(receiver.deliveries.allSatisfy { $0.signed })
        #expect(
            receiver.wait { _ in
                let listed = try? meterctl(home, ["notifications", "dead-letters", id])
                return listed?.output.contains("0 dead letters") == true
            })
        let removed = try meterctl(home, ["notifications", "remove", id])
        #expect(removed.status == 0)
        let list = try meterctl(home, ["notifications", "list"])
        #expect(list.output.contains("0 subscribers"))
        _ = ingest
    }
}
