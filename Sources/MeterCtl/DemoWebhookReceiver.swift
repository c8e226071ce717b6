import Foundation
import HTTP
import Synchronization
import Wire

/// The demo's stand-in for an ISV's webhook endpoint: takes every notification meter-notifier
/// delivers (answering 200) and keeps them, so the demo can show what a receiver gets.
final class DemoWebhookReceiver: HTTPHandler, Sendable {
    private let received = Mutex([JSONValue]())

    /// The notifications received so far, in order.
    var notifications: [JSONValue] { received.withLock { $0 } }

    func handle(_ request: HTTPRequest) -> HTTPReply {
        if request.method == "POST", let json = try? JSONParser.parse(request.body) {
            received.withLock { $0.append(json) }
        }
        return .respond(HTTPResponse(status: 200))
    }

    func refused(_ status: Int, reason: String) {}

    /// One line for a notification: its type, subscription and what it says.
    static func line(_ notification: JSONValue) -> String {
        let type = notification["type"]?.stringValue ?? "?"
        let subscription = notification["subscription"]?["resourceId"]?.stringValue ?? notification["subscription"]?.stringValue ?? "?"
        switch type {
        case "usage.threshold":
            let mark =
                notification["threshold"]?["percent"].map { AggregatorCommands.text($0) + "%" }
                ?? AggregatorCommands.text(notification["threshold"]?["quantity"])
            return
                "\(type) \(subscription): \(AggregatorCommands.text(notification["meterName"])) reached \(mark) of its included quantity (\(AggregatorCommands.text(notification["consumed"])) of \(AggregatorCommands.text(notification["included"]))) in the period from \(AggregatorCommands.text(notification["period"]?["start"]))"
        case "subscription.planChanged":
            return
                "\(type) \(subscription): from \(AggregatorCommands.text(notification["previousPlanId"])) to \(AggregatorCommands.text(notification["planId"]))"
        default:
            return "\(type) \(subscription)"
        }
    }
}
