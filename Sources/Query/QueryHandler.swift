import Billing
import Foundation
import Projection
import QueryModel
import QueryWeb
import Transport
import Wire

/// Answers `query.sock` (DESIGN.md §3.4): `runrate`, `usage`, `subscriptions`, `events`,
/// `submissions`, `breakdown`, `watch`, `status`.
final class QueryHandler: RequestHandler {
    let workers: [ViewWorker]
    let usage: UsageStore
    let submissions: Journal
    let watchers: WatcherRegistry
    let configuration: QueryConfiguration

    static let operations = "runrate, usage, subscriptions, events, submissions, accepted, breakdown, watch, status"
    /// `events` reads at most this many log records per request; the answer's `next` continues.
    static let eventsScanLimit = 20_000

    init(workers: [ViewWorker], usage: UsageStore, submissions: Journal, watchers: WatcherRegistry, configuration: QueryConfiguration) {
        self.workers = workers
        self.usage = usage
        self.submissions = submissions
        self.watchers = watchers
        self.configuration = configuration
    }

    func handle(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void) {
        if request.op == "watch" {
            // A stream: frames follow until the peer hangs up, so the request is never done.
            do {
                try watch(request, on: connection)
            } catch {
                connection.reject(request, error, done: done)
            }
            return
        }
        connection.respond(to: request, done: done) {
            switch request.op {
            case "runrate": return try runRate(try Self.name(request), series: try Self.flag(request, "series"))
            case "usage": return try usagePage(request)
            case "subscriptions": return try subscriptionPage(request)
            case "events": return try events(request)
            case "submissions": return try submissionPage(request)
            case "accepted": return try acceptedLedger(request)
            case "breakdown": return try breakdown(request)
            case "status": return status()
            default: throw WireError(.unknownOp, "unknown op \"\(request.op)\"; query.sock serves \(Self.operations)")
            }
        }
    }

    // MARK: - Arguments

    static func name(_ request: Request) throws(WireError) -> ResourceName {
        let id = request["resourceId"]
        let uri = request["resourceUri"]
        if let id, id.stringValue?.isEmpty != false { throw WireError(.badRequest, "\"resourceId\" must be a non-empty string") }
        if let uri, uri.stringValue?.isEmpty != false { throw WireError(.badRequest, "\"resourceUri\" must be a non-empty string") }
        let name = ResourceName(resourceId: id?.stringValue, resourceUri: uri?.stringValue)
        guard name.resourceId != nil || name.resourceUri != nil else {
            throw WireError(.badRequest, "\(request.op) needs \"resourceId\" or \"resourceUri\"")
        }
        return name
    }

    /// An optional `true`/`false` member, false when absent.
    static func flag(_ request: Request, _ key: String) throws(WireError) -> Bool {
        guard let given = request[key] else { return false }
        guard case .bool(let value) = given else { throw WireError(.badRequest, "\"\(key)\" must be true or false") }
        return value
    }

    static func count(_ request: Request, _ key: String, default value: Int, maximum: Int) throws(WireError) -> Int {
        guard let given = request[key] else { return value }
        guard let number = given.intValue, number >= 1, number <= maximum else {
            throw WireError(.badRequest, "\"\(key)\" must be a whole number from 1 to \(maximum)")
        }
        return number
    }

    static func position(_ request: Request, _ key: String) throws(WireError) -> Int {
        guard let given = request[key] else { return 0 }
        guard let number = given.intValue, number >= 0 else { throw WireError(.badRequest, "\"\(key)\" must be a whole number ≥ 0") }
        return number
    }

    static func time(_ request: Request, _ key: String) throws(WireError) -> Timestamp? {
        guard let given = request[key] else { return nil }
        guard let text = given.stringValue, let time = Timestamp(iso8601: text) else {
            throw WireError(.badRequest, "\"\(key)\" must be an ISO 8601 UTC time such as 2024-03-01T00:00:00Z")
        }
        return time
    }

    /// The worker whose partition holds the subscription named by `name`.
    func worker(for name: ResourceName) throws(WireError) -> (ViewWorker, String) {
        for worker in workers {
            if let key = worker.read({ $0.state.key(named: name) }) { return (worker, key) }
        }
        throw WireError(.notFound, "no subscription \(name): it was never bought, or was deleted and settled")
    }

    // MARK: - Operations

    /// The run-rate of the subscription named by `name`; with `series`, each meter's usage per
    /// day (or month) of the period too.
    func runRate(_ name: ResourceName, series: Bool = false) throws(WireError) -> JSONObject {
        for worker in workers {
            if let json = worker.read({ $0.runRateJSON(name, series: series) }) { return json }
        }
        throw WireError(.notFound, "no subscription \(name): it was never bought, or was deleted and settled")
    }

    /// The names a page keeps (`resourceId` and/or `resourceUri` of the request), or nil for all.
    static func nameFilter(_ request: Request) throws(WireError) -> Set<String>? {
        guard request["resourceId"] != nil || request["resourceUri"] != nil else { return nil }
        let name = try Self.name(request)
        return Set([name.resourceId, name.resourceUri].compactMap { $0 })
    }

    /// Whether a journal line names one of `names` (its key, `resourceId` or `resourceUri`).
    static func names(_ line: JSONObject, oneOf names: Set<String>) -> Bool {
        ["subscription", "resourceId", "resourceUri"].contains { line[$0]?.stringValue.map(names.contains) ?? false }
    }

    /// A page of `journal` from `start`: up to `size` lines that `keep` keeps (all without it;
    /// with it, at most ten pages' worth are read per request), and the id the next page starts at.
    static func page(_ journal: Journal, from start: Int, size: Int, keep: ((JSONObject) -> Bool)?) throws -> (
        lines: [JSONObject], next: Int
    ) {
        let scanned = try journal.read(from: start, maximum: keep == nil ? size : size * 10)
        var lines: [JSONObject] = []
        var next = start
        for line in scanned {
            next += 1
            if let keep, !keep(line) { continue }
            lines.append(line)
            if lines.count == size { break }
        }
        return (lines, next)
    }

    /// `{"startId":n,"batchSize":k,"resourceId"|"resourceUri"?}` → closed-hour usage records with
    /// ids n, n+1, ... (gap-free; with a subscription, that subscription's among them).
    private func usagePage(_ request: Request) throws(WireError) -> JSONObject {
        let start = try Self.position(request, "startId")
        let size = try Self.count(request, "batchSize", default: 100, maximum: 10_000)
        let names = try Self.nameFilter(request)
        do {
            return try usagePage(from: start, size: size, names: names)
        } catch {
            // The socket's error carries the first readable id in its message.
            throw WireError(ErrorCode(error.code), error.message)
        }
    }

    /// Up to `size` usage records from id `start` that name one of `names` (all without it; with
    /// it, at most ten pages' worth are read), each with its marketplace status, and where the
    /// next page starts; `expired` when `start` has aged out.
    func usagePage(from start: Int, size: Int, names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        let scanned: [(id: Int, line: JSONObject)]
        do {
            scanned = try usage.page(from: start, size: names == nil ? size : size * 10)
        } catch {
            switch error {
            case .expired(let first, let before):
                let cutoff = before.map { " (closed before \($0.iso8601); they are kept \(usage.retentionDays) days)" } ?? ""
                throw AdapterProblem(
                    AdapterProblem.expiredCode,
                    "usage records below id \(first) have aged out\(cutoff); id \(start) can no longer be read: continue from id \(first)",
                    details: [.init("firstId", .number(String(first)))])
            case .failed(let message): throw AdapterProblem(WireError(.internalError, message))
            }
        }
        var records: [JSONValue] = []
        var next = start
        for (id, line) in scanned {
            next = id + 1
            if let names, !Self.names(line, oneOf: names) { continue }
            records.append(.object(usageRecord(id: id, line)))
            if records.count == size { break }
        }
        let position = usage.position
        var members: [JSONObject.Member] = [
            .init("records", .array(records)), .init("nextId", .number(String(next))), .init("firstId", .number(String(position.firstId))),
            .init("total", .number(String(position.nextId))),
        ]
        members.append(.init("horizon", position.horizon.map { .string($0.iso8601) } ?? .null))
        return JSONObject(members)
    }

    /// A usage journal line as served: its id (the record's place in every replica's order), the
    /// record and its slot's marketplace status.
    private func usageRecord(id: Int, _ line: JSONObject) -> JSONObject {
        var object = JSONObject(line.members.filter { !["id", "ordinal", "closed"].contains($0.key) })
        object.members.insert(.init("id", .number(String(id))), at: 0)
        let partition = line["partition"]?.intValue ?? -1
        var status: String?
        if let key = line["subscription"]?.stringValue, let dimension = line["dimension"]?.stringValue,
            let hour = line["hour"]?.stringValue.flatMap(Timestamp.init(iso8601:)),
            workers.indices.contains(partition), case let worker = workers[partition]
        {
            status = worker.read { $0.marketplaceStatus(subscription: key, dimension: dimension, hour: hour) }
        }
        let billed = line["billed"].flatMap { value -> Quantity? in
            if case .number(let text) = value { return Quantity(exactly: text) }
            return nil
        }
        object["status"] = .string(status ?? ((billed ?? .zero) > .zero ? "settled" : "included"))
        return object
    }

    /// `{"startId","batchSize","status"?,"resourceId"|"resourceUri"?}` → the marketplace ledger in
    /// this replica's order; with `"cursor"` instead of `startId`, from a cursor that any replica
    /// continues.
    private func submissionPage(_ request: Request) throws -> JSONObject {
        let size = try Self.count(request, "batchSize", default: 100, maximum: 10_000)
        var status: String?
        if let given = request["status"] {
            guard let text = given.stringValue, !text.isEmpty else {
                throw WireError(.badRequest, "\"status\" must be a status such as Accepted")
            }
            status = text
        }
        let names = try Self.nameFilter(request)
        if let cursor = request["cursor"] {
            guard let text = cursor.stringValue else { throw WireError(.badRequest, "\"cursor\" must be the cursor of a previous page") }
            do {
                return try submissionPage(cursor: text, size: size, status: status, names: names)
            } catch {
                throw WireError(ErrorCode(error.code), error.message)
            }
        }
        let start = try Self.position(request, "startId")
        let (lines, next) = try Self.page(submissions, from: start, size: size, keep: Self.submissionFilter(status: status, names: names))
        let records = lines.map { JSONValue.object(JSONObject($0.members.filter { $0.key != "ordinal" })) }
        return JSONObject([
            .init("records", .array(records)), .init("nextId", .number(String(next))), .init("total", .number(String(submissions.count))),
        ])
    }

    /// What keeps a submission line: its status or settlement, and its subscription.
    static func submissionFilter(status: String?, names: Set<String>?) -> ((JSONObject) -> Bool)? {
        guard status != nil || names != nil else { return nil }
        return { line in
            (status == nil || line["status"]?.stringValue == status || line["settled"]?.stringValue == status)
                && (names.map { Self.names(line, oneOf: $0) } ?? true)
        }
    }

    /// Marketplace outcomes from `cursor` (each partition's next ordinal, `-` between them; empty
    /// or absent: from the start): the lines this replica holds past it, and the cursor after
    /// them. Every replica keeps every partition's outcomes in the same order, so a cursor of one
    /// continues on another without a gap or a repeat.
    func submissionPage(cursor text: String?, size: Int, status: String?, names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        var cursor = [UInt64](repeating: 0, count: workers.count)
        if let text, !text.isEmpty {
            let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { UInt64($0) }
            guard parts.count == workers.count, parts.allSatisfy({ $0 != nil }) else {
                throw AdapterProblem(
                    "bad_request",
                    "the cursor must be \(workers.count) whole numbers joined by '-', as a previous page's \"cursor\" gives it")
            }
            cursor = parts.map { $0! }
        }
        let keep = Self.submissionFilter(status: status, names: names)
        var line = cursor.indices.map { submissions.line(partition: $0, atOrBefore: cursor[$0]) }.min() ?? 0
        var records: [JSONValue] = []
        var scanned = 0
        let budget = max(size * 10, 1000)
        scan: while records.count < size && scanned < budget {
            let lines: [JSONObject]
            do {
                lines = try submissions.read(from: line, maximum: min(1000, budget - scanned))
            } catch {
                throw AdapterProblem(WireError(.internalError, "\(error)"))
            }
            if lines.isEmpty { break }
            for object in lines {
                line += 1
                scanned += 1
                guard let partition = object["partition"]?.intValue, cursor.indices.contains(partition),
                    let ordinal = object["ordinal"]?.intValue.map(UInt64.init), ordinal >= cursor[partition]
                else { continue }
                cursor[partition] = ordinal + 1
                if let keep, !keep(object) { continue }
                records.append(.object(JSONObject(object.members.filter { $0.key != "ordinal" && $0.key != "id" })))
                if records.count == size { break scan }
            }
        }
        return JSONObject([
            .init("records", .array(records)), .init("cursor", .string(cursor.map(String.init).joined(separator: "-"))),
        ])
    }

    /// `{"from": day, "to": day}` (UTC dates or times; `to` excluded) → what the marketplace
    /// accepted per usage day, resource and dimension, from the marketplace ledger: `Accepted`
    /// items (a `Duplicate` of the same quantity included) at their quantity, conflicts at the
    /// quantity the marketplace holds. `asOf` is the log time up to which every partition's
    /// outcomes are folded: days ending well before it are complete. Reads the whole ledger.
    private func acceptedLedger(_ request: Request) throws -> JSONObject {
        guard let from = try Self.day(request, "from"), let to = try Self.day(request, "to"), from < to else {
            throw WireError(
                .badRequest, "accepted needs \"from\" and \"to\" (UTC dates such as 2024-03-01, \"to\" excluded), from before to")
        }
        struct Key: Hashable {
            var day: Timestamp
            var resource: String
            var dimension: String
        }
        var totals: [Key: (names: [JSONObject.Member], planId: String, quantity: Quantity, count: Int)] = [:]
        // The position read before the ledger: every outcome folded up to it is in what follows.
        let asOf = workers.compactMap { worker in worker.read { $0.state.time } }.min()
        var next = 0
        while true {
            let lines = try submissions.read(from: next, maximum: 5000)
            if lines.isEmpty { break }
            next += lines.count
            for line in lines {
                let settled = line["settled"]?.stringValue
                guard settled == "Accepted" || settled == "Conflict",
                    let hour = line["effectiveStartTime"]?.stringValue.flatMap(Timestamp.init(iso8601:)), hour >= from, hour < to,
                    let dimension = line["dimension"]?.stringValue,
                    let quantity = exact(settled == "Conflict" ? line["acceptedQuantity"] : line["quantity"])
                else { continue }
                let names = ResourceName(resourceId: line["resourceId"]?.stringValue, resourceUri: line["resourceUri"]?.stringValue)
                let key = Key(
                    day: Self.dayStart(hour), resource: (names.resourceId ?? names.resourceUri ?? "").lowercased(), dimension: dimension)
                var entry = totals[key] ?? (names.members, line["planId"]?.stringValue ?? "", .zero, 0)
                entry.quantity = entry.quantity.saturatingAdding(quantity)
                entry.count += 1
                totals[key] = entry
            }
        }
        let days = totals.sorted { ($0.key.day, $0.key.resource, $0.key.dimension) < ($1.key.day, $1.key.resource, $1.key.dimension) }
            .map { key, entry -> JSONValue in
                var members: [JSONObject.Member] = [.init("usageDate", .string(String(key.day.iso8601.prefix(10))))]
                members += entry.names
                members += [
                    .init("planId", .string(entry.planId)), .init("dimension", .string(key.dimension)),
                    .init("quantity", entry.quantity.json),
                    .init("count", .number(String(entry.count))),
                ]
                return .object(JSONObject(members))
            }
        return JSONObject([.init("days", .array(days)), .init("asOf", asOf.map { .string($0.iso8601) } ?? .null)])
    }

    /// A quantity member of a journal line.
    private func exact(_ value: JSONValue?) -> Quantity? {
        switch value {
        case .number(let text)?, .string(let text)?: return Quantity(exactly: text)
        default: return nil
        }
    }

    /// A UTC date (`2024-03-01`) or time member, as the midnight it falls on.
    static func day(_ request: Request, _ key: String) throws(WireError) -> Timestamp? {
        guard let given = request[key] else { return nil }
        guard let text = given.stringValue,
            let time = text.utf8.count == 10 ? Timestamp(iso8601: text + "T00:00:00Z") : Timestamp(iso8601: text)
        else { throw WireError(.badRequest, "\"\(key)\" must be a UTC date such as 2024-03-01") }
        return dayStart(time)
    }

    static func dayStart(_ time: Timestamp) -> Timestamp {
        let day = Timestamp.microsecondsPerDay
        return Timestamp(microseconds: (time.microseconds >= 0 ? time.microseconds / day : (time.microseconds - day + 1) / day) * day)
    }

    /// `{"after"?: key, "max"?: n}` → subscriptions by key.
    private func subscriptionPage(_ request: Request) throws(WireError) -> JSONObject {
        let size = try Self.count(request, "max", default: 100, maximum: 10_000)
        var after: String?
        if let given = request["after"] {
            guard let text = given.stringValue else { throw WireError(.badRequest, "\"after\" must be the key a page ended with") }
            after = text
        }
        return subscriptionPage(after: after, size: size, names: nil)
    }

    /// Up to `size` subscriptions by key after `after`, only those named in `names` when given.
    func subscriptionPage(after: String?, size: Int, names: Set<String>?) -> JSONObject {
        // Keys only, then lines for the page alone: a page costs the sort, not a line per subscription.
        var keys: [(key: String, worker: ViewWorker)] = []
        var total = 0
        for worker in workers {
            let (held, count) = worker.read { view -> ([String], Int) in
                guard let names else { return (view.subscriptionKeys(after: after), view.state.subscriptionCount) }
                let named = view.subscriptionKeys(after: nil).filter { key in
                    names.contains(key) || view.state.terms(ofKey: key).map { Self.resource($0.resource, oneOf: names) } == true
                }
                return (named.filter { after == nil || $0 > after! }, named.count)
            }
            keys += held.map { ($0, worker) }
            total += count
        }
        keys.sort { $0.key < $1.key }
        let page = keys.prefix(size)
        let lines = page.compactMap { entry in entry.worker.read { $0.subscriptionEntry(entry.key) } }
        var members: [JSONObject.Member] = [
            .init("subscriptions", .array(lines.map { .object($0) })), .init("total", .number(String(total))),
        ]
        members.append(.init("next", keys.count > size ? page.last.map { .string($0.key) } ?? .null : .null))
        return JSONObject(members)
    }

    /// Whether `resource` has one of `names`.
    static func resource(_ resource: ResourceName, oneOf names: Set<String>) -> Bool {
        [resource.resourceId, resource.resourceUri].contains { $0.map(names.contains) ?? false }
    }

    /// `{"resourceId"|"resourceUri", "meterName", "property"}` → the period's usage per property value.
    private func breakdown(_ request: Request) throws(WireError) -> JSONObject {
        let name = try Self.name(request)
        guard let meterName = request["meterName"]?.stringValue, !meterName.isEmpty else {
            throw WireError(.badRequest, "breakdown needs \"meterName\"")
        }
        guard let property = request["property"]?.stringValue, !property.isEmpty else {
            throw WireError(.badRequest, "breakdown needs \"property\", the property key to group by (e.g. \"campaign\")")
        }
        let (worker, _) = try worker(for: name)
        guard let json = worker.read({ $0.breakdownJSON(name, meterName: meterName, property: property) }) else {
            throw WireError(.notFound, "no subscription \(name)")
        }
        return json
    }

    /// `{"resourceId"|"resourceUri", "from"?, "to"?, "after"?: sequence, "max"?}` → the subscription's
    /// recorded events with their enqueued times, read from ingest's log: the audit trail.
    func events(_ request: Request) throws -> JSONObject {
        let name = try Self.name(request)
        let from = try Self.time(request, "from")
        let to = try Self.time(request, "to")
        let maximum = try Self.count(request, "max", default: 100, maximum: 1000)
        let (worker, key) = try worker(for: name)
        guard let names = worker.read({ $0.state.terms(ofKey: key)?.resource }) else {
            throw WireError(.notFound, "no subscription \(name)")
        }
        let client: UnixClient
        do {
            client = try UnixClient(path: configuration.ingestSocket, maximumFrameLength: configuration.maximumFrameBytes)
        } catch {
            throw WireError(.unavailable, "cannot reach meter-ingest at \(configuration.ingestSocket): \(error)")
        }
        let partition = worker.partition
        let head = try Self.head(client, partition: partition)
        var sequence: Int
        if let after = request["after"] {
            // Below Int.max: the scan starts after it.
            guard let number = after.intValue, number >= 0, number < Int.max else {
                throw WireError(.badRequest, "\"after\" must be a sequence number")
            }
            sequence = number + 1
        } else if let from {
            sequence = try Self.firstSequence(client, partition: partition, head: head, atOrAfter: from)
        } else {
            sequence = 0
        }
        var found: [JSONValue] = []
        var scanned = 0
        var finished = false
        scan: while sequence < head && scanned < Self.eventsScanLimit && found.count < maximum {
            let records = try Self.read(client, partition: partition, from: sequence, max: min(1000, Self.eventsScanLimit - scanned))
            if records.isEmpty { break }
            for record in records {
                scanned += 1
                sequence = (record["sequence"]?.intValue ?? sequence) + 1
                if let to, let time = record["enqueuedTime"]?.stringValue.flatMap(Timestamp.init(iso8601:)), time >= to {
                    finished = true
                    break scan
                }
                guard let event = record["event"], case .success(let message) = Message.decode(event), let resource = message.resource
                else { continue }
                let matches =
                    (resource.resourceId != nil && (resource.resourceId == names.resourceId || resource.resourceId == names.resourceUri))
                    || (resource.resourceUri != nil
                        && (resource.resourceUri == names.resourceUri || resource.resourceUri == names.resourceId))
                guard matches else { continue }
                found.append(record)
                if found.count == maximum { break scan }
            }
        }
        if sequence >= head { finished = true }
        var members: [JSONObject.Member] = names.members
        members += [
            .init("partition", .number(String(partition))), .init("records", .array(found)), .init("scanned", .number(String(scanned))),
            .init("next", finished ? .null : .number(String(sequence - 1))),
        ]
        return JSONObject(members)
    }

    static func head(_ client: UnixClient, partition: Int) throws -> Int {
        let status = try client.call("status")
        let partitions = status["partitions"]?.arrayValue ?? []
        guard let entry = partitions.first(where: { $0["partition"]?.intValue == partition }) ?? partitions.dropFirst(partition).first,
            let next = entry["nextSequence"]?.intValue
        else { throw WireError(.internalError, "ingest's status has no partition \(partition)") }
        return next
    }

    static func read(_ client: UnixClient, partition: Int, from: Int, max: Int) throws -> [JSONValue] {
        let response = try client.call(
            Request(
                op: "read",
                fields: JSONObject([
                    "partition": .number(String(partition)), "from": .number(String(from)), "max": .number(String(max)),
                ])))
        return response["records"]?.arrayValue ?? []
    }

    /// The first sequence whose enqueued time is at or after `time`: a binary search over the log
    /// (enqueued times never go backwards within a partition), a record read per step.
    static func firstSequence(_ client: UnixClient, partition: Int, head: Int, atOrAfter time: Timestamp) throws -> Int {
        var low = 0
        var high = head
        while low < high {
            let middle = low + (high - low) / 2
            guard let record = try read(client, partition: partition, from: middle, max: 1).first,
                let recorded = record["enqueuedTime"]?.stringValue.flatMap(Timestamp.init(iso8601:))
            else { return middle }
            if recorded < time { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private func watch(_ request: Request, on connection: any Connection) throws(WireError) {
        let name = try Self.name(request)
        let (worker, key) = try worker(for: name)
        let id = request.id
        let accepted = watchers.watch(partition: worker.partition, key: key, connection: connection) { [self] in
            switch Result(catching: { () throws(WireError) in try runRate(name) }) {
            case .success(let json): return Response.ok(id: id, json)
            case .failure(let error): return Response.error(id: id, error)
            }
        }
        guard accepted else { throw WireError(.unavailable, "too many open watch streams (\(watchers.maximum)); try again later") }
    }

    private func status() -> JSONObject {
        var partitions: [JSONValue] = []
        for worker in workers {
            let progress = worker.followerProgress
            // As the fold last published them: a status never waits for a fold in progress.
            let published = worker.publishedStatus
            let (next, time, subscriptions) = (published.nextSequence, published.time, published.subscriptions)
            var members: [JSONObject.Member] = [
                .init("partition", .number(String(worker.partition))), .init("position", .number(String(next))),
                .init("ingestNext", progress.ingestNext.map { .number(String($0)) } ?? .null),
                .init("lag", progress.ingestNext.map { .number(String($0 > next ? $0 - next : 0)) } ?? .null),
                .init("connected", .bool(progress.connected)), .init("time", time.map { .string($0.iso8601) } ?? .null),
                .init("subscriptions", .number(String(subscriptions))),
                .init("snapshotSequence", published.snapshotSequence.map { .number(String($0)) } ?? .null),
                .init("recordsFolded", .number(String(progress.recordsFolded))),
            ]
            if let error = progress.lastError ?? published.journalError { members.append(.init("lastError", .string(error))) }
            partitions.append(.object(JSONObject(members)))
        }
        let position = usage.position
        var result = JSONObject([
            .init("partitions", .array(partitions)), .init("usageRecords", .number(String(position.nextId - position.firstId))),
            .init(
                "usage",
                [
                    "firstId": .number(String(position.firstId)), "nextId": .number(String(position.nextId)),
                    "horizon": position.horizon.map { .string($0.iso8601) } ?? .null,
                    "expiredBefore": position.expiredBefore.map { .string($0.iso8601) } ?? .null,
                    "retentionDays": .number(String(usage.retentionDays)),
                ]),
            .init("submissionRecords", .number(String(submissions.count))), .init("watchers", .number(String(watchers.openCount))),
        ])
        // Folding stopped because the read model and ingest's log disagree; the process exits shortly.
        if let refused = FoldingRefusal.current { result.members.append(.init("refused", .string(refused))) }
        return result
    }
}
