import Foundation
import Transport
public import Wire

/// A real `meter-notifier` started for a test, retrying fast.
public final class NotifierProcess: ServerProcess {
    static let fast = ["METERING_NOTIFIER_RETRY_MS": "50", "METERING_NOTIFIER_MAX_BACKOFF": "1", "METERING_NOTIFIER_TIMEOUT": "5"]

    public var socket: String { home.path + "/run/notifier.sock" }

    public init(home: StackHome, environment: [String: String] = [:]) throws {
        try super.init(
            executable: "meter-notifier", home: home, readySocket: home.path + "/run/notifier.sock",
            environment: Self.fast.merging(environment) { $1 })
    }

    public func call(_ op: String, _ fields: JSONObject = JSONObject()) throws -> JSONObject {
        try UnixClient(path: socket).call(Request(op: op, fields: fields))
    }

    /// Waits until every subscriber's backlog is 0: its cursors are durable past everything made.
    public func waitUntilDelivered(timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let subscribers = try call("subscribers")["subscribers"]?.arrayValue ?? []
            if subscribers.allSatisfy({ $0["backlog"]?.intValue == 0 }) { return }
            usleep(50_000)
        }
        throw StartFailure(message: "deliveries did not finish in \(timeout) s: \(log())")
    }
}
