import Daemon
import EventStore
import Foundation
import HTTP
import Metrics
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Delivers the outboxes' notifications to every subscriber: at least once, in order per partition
/// (so in order per subscription, which lives in one partition), one request in flight per
/// subscriber, retried with exponential backoff, and set aside as a dead letter after the last
/// attempt so that one notification never blocks the rest for good.
///
/// Keeps the delivery side's state under the notifier's data directory (mode 0700), written
/// atomically: `subscribers.json` (the registrations, secrets included), `cursors/<id>.json` (per
/// partition, the next notification a subscriber needs; written after each delivery, so a crash
/// delivers at most the one in flight again) and `dead-letters/<id>.json`.
final class Dispatcher: @unchecked Sendable {
    struct Settings: Sendable {
        var attempts: Int
        var initialBackoff: Double
        var maximumBackoff: Double
        var timeout: Double
    }

    /// A notification that ran out of attempts, kept until retried or its subscriber removed.
    struct DeadLetter: Sendable {
        var notification: JSONObject
        var attempts: Int
        var lastError: String
        var at: Timestamp
        /// `meterctl notifications retry` asked for it: it is being tried again.
        var retrying = false

        var json: JSONValue {
            .object(
                JSONObject([
                    .init("id", notification["id"] ?? .null), .init("type", notification["type"] ?? .null),
                    .init("attempts", .number(String(attempts))), .init("lastError", .string(lastError)), .init("at", .string(at.iso8601)),
                    .init("retrying", .bool(retrying)), .init("notification", .object(notification)),
                ]))
        }

        init(notification: JSONObject, attempts: Int, lastError: String, at: Timestamp) {
            self.notification = notification
            self.attempts = attempts
            self.lastError = lastError
            self.at = at
        }

        init?(json: JSONValue) {
            guard let notification = json["notification"]?.objectValue, let attempts = json["attempts"]?.intValue,
                let at = json["at"]?.stringValue.flatMap({ Timestamp(iso8601: $0) })
            else { return nil }
            self.init(notification: notification, attempts: attempts, lastError: json["lastError"]?.stringValue ?? "", at: at)
            retrying = json["retrying"] == .bool(true)
        }
    }

    /// Dead letters kept per subscriber; beyond, the oldest are dropped (and logged).
    static let maximumDeadLetters = 10_000

    /// One subscriber's delivery state (guarded by the dispatcher's condition).
    final class Lane: @unchecked Sendable {
        var subscriber: Subscriber
        var cursors: [UInt64]
        /// Notifications read ahead per partition, from the cursor on.
        var queues: [[(ordinal: UInt64, notification: JSONObject)]]
        var attempts: [Int]
        var nextAttempt: [Double]
        var deadLetters: [DeadLetter]
        var retryAttempts = 0
        var retryNext = 0.0
        var delivered = 0
        var failures = 0
        var lastError: String?
        var lastDelivery: Timestamp?
        var removed = false
        var cursorsDirty = false

        init(subscriber: Subscriber, cursors: [UInt64], deadLetters: [DeadLetter]) {
            self.subscriber = subscriber
            self.cursors = cursors
            self.deadLetters = deadLetters
            queues = cursors.map { _ in [] }
            attempts = cursors.map { _ in 0 }
            nextAttempt = cursors.map { _ in 0 }
        }
    }

    let directory: String
    let outboxes: [Outbox]
    let settings: Settings
    let metrics: NotifierMetrics
    private let http: HTTPClient
    /// A condition variable, not just a lock: lane threads wait on it for new notifications or
    /// their next attempt, and `stop` waits on it for the threads' end.
    private let condition = NSCondition()
    private var lanes: [Lane] = []
    private var running = true
    private var threads = 0
    /// Registrations change what the fold checks thresholds for: told here.
    private let rulesChanged: @Sendable (ThresholdRules) -> Void

    var subscribersPath: String { directory + "/subscribers.json" }
    func cursorPath(_ id: String) -> String { directory + "/cursors/\(id).json" }
    func deadLetterPath(_ id: String) -> String { directory + "/dead-letters/\(id).json" }

    /// The dispatcher of `outboxes`, with the registrations, cursors and dead letters found in
    /// `directory`.
    init(
        directory: String, outboxes: [Outbox], settings: Settings, metrics: NotifierMetrics,
        rulesChanged: @escaping @Sendable (ThresholdRules) -> Void
    ) throws(Outbox.Failure) {
        self.directory = directory
        self.outboxes = outboxes
        self.settings = settings
        self.metrics = metrics
        self.rulesChanged = rulesChanged
        http = HTTPClient(timeout: settings.timeout)
        do {
            try FileIO.makeDirectory(directory + "/cursors", mode: 0o700)
            try FileIO.makeDirectory(directory + "/dead-letters", mode: 0o700)
        } catch {
            throw Outbox.Failure("cannot create \(directory): \(error)")
        }
        guard FileManager.default.fileExists(atPath: subscribersPath) else { return }
        guard let data = FileManager.default.contents(atPath: subscribersPath), let list = try? JSONParser.parse(Array(data)).arrayValue
        else { throw Outbox.Failure("\(subscribersPath) is not a JSON list of subscribers; fix or remove it") }
        for entry in list {
            let subscriber: Subscriber
            do {
                subscriber = try Subscriber(stored: entry)
            } catch {
                throw Outbox.Failure("\(subscribersPath): \(error)")
            }
            var cursors = outboxes.map(\.nextOrdinal)
            if let data = FileManager.default.contents(atPath: cursorPath(subscriber.id)),
                let saved = try? JSONParser.parse(Array(data))["cursors"]?.arrayValue, saved.count == outboxes.count
            {
                for (partition, value) in saved.enumerated() {
                    guard let cursor = value.intValue.map(UInt64.init) else { continue }
                    let end = outboxes[partition].nextOrdinal
                    if cursor > end {
                        Log.warning(
                            "subscriber \(subscriber.id): its cursor \(cursor) of partition \(partition) is past the outbox's end \(end) (the outbox was rebuilt); going on from the end"
                        )
                    }
                    cursors[partition] = min(cursor, end)
                }
            } else {
                Log.warning("subscriber \(subscriber.id): no cursors found; starting from the outboxes' ends")
            }
            var deadLetters: [DeadLetter] = []
            if let data = FileManager.default.contents(atPath: deadLetterPath(subscriber.id)),
                let saved = try? JSONParser.parse(Array(data)).arrayValue
            {
                deadLetters = saved.compactMap(DeadLetter.init(json:))
            }
            lanes.append(Lane(subscriber: subscriber, cursors: cursors, deadLetters: deadLetters))
        }
    }

    /// The thresholds every registered subscriber wants.
    var rules: ThresholdRules { condition.withLock { ThresholdRules(lanes.map(\.subscriber)) } }

    /// Starts a delivery thread per subscriber.
    func start() {
        for lane in condition.withLock({ lanes }) { startThread(lane) }
    }

    private func startThread(_ lane: Lane) {
        condition.withLock { threads += 1 }
        let thread = Thread { [self] in
            deliver(lane)
            condition.withLock {
                threads -= 1
                condition.broadcast()
            }
        }
        thread.name = "notify-\(lane.subscriber.id)"
        thread.start()
    }

    /// Stops every delivery thread (a request in flight finishes or times out first).
    func stop() {
        condition.lock()
        running = false
        condition.broadcast()
        let deadline = Date().addingTimeInterval(settings.timeout + 2)
        while threads > 0 && condition.wait(until: deadline) {}
        for lane in lanes where lane.cursorsDirty { saveCursors(lane) }
        condition.unlock()
    }

    /// New notifications are in the outboxes.
    func outboxesGrew() { condition.withLock { condition.broadcast() } }

    // MARK: - Registrations

    /// Registers `subscriber`, which receives what the outboxes get from now on.
    func add(_ subscriber: Subscriber) throws(Outbox.Failure) -> JSONObject {
        condition.lock()
        let lane = Lane(subscriber: subscriber, cursors: outboxes.map(\.nextOrdinal), deadLetters: [])
        lanes.append(lane)
        do {
            saveCursors(lane)
            try saveSubscribers()
        } catch {
            lanes.removeLast()
            condition.unlock()
            throw error
        }
        let rules = ThresholdRules(lanes.map(\.subscriber))
        condition.unlock()
        rulesChanged(rules)
        startThread(lane)
        Log.notice("subscriber \(subscriber.id) registered: \(subscriber.url), \(subscriber.events.map(\.rawValue).joined(separator: ","))")
        return JSONObject([
            .init("subscriber", subscriber.json(withSecret: true)),
            .init("from", .array(lane.cursors.map { .number(String($0)) })),
        ])
    }

    /// Removes the subscriber `id`, with its cursors and dead letters; false when there is none.
    func remove(_ id: String) throws(Outbox.Failure) -> Bool {
        condition.lock()
        guard let index = lanes.firstIndex(where: { $0.subscriber.id == id }) else {
            condition.unlock()
            return false
        }
        let lane = lanes.remove(at: index)
        lane.removed = true
        do {
            try saveSubscribers()
        } catch {
            lanes.insert(lane, at: index)
            lane.removed = false
            condition.unlock()
            throw error
        }
        condition.broadcast()
        let rules = ThresholdRules(lanes.map(\.subscriber))
        condition.unlock()
        unlink(cursorPath(id))
        unlink(deadLetterPath(id))
        rulesChanged(rules)
        Log.notice("subscriber \(id) removed")
        return true
    }

    /// Every subscriber without its secret, with where its deliveries stand.
    func list() -> [JSONValue] {
        condition.withLock {
            lanes.map { lane in
                var object = lane.subscriber.json(withSecret: false).objectValue ?? JSONObject()
                object["backlog"] = .number(String(backlog(lane)))
                object["delivered"] = .number(String(lane.delivered))
                object["failures"] = .number(String(lane.failures))
                object["deadLetters"] = .number(String(lane.deadLetters.count))
                object["lastError"] = lane.lastError.map { .string($0) } ?? .null
                object["lastDelivery"] = lane.lastDelivery.map { .string($0.iso8601) } ?? .null
                object["cursors"] = .array(lane.cursors.map { .number(String($0)) })
                return .object(object)
            }
        }
    }

    /// Notifications in the outboxes after a subscriber's cursors (those it does not want included).
    private func backlog(_ lane: Lane) -> Int {
        zip(outboxes, lane.cursors).reduce(0) { $0 + Int($1.0.nextOrdinal - min($1.1, $1.0.nextOrdinal)) }
    }

    /// Per subscriber: the backlog and the dead letters, for the metrics.
    var figures: [(id: String, backlog: Int, deadLetters: Int, failing: Bool)] {
        condition.withLock { lanes.map { ($0.subscriber.id, backlog($0), $0.deadLetters.count, $0.lastError != nil) } }
    }

    /// The dead letters of `id` (of every subscriber when nil); nil when there is no such subscriber.
    func deadLetters(of id: String?) -> [JSONValue]? {
        condition.withLock {
            let chosen = lanes.filter { id == nil || $0.subscriber.id == id }
            if id != nil && chosen.isEmpty { return nil }
            return chosen.flatMap { lane in
                lane.deadLetters.map { letter -> JSONValue in
                    var object = letter.json.objectValue ?? JSONObject()
                    object.members.insert(.init("subscriber", .string(lane.subscriber.id)), at: 0)
                    return .object(object)
                }
            }
        }
    }

    /// Marks the dead letters of `id` (only notification `notification`, when given) to be tried
    /// again; returns how many, nil when there is no such subscriber.
    func retry(_ id: String, notification: String?) -> Int? {
        condition.lock()
        defer { condition.unlock() }
        guard let lane = lanes.first(where: { $0.subscriber.id == id }) else { return nil }
        var count = 0
        for index in lane.deadLetters.indices where !lane.deadLetters[index].retrying {
            guard notification == nil || lane.deadLetters[index].notification["id"]?.stringValue == notification else { continue }
            lane.deadLetters[index].retrying = true
            count += 1
        }
        if count > 0 {
            lane.retryAttempts = 0
            lane.retryNext = 0
            saveDeadLetters(lane)
            condition.broadcast()
        }
        return count
    }

    /// Deletes the outbox segments every subscriber has passed.
    func prune() {
        let cursors = condition.withLock { lanes.map(\.cursors) }
        for (partition, outbox) in outboxes.enumerated() {
            outbox.prune(below: cursors.map { $0[partition] }.min() ?? outbox.nextOrdinal)
        }
    }

    // MARK: - Delivery

    private func deliver(_ lane: Lane) {
        let id = lane.subscriber.id
        while true {
            // Choose the next piece of work under the lock; do it without.
            condition.lock()
            guard running && !lane.removed else {
                condition.unlock()
                return
            }
            let now = MonotonicClock.now()
            var work: (partition: Int?, notification: JSONObject, attempt: Int)?
            var wake = now + 5
            if let retry = lane.deadLetters.firstIndex(where: \.retrying) {
                if lane.retryNext <= now {
                    work = (nil, lane.deadLetters[retry].notification, lane.retryAttempts + 1)
                } else {
                    wake = min(wake, lane.retryNext)
                }
            }
            if work == nil {
                for partition in outboxes.indices {
                    if lane.queues[partition].isEmpty { refill(lane, partition) }
                    guard let head = lane.queues[partition].first else { continue }
                    if lane.nextAttempt[partition] > now {
                        wake = min(wake, lane.nextAttempt[partition])
                        continue
                    }
                    work = (partition, head.notification, lane.attempts[partition] + 1)
                    break
                }
            }
            guard let (partition, notification, attempt) = work else {
                if lane.cursorsDirty { saveCursors(lane) }
                _ = condition.wait(until: Date().addingTimeInterval(max(0.01, wake - now)))
                condition.unlock()
                continue
            }
            let subscriber = lane.subscriber
            condition.unlock()

            let failure = post(notification, to: subscriber, attempt: attempt)

            condition.lock()
            if lane.removed {
                condition.unlock()
                return
            }
            if let failure {
                metrics.deliveries.labels(id, "failed").add()
                lane.failures += 1
                if lane.lastError == nil {
                    Log.warning("subscriber \(id): delivery to \(subscriber.url) failed: \(failure); retrying with backoff")
                }
                lane.lastError = failure
                let delay = backoff(attempt)
                if let partition {
                    if attempt >= settings.attempts {
                        deadLetter(lane, notification, attempts: attempt, error: failure)
                        advance(lane, partition)
                    } else {
                        lane.attempts[partition] = attempt
                        lane.nextAttempt[partition] = MonotonicClock.now() + delay
                    }
                } else if attempt >= settings.attempts, let index = lane.deadLetters.firstIndex(where: \.retrying) {
                    lane.deadLetters[index].retrying = false
                    lane.deadLetters[index].attempts += attempt
                    lane.deadLetters[index].lastError = failure
                    lane.retryAttempts = 0
                    saveDeadLetters(lane)
                } else {
                    lane.retryAttempts = attempt
                    lane.retryNext = MonotonicClock.now() + delay
                }
            } else {
                metrics.deliveries.labels(id, "delivered").add()
                if lane.lastError != nil { Log.info("subscriber \(id): \(subscriber.url) takes deliveries again") }
                lane.lastError = nil
                lane.delivered += 1
                lane.lastDelivery = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))
                if let partition {
                    advance(lane, partition)
                } else if let index = lane.deadLetters.firstIndex(where: \.retrying) {
                    lane.deadLetters.remove(at: index)
                    lane.retryAttempts = 0
                    saveDeadLetters(lane)
                }
            }
            condition.unlock()
        }
    }

    /// Reads ahead in a partition's outbox from the cursor, skipping what the subscriber does not
    /// want (lock held).
    private func refill(_ lane: Lane, _ partition: Int) {
        let outbox = outboxes[partition]
        while lane.cursors[partition] < outbox.nextOrdinal {
            let read: [(ordinal: UInt64, notification: JSONObject)]
            do {
                read = try outbox.read(from: lane.cursors[partition], maximum: 256)
            } catch {
                Log.error("subscriber \(lane.subscriber.id): \(error)")
                return
            }
            guard let first = read.first else { return }
            if first.ordinal > lane.cursors[partition] {
                Log.warning(
                    "subscriber \(lane.subscriber.id): notifications \(lane.cursors[partition]) to \(first.ordinal - 1) of partition \(partition) are no longer in the outbox; going on from \(first.ordinal)"
                )
                lane.cursors[partition] = first.ordinal
            }
            let wanted = read.filter { lane.subscriber.wants($0.notification) }
            if !wanted.isEmpty {
                // Skipped ones before the first wanted move the cursor too.
                if wanted[0].ordinal > lane.cursors[partition] {
                    lane.cursors[partition] = wanted[0].ordinal
                    lane.cursorsDirty = true
                }
                lane.queues[partition] = wanted
                return
            }
            lane.cursors[partition] = read[read.count - 1].ordinal + 1
            lane.cursorsDirty = true
        }
    }

    /// The head of a partition's queue is done (delivered or dead): the cursor moves past it and
    /// past what follows that the subscriber does not want (lock held).
    private func advance(_ lane: Lane, _ partition: Int) {
        let done = lane.queues[partition].removeFirst()
        lane.attempts[partition] = 0
        lane.nextAttempt[partition] = 0
        lane.cursors[partition] = lane.queues[partition].first?.ordinal ?? done.ordinal + 1
        saveCursors(lane)
    }

    private func deadLetter(_ lane: Lane, _ notification: JSONObject, attempts: Int, error: String) {
        metrics.deliveries.labels(lane.subscriber.id, "dead_lettered").add()
        Log.error(
            "subscriber \(lane.subscriber.id): notification \(notification["id"]?.stringValue ?? "?") failed \(attempts) times (\(error)); moved to its dead letters (meterctl notifications dead-letters)"
        )
        lane.deadLetters.append(
            DeadLetter(
                notification: notification, attempts: attempts, lastError: error,
                at: Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))))
        if lane.deadLetters.count > Self.maximumDeadLetters {
            let dropped = lane.deadLetters.count - Self.maximumDeadLetters
            lane.deadLetters.removeFirst(dropped)
            Log.error("subscriber \(lane.subscriber.id): more than \(Self.maximumDeadLetters) dead letters; dropped the \(dropped) oldest")
        }
        saveDeadLetters(lane)
    }

    /// Exponential backoff from the first attempt's, with jitter, up to the maximum.
    private func backoff(_ attempt: Int) -> Double {
        let base = min(settings.maximumBackoff, settings.initialBackoff * pow(2, Double(min(attempt - 1, 30))))
        return Double.random(in: base / 2...base)
    }

    /// One attempt; nil when the receiver took it (any 2xx), else why not.
    private func post(_ notification: JSONObject, to subscriber: Subscriber, attempt: Int) -> String? {
        guard let url = URL(string: subscriber.url) else { return "the URL does not parse" }
        let body = JSONWriter.bytes(.object(notification))
        let id = notification["id"]?.stringValue ?? ""
        let headers = WebhookSignature.headers(
            secret: subscriber.secret, id: id, timestamp: Int64(Date().timeIntervalSince1970), attempt: attempt, body: body)
        do {
            let reply = try http.send("POST", url, headers: headers, body: body)
            return (200..<300).contains(reply.status) ? nil : "HTTP \(reply.status)"
        } catch {
            return error.description
        }
    }

    // MARK: - Files (lock held)

    private func saveSubscribers() throws(Outbox.Failure) {
        let list = JSONValue.array(lanes.map { $0.subscriber.json(withSecret: true) })
        do {
            try FileIO.writeAtomically(JSONWriter.bytes(list) + [0x0A], to: subscribersPath)
        } catch {
            throw Outbox.Failure("cannot write \(subscribersPath): \(error)")
        }
    }

    private func saveCursors(_ lane: Lane) {
        let path = cursorPath(lane.subscriber.id)
        let json = JSONValue.object(JSONObject([.init("cursors", .array(lane.cursors.map { .number(String($0)) }))]))
        do {
            try FileIO.writeAtomically(JSONWriter.bytes(json) + [0x0A], to: path)
            lane.cursorsDirty = false
        } catch {
            Log.error("cannot write \(path): \(error); will retry")
            lane.cursorsDirty = true
        }
    }

    private func saveDeadLetters(_ lane: Lane) {
        let path = deadLetterPath(lane.subscriber.id)
        do {
            try FileIO.writeAtomically(JSONWriter.bytes(.array(lane.deadLetters.map(\.json))) + [0x0A], to: path)
        } catch {
            Log.error("cannot write \(path): \(error)")
        }
    }
}
