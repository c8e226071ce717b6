import Billing
import Foundation
import Projection
import Wire

/// Answers `aggregator.sock`: `pending`, `state`, `status` (DESIGN.md §3.5).
final class AggregatorHandler: RequestHandler {
    /// Items whose hour is older than this are reported as at risk (the marketplace refuses 24 h).
    static let atRiskMicroseconds: Int64 = 20 * 3_600_000_000

    let workers: [PartitionWorker]

    init(workers: [PartitionWorker]) { self.workers = workers }

    func handle(_ request: Request, on connection: Connection, done: @escaping @Sendable () -> Void) {
        connection.respond(to: request, done: done) {
            switch request.op {
            case "pending": return try pending(request)
            case "state": return try state(request)
            case "status": return status()
            case "ledger": return ledger()
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

    /// `{"op":"ledger"}` → what did not simply settle: rejected items with their reasons, conflicts
    /// with both quantities, and unprocessable records, per partition.
    private func ledger() -> JSONObject {
        var rejected: [JSONValue] = []
        var conflicts: [JSONValue] = []
        var unprocessable: [JSONValue] = []
        for worker in workers {
            worker.read { state in
                rejected += state.rejected.map(\.json)
                conflicts += state.conflicts.map(\.json)
                unprocessable += state.unprocessable.map { record in
                    var object = record.json.objectValue ?? JSONObject()
                    object["partition"] = .number(String(worker.partition))
                    return .object(object)
                }
            }
        }
        return JSONObject(["rejected": .array(rejected), "conflicts": .array(conflicts), "unprocessable": .array(unprocessable)])
    }

    private func status() -> JSONObject {
        var partitions: [JSONValue] = []
        for worker in workers {
            let progress = worker.progress
            let summary = worker.read { state -> JSONObject in
                let atRisk = state.pending.filter { item in
                    guard let now = state.time else { return false }
                    return now.microseconds - item.effectiveStartTime.microseconds >= Self.atRiskMicroseconds
                }.count
                return JSONObject([
                    "time": state.time.map { .string($0.iso8601) } ?? .null,
                    "subscriptions": .number(String(state.subscriptionCount)),
                    "pending": .number(String(state.pendingCount)),
                    "atRisk": .number(String(atRisk)),
                    "accepted": .number(String(state.accepted)),
                    "conflicts": .number(String(state.conflicts.count)),
                    "rejected": .number(String(state.rejected.count)),
                    "unprocessable": .number(String(state.unprocessable.count)),
                    "expiredRebilled": .number(String(state.expiredRebilled)),
                ])
            }
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
