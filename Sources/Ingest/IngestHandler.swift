import Daemon
import EventStore
import Foundation
import Metrics
import SystemIO
import Transport
import Wire

/// Answers the requests of ingest's two sockets (docs/PROTOCOL.md).
///
/// The client socket takes the client messages (usage, purchases, deletions, plan changes, voids,
/// plan definitions) and answers `plans` from the catalog; the admin socket also takes the
/// internal messages (submission outcomes, removals, pings) and, with the manual clock,
/// `advance-clock`. Validation and JSON work happen here, on the worker threads, before the
/// committer orders, writes and syncs.
final class IngestHandler: RequestHandler {
    static let clientListener = "client"
    static let adminListener = "admin"
    static let maximumReadRecords = 10_000

    let log: any RecordStore
    let committer: Committer
    let clock: Clock
    let startedAt = Date()
    let server: @Sendable () -> Int

    init(log: any RecordStore, committer: Committer, clock: Clock, connectionCount: @escaping @Sendable () -> Int) {
        self.log = log
        self.committer = committer
        self.clock = clock
        self.server = connectionCount
    }

    func handle(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void) {
        let isAdmin = connection.listener == Self.adminListener
        switch request.op {
        case "append":
            append(request, on: connection, isAdmin: isAdmin, done: done)
        case "read", "follow":
            readOrFollow(request, on: connection, done: done)
        case "status":
            connection.respond(to: request, done: done) { self.status() }
        case "plans":
            plans(request, on: connection, done: done)
        case "advance-clock":
            guard isAdmin else {
                connection.reject(
                    request, WireError(.forbidden, "advance-clock is an admin operation: use the admin socket"), done: done)
                return
            }
            advanceClock(request, on: connection, done: done)
        default:
            let ops = isAdmin ? "append, read, follow, status, plans, advance-clock" : "append, read, follow, status, plans"
            connection.reject(request, WireError(.unknownOp, "unknown op \"\(request.op)\"; this socket serves \(ops)"), done: done)
        }
    }

    // MARK: helpers

    // MARK: append

    /// Appends read straight from their bytes (`AppendFastPath`); anything else is decoded as a
    /// request first.
    func handle(frame: [UInt8], on connection: any Connection, done: @escaping @Sendable () -> Void) -> Bool {
        let started = MonotonicClock.now()
        guard let batch = AppendFastPath.read(frame, fork: Self.fork) else { return false }
        append(batch, on: connection, isAdmin: connection.listener == Self.adminListener, readStarted: started, done: done)
        return true
    }

    /// A small append on the server's I/O thread: read and checked there, then queued for the
    /// committer, which commits it on a worker (never on the I/O thread, which must not wait for
    /// the disk). With many clients, one worker commits what the I/O thread queued meanwhile.
    /// A batch with an event refused goes to a worker instead: each refusal is logged, and a log
    /// line may wait on a slow journal, which the I/O thread must not.
    func handleOnIOThread(frame: [UInt8], on connection: any Connection, done: @escaping @Sendable () -> Void) -> Bool {
        guard let batch = AppendFastPath.read(frame) else { return false }
        let isAdmin = connection.listener == Self.adminListener
        for index in batch.events.indices where Self.refusal(batch.events[index], isAdmin: isAdmin) != nil { return false }
        append(batch, on: connection, isAdmin: isAdmin, commitsHere: false, done: done)
        return true
    }

    /// Runs the two halves of a large append's reading at once: this thread and a Dispatch worker
    /// (`batch-1000`: the 1,000 events are read in about half the time, while the client waits).
    static func fork(_ first: () -> Void, _ second: () -> Void) {
        withoutActuallyEscaping(first) { first in
            withoutActuallyEscaping(second) { second in
                let parts = ForkedParts(first: first, second: second)
                DispatchQueue.concurrentPerform(iterations: 2) { part in
                    if part == 0 { parts.first() } else { parts.second() }
                }
            }
        }
    }

    /// The two halves `fork` runs: each touches only its own state (`AppendFastPath.Fork`'s
    /// contract), which the compiler cannot see through the closures.
    private struct ForkedParts: @unchecked Sendable {
        let first: () -> Void
        let second: () -> Void
    }

    /// Why this socket refuses an event of an append, or nil when it takes it: an unreadable or
    /// invalid event, or an internal message on the client socket.
    private static func refusal(_ event: borrowing Result<ValidatedEvent, WireError>, isAdmin: Bool) -> WireError? {
        switch event {
        case .failure(let error): return error
        case .success(let validated): return isAdmin ? nil : forbiddenOnClientSocket(validated.type)
        }
    }

    /// Why the client socket refuses a message of `type`: an internal message; nil for a client's.
    private static func forbiddenOnClientSocket(_ type: MessageType) -> WireError? {
        type.isClientMessage ? nil : WireError(.forbidden, "\(type.rawValue) is an internal message: append it on the admin socket")
    }

    private func append(_ request: Request, on connection: any Connection, isAdmin: Bool, done: @escaping @Sendable () -> Void) {
        switch AppendBatch.from(request) {
        case .success(let batch): append(batch, on: connection, isAdmin: isAdmin, done: done)
        case .failure(let failure): connection.reject(request, failure.error, done: done)
        }
    }

    /// `readStarted`: when a worker began reading the request (the `read` step ends as the events
    /// go to the committer).
    private func append(
        _ batch: consuming AppendBatch, on connection: any Connection, isAdmin: Bool, commitsHere: Bool = true, readStarted: Double? = nil,
        done: @escaping @Sendable () -> Void
    ) {
        let requestID = batch.id
        var results = [AppendResult?](repeating: nil, count: batch.events.count)
        // Moved out of the batch: no event is copied on its way to the committer.
        var (valid, validIndexes, refused) = batch.separated()
        if !isAdmin, valid.contains(where: { !$0.type.isClientMessage }) {
            // An internal message on the client socket (rare): refused alone, the others kept.
            var kept: [ValidatedEvent] = []
            var keptIndexes: [Int] = []
            for (event, index) in zip(valid, validIndexes) {
                if let error = Self.forbiddenOnClientSocket(event.type) {
                    refused.append((index, error))
                } else {
                    kept.append(event)
                    keptIndexes.append(index)
                }
            }
            (valid, validIndexes) = (kept, keptIndexes)
            refused.sort { $0.place < $1.place }
        }
        for (index, error) in refused {
            Log.notice("rejected event \(index) of an append on \(connection.listener) from \(connection.peer): \(error)")
            ingestMetrics.refusals.labels(error.code.rawValue).add()
            results[index] = .rejected(error)
        }
        if let readStarted { ingestMetrics.addStep(.read, MonotonicClock.now() - readStarted) }
        if valid.isEmpty {
            connection.send(AppendResult.response(id: requestID, results))
            done()
            return
        }
        let partial = results
        let indexes = validIndexes
        committer.submit(
            .events(valid) { committed in
                // Made here, sent only once the records are durable.
                let reply: [UInt8]
                if indexes.count == partial.count {
                    reply = AppendResult.response(id: requestID, committed)
                } else {
                    var merged = partial
                    for (position, index) in indexes.enumerated() { merged[index] = committed[position] }
                    reply = AppendResult.response(id: requestID, merged)
                }
                return {
                    connection.send(reply)
                    done()
                }
            }, commitsHere: commitsHere)
    }

    // MARK: read / follow

    private func readArguments(_ request: Request) throws(WireError) -> (any RecordPartition, UInt64, Int) {
        guard let partitionValue = request["partition"] else {
            throw WireError(.badRequest, "\(request.op) needs \"partition\" (0 to \(log.storedPartitions.count - 1))")
        }
        guard let partition = partitionValue.intValue else { throw WireError(.badRequest, "\"partition\" must be a whole number") }
        guard log.storedPartitions.indices.contains(partition) else {
            throw WireError(
                .notFound,
                "partition \(partition) does not exist; the log has \(log.storedPartitions.count) (0 to \(log.storedPartitions.count - 1))")
        }
        var from: UInt64 = 0
        if let fromValue = request["from"] {
            guard let number = fromValue.intValue, number >= 0 else {
                throw WireError(.badRequest, "\"from\" must be a sequence number ≥ 0")
            }
            from = UInt64(number)
        }
        var maximum = 1000
        if let maxValue = request["max"] {
            guard let number = maxValue.intValue, number >= 1, number <= Self.maximumReadRecords else {
                throw WireError(.badRequest, "\"max\" must be from 1 to \(Self.maximumReadRecords)")
            }
            maximum = number
        }
        return (log.storedPartitions[partition], from, maximum)
    }

    /// A response frame with records from `from` on, written straight from the log's bytes. It
    /// names the log's identity, so a follower notices when the log it folded was replaced.
    private func recordsFrame(id: JSONValue?, _ partition: any RecordPartition, from: UInt64, maximum: Int) throws(EventLogError) -> (
        frame: [UInt8], count: Int, next: UInt64
    ) {
        var out = Response.beginOK(id: id, arrayMember: "records", capacity: 64 << 10)
        let (count, next) = try partition.appendJSON(from: from, maxRecords: maximum, to: &out)
        out.append(contentsOf: #"],"next":"#.utf8)
        JSONWriter.writeInteger(next, to: &out)
        out.append(contentsOf: #","log":""#.utf8)
        out.append(contentsOf: log.identity.utf8)
        out.append(contentsOf: #""}"#.utf8)
        return (out, count, next)
    }

    /// `read` answers one frame; `follow` answers one, then streams a frame whenever new records
    /// are durable, on a thread of its own, until the peer disconnects.
    private func readOrFollow(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void) {
        let arguments: (any RecordPartition, UInt64, Int)
        do {
            arguments = try readArguments(request)
        } catch {
            connection.reject(request, error, done: done)
            return
        }
        let (partition, from, maximum) = arguments
        if request.op == "read" {
            do {
                connection.send(try recordsFrame(id: request.id, partition, from: from, maximum: maximum).frame)
            } catch {
                Log.error("read of partition \(partition.partition) failed: \(error)")
                connection.send(Response.error(id: request.id, WireError(.internalError, error.description)))
            }
            done()
            return
        }
        connection.markStreaming()
        let id = request.id
        let thread = Thread {
            var next = from
            var first = true
            while !connection.isClosed {
                let frame: (frame: [UInt8], count: Int, next: UInt64)
                do {
                    frame = try self.recordsFrame(id: id, partition, from: next, maximum: maximum)
                } catch {
                    Log.error("follow of partition \(partition.partition) failed: \(error)")
                    connection.send(Response.error(id: id, WireError(.internalError, "\(error)")))
                    connection.close()
                    return
                }
                if frame.count > 0 || first {
                    next = frame.next
                    connection.send(frame.frame)
                    first = false
                    guard connection.waitForOutputSpace() else { return }
                }
                if frame.count == 0 { _ = partition.waitForRecords(from: next, timeout: 1) }
            }
        }
        thread.name = "ingest-follow"
        thread.stackSize = 512 << 10
        thread.start()
    }

    // MARK: the plan catalog

    /// `{"op":"plans"}`: the catalog's plans, each in its newest version; with `planId`, that one
    /// (`not_found` when the catalog has no such plan).
    private func plans(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void) {
        var planId: String?
        if let value = request["planId"], value != .null {
            guard let text = value.stringValue, !text.isEmpty else {
                connection.reject(request, WireError(.badRequest, "\"planId\" must be a non-empty string"), done: done)
                return
            }
            planId = text
        }
        let plans = committer.catalogJSON(only: planId)
        if let planId, plans.isEmpty {
            connection.reject(
                request, WireError(.notFound, "no plan \"\(planId.prefix(200))\" in the plan catalog (meterctl plans list shows it)"),
                done: done)
            return
        }
        connection.respond(to: request, done: done) { JSONObject(["plans": .array(plans)]) }
    }

    // MARK: status / clock

    private func status() -> JSONObject {
        let counters = committer.commitCounters
        var partitions: [JSONValue] = []
        for partition in log.storedPartitions {
            let next = partition.durableNextSequence
            let storage = partition.storage
            partitions.append([
                "partition": .number(String(partition.partition)),
                "nextSequence": .number(String(next)),
                "lastSequence": next == 0 ? .null : .number(String(next - 1)),
                "lastEnqueuedTime": partition.durableLastTime.map { .string($0.iso8601) } ?? .null,
                "segments": .number(String(storage.segments)),
                "bytes": .number(String(storage.bytes)),
            ])
        }
        return JSONObject([
            "log": [
                "identity": .string(log.identity), "clock": .string(log.clock),
                "created": .string(log.created), "lossesAccepted": .number(String(log.lossesAccepted)),
            ],
            "partitions": .array(partitions),
            "storeBytes": .number(String(log.storageBytes)),
            "clock": .string(clock.mode == .manual ? "manual" : "system"),
            "time": .string(clock.now.iso8601),
            "attribution": .object(
                JSONObject(
                    committer.attribution.tickMembers.map { member in
                        member.key == "attribution" ? JSONObject.Member("mode", member.value) : member
                    })),
            "idempotencyKeys": .number(String(committer.idempotencyKeyCount)),
            "idempotencyTableBytes": .number(String(committer.idempotencyTableBytes)),
            "catalogPlans": .number(String(committer.catalogCount)),
            "commit": [
                "groups": .number(String(counters.groups)), "syncs": .number(String(counters.syncs)),
                "records": .number(String(counters.records)), "stepMicroseconds": ingestMetrics.stepMicroseconds,
            ],
            "connections": .number(String(server())),
            "uptimeSeconds": .number(String(Int(Date().timeIntervalSince(startedAt)))),
        ])
    }

    private func advanceClock(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void) {
        guard clock.mode == .manual else {
            connection.reject(
                request,
                WireError(.forbidden, "the clock is the system clock; start meter-ingest with METERING_CLOCK=manual to move it by hand"),
                done: done)
            return
        }
        guard let text = request["to"]?.stringValue, let target = Timestamp(iso8601: text) else {
            connection.reject(
                request,
                WireError(.badRequest, "advance-clock needs \"to\": an ISO 8601 UTC time such as \"2022-01-01T00:00:00Z\""), done: done)
            return
        }
        switch clock.advance(to: target) {
        case .failure(let error):
            connection.reject(request, error, done: done)
        case .success(let time):
            let id = request.id
            committer.submit(
                .ticks(reason: "clock") { positions in
                    let ticks: [JSONValue] = positions.map {
                        ["partition": .number(String($0.partition)), "sequence": .number(String($0.sequence))]
                    }
                    connection.send(Response.ok(id: id, JSONObject(["time": .string(time.iso8601), "ticks": .array(ticks)])))
                    done()
                })
        }
    }
}
