import Foundation
import Synchronization
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Latencies in seconds, for percentiles.
struct Latencies {
    private(set) var values: [Double] = []

    mutating func add(_ seconds: Double) { values.append(seconds) }

    var count: Int { values.count }

    /// The `fraction` percentile (0.99: p99), 0 when empty.
    func percentile(_ fraction: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)]
    }

    var summary: String {
        String(
            format: "%d calls, p50 %.1f ms, p99 %.1f ms, max %.1f ms", count, percentile(0.5) * 1000, percentile(0.99) * 1000,
            (values.max() ?? 0) * 1000)
    }
}

/// The well-behaved client: appends usage with idempotency ids on ingest's client socket, as an
/// application would, retrying a failed call with the same ids, and records every id that was
/// acknowledged (accepted, or duplicate of an earlier accepted attempt).
final class GoodAppender: Sendable {
    static let resource = "soak-subscription"
    private let socket: String
    private let state = Mutex(State())
    private let finished = DispatchSemaphore(value: 0)

    private struct State {
        var running = true
        var acknowledged: Set<String> = []
        var latencies = Latencies()
        var failedCalls = 0
        var rejected: [String] = []
        var lastAcknowledgement = Date()
        var longestWait = 0.0
    }

    init(socket: String) {
        self.socket = socket
        let thread = Thread { [self] in run() }
        thread.name = "good-appender"
        thread.start()
    }

    private func run() {
        var client: UnixClient?
        var next = 0
        let purchase = try? JSONParser.parse(
            Array(
                #"{"type":"SubscriptionPurchased","id":"soak-purchase","value":{"subscription":{"resourceId":"\#(Self.resource)","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"soak","billingDimensions":{"cpu":{"type":"simple","dimension":"cpu","included":100}}}}}}"#
                    .utf8))
        var batch: [JSONValue] = purchase.map { [$0] } ?? []
        while state.withLock({ $0.running }) {
            if batch.isEmpty {
                batch = (next..<next + 3).map { Self.usage(id: "good-\($0)") }
                next += 3
            }
            let started = Date()
            do {
                if client == nil {
                    client = try UnixClient(path: socket)
                    client?.setReceiveTimeout(seconds: 30)
                }
                let response = try client!.call(Request(op: "append", fields: JSONObject(["events": .array(batch)])))
                let results = response["results"]?.arrayValue ?? []
                let now = Date()
                state.withLock { state in
                    state.latencies.add(now.timeIntervalSince(started))
                    for (event, result) in zip(batch, results) {
                        guard let id = event["id"]?.stringValue else { continue }
                        switch result["status"]?.stringValue {
                        case "accepted", "duplicate": state.acknowledged.insert(id)
                        default: state.rejected.append("\(id): \(JSONWriter.string(result))")
                        }
                    }
                    state.longestWait = max(state.longestWait, now.timeIntervalSince(state.lastAcknowledgement))
                    state.lastAcknowledgement = now
                }
                batch = []
                usleep(10_000)
            } catch {
                // Unknown whether it was recorded: try again with the same ids.
                client = nil
                state.withLock { $0.failedCalls += 1 }
                usleep(50_000)
            }
        }
        finished.signal()
    }

    static func usage(id: String) -> JSONValue {
        .object(
            JSONObject([
                .init("type", "UsageReported"), .init("id", .string(id)),
                .init(
                    "value",
                    [
                        "resourceId": .string(resource), "timestamp": "2024-01-01T00:00:00Z", "meterName": "cpu", "quantity": "1.5",
                    ]),
            ]))
    }

    func stop() {
        state.withLock { $0.running = false }
        finished.wait()
    }

    /// The ids acknowledged, the latencies, failed calls, rejections, and the longest time
    /// without an acknowledgement (seconds).
    var outcome: (acknowledged: Set<String>, latencies: Latencies, failedCalls: Int, rejected: [String], longestWait: Double) {
        state.withLock { state in
            (
                state.acknowledged, state.latencies, state.failedCalls, state.rejected,
                max(state.longestWait, Date().timeIntervalSince(state.lastAcknowledgement))
            )
        }
    }
}

/// Well-behaved HTTP clients: a `GET` of each health endpoint in turn, a few a second.
final class GoodPoller: Sendable {
    private let targets: [(port: Int, path: String)]
    private let state = Mutex(State())
    private let finished = DispatchSemaphore(value: 0)

    private struct State {
        var running = true
        var latencies = Latencies()
        var failures: [String] = []
    }

    init(_ targets: [(port: Int, path: String)]) {
        self.targets = targets
        let thread = Thread { [self] in run() }
        thread.name = "good-poller"
        thread.start()
    }

    private func run() {
        var turn = 0
        while state.withLock({ $0.running }) {
            let target = targets[turn % targets.count]
            turn += 1
            let (status, seconds) = HTTPProbe.get(port: target.port, path: target.path, within: 10)
            state.withLock { state in
                state.latencies.add(seconds)
                if status != 200 {
                    state.failures.append(
                        String(format: "GET %@ on port %d: status %d after %.1f s", target.path, target.port, status, seconds))
                }
            }
            usleep(250_000)
        }
        finished.signal()
    }

    func stop() {
        state.withLock { $0.running = false }
        finished.wait()
    }

    var outcome: (latencies: Latencies, failures: [String]) { state.withLock { ($0.latencies, $0.failures) } }
}
