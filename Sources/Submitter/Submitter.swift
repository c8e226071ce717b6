import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One pass after another: read what the aggregators have ready, send it in batches of 25, and
/// append every outcome to the log through ingest's admin socket, so the aggregators learn it.
///
/// Nothing is remembered between passes: the log is the only state. A crash after a call and
/// before its outcomes are appended only means the next pass sends the same items again; the
/// marketplace keeps the first write and answers `Duplicate` with the accepted quantity, which
/// settles the items just the same.
final class Submitter: @unchecked Sendable {
    let configuration: SubmitterConfiguration
    let marketplace: MarketplaceClient
    private let lock = NSLock()
    private var running = true
    private var backoff: Double = 0
    private(set) var counters = Counters()

    struct Counters {
        var passes = 0
        var batches = 0
        var itemsSent = 0
        var outcomes: [String: Int] = [:]
        var retries = 0
        var atRisk = 0
        var lastError: String?
        var lastPass: Date?

        var json: JSONValue {
            [
                "passes": .number(String(passes)), "batches": .number(String(batches)), "itemsSent": .number(String(itemsSent)),
                "outcomes": .object(JSONObject(outcomes.sorted { $0.key < $1.key }.map { .init($0.key, .number(String($0.value))) })),
                "retries": .number(String(retries)), "atRisk": .number(String(atRisk)),
                "lastError": lastError.map { .string($0) } ?? .null,
                "lastPass": lastPass.map { .string(Timestamp(microseconds: Int64($0.timeIntervalSince1970 * 1_000_000)).iso8601) } ?? .null,
            ]
        }
    }

    /// Where each pass leaves its counters for operators (`meterctl submitter-status`): the
    /// submitter has no socket of its own.
    var statusPath: String { configuration.home + "/run/submitter.status.json" }

    private func writeStatus() {
        let json = lock.withLock { counters.json }
        let temporary = statusPath + ".tmp"
        if FileManager.default.createFile(atPath: temporary, contents: Data(JSONWriter.bytes(json))) {
            _ = rename(temporary, statusPath)
        }
    }

    init(configuration: SubmitterConfiguration) {
        self.configuration = configuration
        let http = HTTPClient(timeout: configuration.requestTimeout)
        marketplace = MarketplaceClient(
            baseURL: configuration.marketplaceURL, http: http, tokens: TokenProvider(credentials: configuration.credentials, http: http))
    }

    func stop() { lock.withLock { running = false } }
    private var isRunning: Bool { lock.withLock { running } }

    func run() {
        while isRunning {
            let sent = pass()
            let pause: Double
            if backoff > 0 {
                // Exponential backoff with full jitter, so many submitters do not retry in step.
                pause = Double.random(in: backoff / 2...backoff)
            } else {
                pause = sent == 0 ? configuration.interval : min(configuration.interval, 0.05)
            }
            var waited = 0.0
            while waited < pause && isRunning {
                Thread.sleep(forTimeInterval: min(0.1, pause - waited))
                waited += 0.1
            }
        }
    }

    private func failed(_ message: String, retryAfter: Double? = nil) {
        backoff = max(retryAfter ?? 0, backoff == 0 ? 1 : min(backoff * 2, configuration.maximumBackoff))
        lock.withLock {
            counters.retries += 1
            counters.lastError = message
        }
        Log.warning("\(message); retrying in about \(Int(backoff.rounded())) s")
        Systemd.notifyStatus("retrying: \(message)")
    }

    /// One pass; returns how many items were sent.
    func pass() -> Int {
        lock.withLock {
            counters.passes += 1
            counters.lastPass = Date()
        }
        defer { writeStatus() }
        var items: [JSONValue] = []
        for socket in configuration.aggregatorSockets {
            do {
                let response = try UnixClient(path: socket).call(Request(op: "pending", fields: JSONObject(["max": 2500])))
                items += response["items"]?.arrayValue ?? []
            } catch {
                failed("cannot read pending items from the aggregator at \(socket): \(error)")
                return 0
            }
        }
        guard !items.isEmpty else {
            backoff = 0
            return 0
        }
        let atRisk = items.filter { $0["atRisk"] == .bool(true) }
        lock.withLock { counters.atRisk = atRisk.count }
        if !atRisk.isEmpty {
            let oldest = atRisk.compactMap { $0["effectiveStartTime"]?.stringValue }.min() ?? "?"
            Log.error(
                "\(atRisk.count) ready items are older than 20 hours (oldest hour \(oldest)); the marketplace refuses them after 24 hours as Expired (they are then billed again in the current hour). Check the submitter's connectivity and credentials."
            )
        }
        var sent = 0
        var index = 0
        while index < items.count && isRunning {
            let batch = Array(items[index..<min(items.count, index + MarketplaceClient.maximumBatch)])
            guard submit(batch) else { return sent }
            sent += batch.count
            index += batch.count
        }
        backoff = 0
        lock.withLock { counters.lastError = nil }
        Systemd.notifyStatus("sent \(sent) items in the last pass")
        return sent
    }

    /// Sends one batch and records its outcomes; false when the pass should stop (retry later).
    private func submit(_ batch: [JSONValue]) -> Bool {
        lock.withLock {
            counters.batches += 1
            counters.itemsSent += batch.count
        }
        switch marketplace.submit(batch) {
        case .retry(let reason, let retryAfter):
            failed("batch of \(batch.count) not reported: \(reason)", retryAfter: retryAfter)
            return false
        case .badRequest(let message):
            if batch.count > 1 {
                // Find the item the marketplace objects to: the others still go through.
                Log.warning("a batch of \(batch.count) was refused as malformed (\(message)); sending its items one by one")
                for item in batch { guard submit([item]) else { return false } }
                return true
            }
            var result = Self.requestItem(batch[0])
            result["status"] = "BadArgument"
            result["error"] = ["code": "BadArgument", "message": .string(message)]
            return record([result], for: batch, requestId: "", correlationId: "")
        case .results(let results, let requestId, let correlationId):
            return record(results, for: batch, requestId: requestId, correlationId: correlationId)
        }
    }

    static func requestItem(_ item: JSONValue) -> JSONObject {
        MarketplaceClient.requestItem(item).objectValue ?? JSONObject()
    }

    /// Appends one `UsageSubmittedToAPI` per item (the reference's shape) to the log.
    private func record(_ results: [JSONObject], for batch: [JSONValue], requestId: String, correlationId: String) -> Bool {
        var messages: [JSONValue] = []
        for (result, item) in zip(results, batch) {
            var complete = result
            // The log routes and the aggregator matches by these: take them from what was sent
            // when the marketplace's answer leaves them out (some error answers do).
            for key in ["resourceId", "resourceUri", "planId", "dimension", "effectiveStartTime", "quantity"]
            where complete[key] == nil || complete[key] == .null {
                if let value = item[key] { complete[key] = value }
            }
            let status = complete["status"]?.stringValue ?? "Unknown"
            lock.withLock { counters.outcomes[status, default: 0] += 1 }
            if status != "Accepted" && status != "Duplicate" {
                Log.notice(
                    "\(status) for \(item["resourceId"]?.stringValue ?? item["resourceUri"]?.stringValue ?? "?") \(item["dimension"]?.stringValue ?? "?") \(item["effectiveStartTime"]?.stringValue ?? "?")"
                )
            }
            messages.append([
                "type": "UsageSubmittedToAPI",
                "value": [
                    "httpHeaders": ["xMsRequestId": .string(requestId), "xMsCorrelationId": .string(correlationId)],
                    "result": .object(complete),
                ],
            ])
        }
        do {
            let response = try UnixClient(path: configuration.ingestAdminSocket).call(
                Request(op: "append", fields: JSONObject(["events": .array(messages)])))
            let rejected = (response["results"]?.arrayValue ?? []).filter { $0["status"] == "rejected" }
            if let first = rejected.first {
                Log.error("ingest refused \(rejected.count) outcome records: \(JSONWriter.string(first))")
            }
            return true
        } catch {
            // The outcomes are lost with this process's memory, not with the log: the items stay
            // pending and the next pass resends them, which the marketplace answers Duplicate.
            failed("cannot append \(messages.count) outcomes to ingest: \(error)")
            return false
        }
    }
}
