import Billing
import Foundation
import Projection
import Transport
import Wire

/// Answers `aggregator.sock`: `pending`, `state`, `status` (DESIGN.md §3.5).
final class AggregatorHandler: RequestHandler {
    /// Items whose hour is older than this are reported as at risk (the marketplace refuses 24 h).
    static let atRiskMicroseconds: Int64 = 20 * 3_600_000_000

    let workers: [PartitionWorker]

    init(workers: [PartitionWorker]) { self.workers = workers }

    func handle(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void) {
        connection.respond(to: request, done: done) {
            switch request.op {
            case "pending": return try pending(request)
            case "state": return try state(request)
            case "status": return status()
            case "ledger": return try ledger(request)
            default: throw WireError(.unknownOp, "unknown op \"\(request.op)\"; aggregator.sock serves pending, state, status, ledger")
            }
        }
    }

    static func itemJSON(_ item: ReadyItem, partition: Int, now: Timestamp?) -> JSONValue {
        var members: [JSONObject.Member] = []
        if let id = item.resource.resourceId { members.append(.init("resourceId", .string(id))) }
        if let uri = item.resource.resourceUri { members.append(.init("resourceUri", .string(uri))) }
        members.append(.init("planId", .string(item.planId)))
        members.append(.init("dimension", .string(item.dimension)))
        members.append(.init("quantity", item.quantity.json))
        members.append(.init("effectiveStartTime", .string(item.effectiveStartTime.iso8601)))
        members.append(.init("partition", .number(String(partition))))
        members.append(.init("readySince", .string(item.readySince.iso8601)))
        if let now {
            let age = max(0, now.microseconds - item.effectiveStartTime.microseconds)
            members.append(.init("ageSeconds", .number(String(age / 1_000_000))))
            members.append(.init("atRisk", .bool(age >= atRiskMicroseconds)))
        }
        return .object(JSONObject(members))
    }

    /// `{"op":"pending","max"?:n,"partition"?:p}` → items ready to report, oldest first.
    private func pending(_ request: Request) throws -> JSONObject {
        var maximum = Int.max
        if let value = request["max"] {
            guard let number = value.intValue, number > 0 else { throw WireError(.badRequest, "\"max\" must be a positive whole number") }
            maximum = number
        }
        var chosen = workers
        if let value = request["partition"] {
            guard let number = value.intValue, let worker = workers.first(where: { $0.partition == number }) else {
                throw WireError(
                    .notFound, "this aggregator owns partitions \(workers.map(\.partition)); \(JSONWriter.string(value)) is not one")
            }
            chosen = [worker]
        }
        var items: [(ReadyItem, Int, Timestamp?)] = []
        for worker in chosen {
            let (pending, now) = worker.read { ($0.pending, $0.time) }
            items += pending.map { ($0, worker.partition, now) }
        }
        items.sort { ($0.0.effectiveStartTime, $0.1) < ($1.0.effectiveStartTime, $1.1) }
        let total = items.count
        return JSONObject([
            "items": .array(items.prefix(maximum).map { Self.itemJSON($0.0, partition: $0.1, now: $0.2) }),
            "total": .number(String(total)),
        ])
    }

    /// `{"op":"state","resourceId"|"resourceUri":...}` → one subscription's meters.
    private func state(_ request: Request) throws -> JSONObject {
        let name = ResourceName(resourceId: request["resourceId"]?.stringValue, resourceUri: request["resourceUri"]?.stringValue)
        guard name.resourceId != nil || name.resourceUri != nil else {
            throw WireError(.badRequest, "state needs \"resourceId\" or \"resourceUri\"")
        }
        for worker in workers {
            if let json = worker.read({ $0.subscriptionJSON(name) }) {
                return JSONObject([
                    "partition": .number(String(worker.partition)), "asOf": worker.read { $0.time.map { .string($0.iso8601) } ?? .null },
                    "subscription": json,
                ])
            }
        }
        throw WireError(.notFound, "no subscription \(name) in partitions \(workers.map(\.partition)) of this aggregator")
    }

    /// The lists of the `ledger` op, in the order a whole answer gives them.
    static let ledgerLists = ["unprocessable", "examples", "rejected", "conflicts", "refunds"]
    /// Entries per list and page, unless `max` says fewer.
    static let ledgerPageSize = 100
    static let ledgerMaximumPageSize = 1000

    /// `{"op":"ledger","list"?,"after"?,"max"?}` → what did not simply settle, in pages so that no
    /// answer grows with the history: `unprocessable` (counts per subscription and reason),
    /// `examples` (the latest unprocessable records in full), `rejected`, `conflicts` and `refunds`
    /// (credits left unused when their period ended, for the ISV to refund by hand). Without
    /// `list`, the first page of each, with `totals` and a `next` cursor per list; with `list`,
    /// that list from `after` (a `next` cursor), with `total` and `next`.
    private func ledger(_ request: Request) throws -> JSONObject {
        var maximum = Self.ledgerPageSize
        if let value = request["max"] {
            guard let number = value.intValue, number >= 1, number <= Self.ledgerMaximumPageSize else {
                throw WireError(.badRequest, "\"max\" must be a whole number from 1 to \(Self.ledgerMaximumPageSize)")
            }
            maximum = number
        }
        guard let list = request["list"] else {
            guard request["after"] == nil else { throw WireError(.badRequest, "\"after\" continues one \"list\"; name it") }
            var members: [JSONObject.Member] = []
            var totals: [JSONObject.Member] = []
            var next: [JSONObject.Member] = []
            for name in Self.ledgerLists {
                let page = ledgerPage(name, after: nil, maximum: maximum)
                members.append(.init(name, .array(page.entries)))
                totals.append(.init(name, .number(String(page.total))))
                next.append(.init(name, page.next))
            }
            totals.append(.init("unprocessableRecords", .number(String(unprocessableRecords()))))
            members += [.init("totals", .object(JSONObject(totals))), .init("next", .object(JSONObject(next)))]
            return JSONObject(members)
        }
        guard let name = list.stringValue, Self.ledgerLists.contains(name) else {
            throw WireError(.badRequest, "\"list\" must be one of \(Self.ledgerLists.joined(separator: ", "))")
        }
        var after: (partition: Int, key: Int)?
        if let value = request["after"] {
            guard let partition = value["partition"]?.intValue, let key = value["after"]?.intValue else {
                throw WireError(.badRequest, "\"after\" must be a \"next\" cursor of an earlier page: {\"partition\":p,\"after\":n}")
            }
            after = (partition, key)
        }
        let page = ledgerPage(name, after: after, maximum: maximum)
        var members: [JSONObject.Member] = [.init(name, .array(page.entries)), .init("total", .number(String(page.total)))]
        if name == "unprocessable" { members.append(.init("records", .number(String(unprocessableRecords())))) }
        members.append(.init("next", page.next))
        return JSONObject(members)
    }

    /// Unprocessable records counted in every owned partition.
    private func unprocessableRecords() -> Int {
        workers.reduce(0) { total, worker in total + worker.read { $0.unprocessable.count } }
    }

    /// Up to `maximum` entries of `list` after the cursor, over the partitions in order; `next` is
    /// the cursor after the last entry given, null when there is nothing more. Entries are keyed by
    /// what never changes under them: a group by its first sequence, an example by its sequence,
    /// a rejection or a conflict by its place in its append-only list.
    private func ledgerPage(_ list: String, after: (partition: Int, key: Int)?, maximum: Int) -> (
        entries: [JSONValue], next: JSONValue, total: Int
    ) {
        var entries: [(partition: Int, key: Int, json: JSONValue)] = []
        var total = 0
        for worker in workers.sorted(by: { $0.partition < $1.partition }) {
            let partition = worker.partition
            let from = after.map { partition < $0.partition ? Int.max : partition == $0.partition ? $0.key : Int.min } ?? Int.min
            let wanted = max(0, maximum + 1 - entries.count)
            // A list's entries after `from`, keyed: at most `wanted`.
            let pairs: [(key: Int, json: JSONValue)] = worker.read { state in
                switch list {
                case "unprocessable":
                    let groups = state.unprocessable.groups
                    total += groups.count
                    return groups.filter { Int(clamping: $0.firstSequence) > from }.prefix(wanted).map {
                        (Int(clamping: $0.firstSequence), $0.json)
                    }
                case "examples":
                    total += state.unprocessable.examples.count
                    return state.unprocessable.examples.filter { Int(clamping: $0.sequence) > from }.prefix(wanted).map {
                        (Int(clamping: $0.sequence), $0.json)
                    }
                case "rejected":
                    total += state.rejected.count
                    return Self.after(from, in: state.rejected.indices).prefix(wanted).map { ($0, state.rejected[$0].json) }
                case "refunds":
                    total += state.refunds.count
                    return Self.after(from, in: state.refunds.indices).prefix(wanted).map { ($0, state.refunds[$0].json) }
                default:
                    total += state.conflicts.count
                    return Self.after(from, in: state.conflicts.indices).prefix(wanted).map { ($0, state.conflicts[$0].json) }
                }
            }
            for (key, json) in pairs {
                var object = json.objectValue ?? JSONObject()
                object["partition"] = .number(String(partition))
                entries.append((partition, key, .object(object)))
            }
        }
        guard entries.count > maximum else { return (entries.map(\.json), .null, total) }
        let last = entries[maximum - 1]
        let next = JSONValue.object(
            JSONObject([.init("partition", .number(String(last.partition))), .init("after", .number(String(last.key)))]))
        return (entries.prefix(maximum).map(\.json), next, total)
    }

    /// The positions of `indices` after `from` (all for `Int.min`, none for `Int.max`).
    static func after(_ from: Int, in indices: Range<Int>) -> Range<Int> {
        guard from != Int.min else { return indices }
        guard from < indices.upperBound - 1 else { return indices.upperBound..<indices.upperBound }
        return max(indices.lowerBound, from + 1)..<indices.upperBound
    }

    private func status() -> JSONObject {
        var partitions: [JSONValue] = []
        for worker in workers {
            // Both as the fold last published them: a status never waits for a fold in progress.
            let progress = worker.progress
            let summary = progress.figures
            var members: [JSONObject.Member] = [
                .init("partition", .number(String(worker.partition))),
                .init("position", .number(String(progress.nextSequence))),
                .init("ingestNext", progress.follower.ingestNext.map { .number(String($0)) } ?? .null),
                .init(
                    "lag",
                    progress.follower.ingestNext.map { .number(String($0 > progress.nextSequence ? $0 - progress.nextSequence : 0)) }
                        ?? .null),
                .init("connected", .bool(progress.follower.connected)),
                .init("snapshotSequence", progress.snapshotSequence.map { .number(String($0)) } ?? .null),
                .init("recordsApplied", .number(String(progress.follower.recordsFolded))),
            ]
            members += summary.members
            if let error = progress.follower.lastError { members.append(.init("lastError", .string(error))) }
            partitions.append(.object(JSONObject(members)))
        }
        var result = JSONObject(["partitions": .array(partitions)])
        // Folding stopped because the state and ingest's log disagree; the process exits shortly.
        if let refused = FoldingRefusal.current { result.members.append(.init("refused", .string(refused))) }
        return result
    }
}
