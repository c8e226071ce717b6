import Daemon
import Foundation
import HTTP
import Metrics
import Reconciliation
import Synchronization
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Reads what the aggregators have ready, sends it in batches of 25, and appends every outcome to
/// the log through ingest's admin socket, so the aggregators learn it.
///
/// Each aggregator socket is a lane of its own, on its own thread, with its own backoff: a replica
/// that does not answer (stopped, restarting, hung) is retried and shown as unreachable in the
/// status, while the partitions of the others keep being reported.
///
/// Nothing is remembered between passes: the log is the only state. A crash after a call and
/// before its outcomes are appended only means the next pass sends the same items again; the
/// marketplace keeps the first write and answers `Duplicate` with the accepted quantity, which
/// settles the items just the same.
final class Submitter: Sendable {
    let configuration: SubmitterConfiguration
    let marketplace: MarketplaceClient
    let reconciliation: ReconciliationPass
    private let state: Mutex<State>
    /// Held while the status file is written, so two lanes never race on its temporary file.
    private let statusFile = Mutex(())

    private struct State {
        var running = true
        var counters = Counters()
        var lanes: [Lane]
    }

    struct Counters {
        var passes = 0
        var batches = 0
        var itemsSent = 0
        var outcomes: [String: Int] = [:]
        var retries = 0
        var lastPass: Date?
    }

    /// One aggregator socket's progress and trouble.
    struct Lane {
        let socket: String
        /// Seconds to wait before the next pass; 0 while healthy.
        var backoff: Double = 0
        /// The aggregator did not answer the last `pending`.
        var unreachable = false
        /// Items it had ready at the last pass that reached it.
        var pending = 0
        var atRisk = 0
        var lastError: String?
        var lastErrorAt: Date?
        /// When the current run of failures began.
        var failingSince: Date?
        /// Failed passes in a row.
        var failures = 0
        var nextAttempt: Date?

        init(socket: String) { self.socket = socket }

        var json: JSONValue {
            var state = "ok"
            if unreachable {
                state = "unreachable"
            } else if failures > 0 {
                state = "retrying"
            }
            return [
                "socket": .string(socket), "state": .string(state), "pending": .number(String(pending)),
                "atRisk": .number(String(atRisk)), "failures": .number(String(failures)),
                "failingSince": Submitter.time(failingSince), "lastError": lastError.map { .string($0) } ?? .null,
                "nextAttempt": failures > 0 ? Submitter.time(nextAttempt) : .null,
            ]
        }
    }

    static func time(_ date: Date?) -> JSONValue {
        date.map { .string(Timestamp(microseconds: Int64($0.timeIntervalSince1970 * 1_000_000)).iso8601) } ?? .null
    }

    /// Where the counters and each aggregator's state go after every pass, for operators
    /// (`meterctl submitter-status`): the submitter has no socket of its own.
    var statusPath: String { configuration.home + "/run/submitter.status.json" }

    /// The status document: totals, and per aggregator socket whether it answers.
    var statusJSON: JSONValue {
        let (counters, lanes) = state.withLock { ($0.counters, $0.lanes) }
        // The latest failure of an aggregator that is still failing: cleared once all answer.
        let failing = lanes.filter { $0.failures > 0 }.max { ($0.lastErrorAt ?? .distantPast) < ($1.lastErrorAt ?? .distantPast) }
        return [
            "passes": .number(String(counters.passes)), "batches": .number(String(counters.batches)),
            "itemsSent": .number(String(counters.itemsSent)),
            "outcomes": .object(JSONObject(counters.outcomes.sorted { $0.key < $1.key }.map { .init($0.key, .number(String($0.value))) })),
            "retries": .number(String(counters.retries)), "atRisk": .number(String(lanes.reduce(0) { $0 + $1.atRisk })),
            "lastError": failing?.lastError.map { .string($0) } ?? .null, "lastPass": Self.time(counters.lastPass),
            "unreachable": .array(lanes.filter(\.unreachable).map { .string($0.socket) }),
            "aggregators": .array(lanes.map(\.json)), "reconciliation": reconciliation.statusJSON,
        ]
    }

    private func writeStatus() {
        statusFile.withLock { _ in
            let temporary = statusPath + ".tmp"
            if FileManager.default.createFile(atPath: temporary, contents: Data(JSONWriter.bytes(statusJSON))) {
                _ = rename(temporary, statusPath)
            }
        }
    }

    init(configuration: SubmitterConfiguration) {
        self.configuration = configuration
        let http = HTTPClient(timeout: configuration.requestTimeout)
        marketplace = MarketplaceClient(
            baseURL: configuration.marketplaceURL, http: http,
            tokens: TokenProvider(credentials: configuration.credentials, http: http) { submitterMetrics.tokenRefreshes.add() })
        state = Mutex(State(lanes: configuration.aggregatorSockets.map(Lane.init(socket:))))
        reconciliation = ReconciliationPass(configuration: configuration)
    }

    func stop() { state.withLock { $0.running = false } }
    private var isRunning: Bool { state.withLock { $0.running } }

    /// Runs every lane on a thread of its own, and the reconciliation on another, until stopped.
    func run() {
        let done = DispatchGroup()
        done.enter()
        Thread {
            self.reconciliation.serve(while: { self.isRunning }, after: { self.writeStatus() })
            done.leave()
        }.start()
        for lane in state.withLock({ $0.lanes.indices }) {
            done.enter()
            Thread {
                self.serve(lane)
                done.leave()
            }.start()
        }
        done.wait()
    }

    /// One aggregator socket: pass after pass, pausing the interval when nothing was ready and
    /// backing off after a failure.
    private func serve(_ lane: Int) {
        while isRunning {
            let sent = pass(lane)
            let backoff = state.withLock { $0.lanes[lane].backoff }
            let pause: Double
            if backoff > 0 {
                // Exponential backoff with full jitter, so many submitters do not retry in step.
                pause = Double.random(in: backoff / 2...backoff)
                state.withLock { $0.lanes[lane].nextAttempt = Date().addingTimeInterval(pause) }
                writeStatus()
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

    private func failed(_ lane: Int, _ message: String, retryAfter: Double? = nil, unreachable: Bool = false) {
        let now = Date()
        submitterMetrics.retries.add()
        let backoff = state.withLock { state -> Double in
            state.counters.retries += 1
            var trouble = state.lanes[lane]
            trouble.backoff = max(retryAfter ?? 0, trouble.backoff == 0 ? 1 : min(trouble.backoff * 2, configuration.maximumBackoff))
            trouble.unreachable = unreachable
            trouble.lastError = message
            trouble.lastErrorAt = now
            trouble.failingSince = trouble.failingSince ?? now
            trouble.failures += 1
            state.lanes[lane] = trouble
            return trouble.backoff
        }
        Log.warning("\(message); retrying in about \(Int(backoff.rounded())) s")
        Systemd.notifyStatus("retrying: \(message)")
    }

    private func succeeded(_ lane: Int) {
        submitterMetrics.lastSuccess.set(Date().timeIntervalSince1970)
        let recovered = state.withLock { state -> Lane? in
            let before = state.lanes[lane]
            state.lanes[lane].backoff = 0
            state.lanes[lane].unreachable = false
            state.lanes[lane].lastError = nil
            state.lanes[lane].failingSince = nil
            state.lanes[lane].failures = 0
            state.lanes[lane].nextAttempt = nil
            return before.failures > 0 ? before : nil
        }
        if let recovered {
            Log.info("the aggregator at \(recovered.socket) is served again after \(recovered.failures) failed passes")
        }
    }

    /// One pass over one aggregator socket; returns how many items were sent.
    func pass(_ lane: Int) -> Int {
        let socket = state.withLock { state in
            state.counters.passes += 1
            state.counters.lastPass = Date()
            return state.lanes[lane].socket
        }
        defer { writeStatus() }
        let items: [JSONValue]
        do {
            let client = try UnixClient(path: socket)
            // A replica that accepts but never answers must not hold its lane forever either.
            client.setReceiveTimeout(seconds: configuration.requestTimeout)
            let response = try client.call(Request(op: "pending", fields: JSONObject(["max": 2500])))
            items = response["items"]?.arrayValue ?? []
        } catch {
            failed(lane, "cannot read pending items from the aggregator at \(socket): \(error)", unreachable: true)
            return 0
        }
        let atRisk = items.filter { $0["atRisk"] == .bool(true) }
        let allAtRisk = state.withLock { state in
            state.lanes[lane].pending = items.count
            state.lanes[lane].atRisk = atRisk.count
            state.lanes[lane].unreachable = false
            return state.lanes.reduce(0) { $0 + $1.atRisk }
        }
        submitterMetrics.atRisk.set(allAtRisk)
        guard !items.isEmpty else {
            succeeded(lane)
            return 0
        }
        if !atRisk.isEmpty {
            let oldest = atRisk.compactMap { $0["effectiveStartTime"]?.stringValue }.min() ?? "?"
            Log.error(
                "\(atRisk.count) ready items of the aggregator at \(socket) are older than 20 hours (oldest hour \(oldest)); the marketplace refuses them after 24 hours as Expired (they are then billed again in the current hour). Check the submitter's connectivity and credentials."
            )
        }
        var sent = 0
        var index = 0
        while index < items.count && isRunning {
            let batch = Array(items[index..<min(items.count, index + MarketplaceClient.maximumBatch)])
            guard submit(batch, lane: lane) else { return sent }
            sent += batch.count
            index += batch.count
        }
        succeeded(lane)
        Systemd.notifyStatus("sent \(sent) items of \(socket) in the last pass")
        return sent
    }

    /// Sends one batch and records its outcomes; false when the pass should stop (retry later).
    private func submit(_ batch: [JSONValue], lane: Int) -> Bool {
        state.withLock { state in
            state.counters.batches += 1
            state.counters.itemsSent += batch.count
        }
        switch marketplace.submit(batch) {
        case .retry(let reason, let retryAfter):
            failed(lane, "batch of \(batch.count) not reported: \(reason)", retryAfter: retryAfter)
            return false
        case .badRequest(let message):
            if batch.count > 1 {
                // Find the item the marketplace objects to: the others still go through.
                Log.warning("a batch of \(batch.count) was refused as malformed (\(message)); sending its items one by one")
                for item in batch { guard submit([item], lane: lane) else { return false } }
                return true
            }
            var result = Self.requestItem(batch[0])
            result["status"] = "BadArgument"
            result["error"] = ["code": "BadArgument", "message": .string(message)]
            return record([result], for: batch, lane: lane, requestId: "", correlationId: "")
        case .results(let results, let requestId, let correlationId):
            return record(results, for: batch, lane: lane, requestId: requestId, correlationId: correlationId)
        }
    }

    static func requestItem(_ item: JSONValue) -> JSONObject {
        MarketplaceClient.requestItem(item).objectValue ?? JSONObject()
    }

    /// Appends one `UsageSubmittedToAPI` per item (the reference's shape) to the log.
    private func record(_ results: [JSONObject], for batch: [JSONValue], lane: Int, requestId: String, correlationId: String) -> Bool {
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
            state.withLock { $0.counters.outcomes[status, default: 0] += 1 }
            submitterMetrics.outcomes.labels(status).add()
            if status != "Accepted" && status != "Duplicate" {
                Log.notice(
                    "\(status) for \(item["resourceId"]?.stringValue ?? item["resourceUri"]?.stringValue ?? "?") \(item["dimension"]?.stringValue ?? "?") \(item["effectiveStartTime"]?.stringValue ?? "?")"
                )
            }
            let headers = JSONObject([.init("xMsRequestId", .string(requestId)), .init("xMsCorrelationId", .string(correlationId))])
            do {
                messages.append(Message(body: .usageSubmittedToAPI(try UsageSubmittedToAPI(result: complete, httpHeaders: headers))).json)
            } catch {
                // Only an item the aggregator never made (no resource, no status) gets here; the
                // log could not route its outcome either.
                Log.error("an outcome cannot be recorded (\(error)): \(JSONWriter.string(.object(complete)))")
            }
        }
        guard !messages.isEmpty else { return true }
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
            failed(lane, "cannot append \(messages.count) outcomes to ingest: \(error)")
            return false
        }
    }
}
