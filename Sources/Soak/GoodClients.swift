import Foundation
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
final class GoodAppender: @unchecked Sendable {
    static let resource = "soak-subscription"
    private let socket: String
    private let lock = NSLock()
    private var running = true
    private let finished = DispatchSemaphore(value: 0)
    // Guarded by `lock`.
    private var acknowledged: Set<String> = []
    private var latencies = Latencies()
    private var failedCalls = 0
    private var rejected: [String] = []
    private var lastAcknowledgement = Date()
    private var longestWait = 0.0

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
        while lock.withLock({ running }) {
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
                lock.withLock {
                    latencies.add(now.timeIntervalSince(started))
                    for (event, result) in zip(batch, results) {
                        guard let id = event["id"]?.stringValue else { continue }
                        switch result["status"]?.stringValue {
                        case "accepted", "duplicate": acknowledged.insert(id)
                        default: rejected.append("\(id): \(JSONWriter.string(result))")
                        }
                    }
                    longestWait = max(longestWait, now.timeIntervalSince(lastAcknowledgement))
                    lastAcknowledgement = now
                }
                batch = []
                usleep(10_000)
            } catch {
                // Unknown whether it was recorded: try again with the same ids.
                client = nil
                lock.withLock { failedCalls += 1 }
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
        lock.withLock { running = false }
        finished.wait()
    }

    /// The ids acknowledged, the latencies, failed calls, rejections, and the longest time
    /// without an acknowledgement (seconds).
    var outcome: (acknowledged: Set<String>, latencies: Latencies, failedCalls: Int, rejected: [String], longestWait: Double) {
        lock.withLock {
            (acknowledged, latencies, failedCalls, rejected, max(longestWait, Date().timeIntervalSince(lastAcknowledgement)))
        }
    }
}

/// Well-behaved HTTP clients: a `GET` of each health endpoint in turn, a few a second.
final class GoodPoller: @unchecked Sendable {
    private let targets: [(port: Int, path: String)]
    private let lock = NSLock()
    private var running = true
    private let finished = DispatchSemaphore(value: 0)
    private var latencies = Latencies()
    private var failures: [String] = []

    init(_ targets: [(port: Int, path: String)]) {
        self.targets = targets
        let thread = Thread { [self] in run() }
        thread.name = "good-poller"
        thread.start()
    }

    private func run() {
        var turn = 0
        while lock.withLock({ running }) {
            let target = targets[turn % targets.count]
            turn += 1
            let (status, seconds) = HTTPProbe.get(port: target.port, path: target.path, within: 10)
            lock.withLock {
                latencies.add(seconds)
                if status != 200 {
                    failures.append(String(format: "GET %@ on port %d: status %d after %.1f s", target.path, target.port, status, seconds))
                }
            }
            usleep(250_000)
        }
        finished.signal()
    }

    func stop() {
        lock.withLock { running = false }
        finished.wait()
    }

    var outcome: (latencies: Latencies, failures: [String]) { lock.withLock { (latencies, failures) } }
}
