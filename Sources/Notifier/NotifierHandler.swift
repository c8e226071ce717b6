import Foundation
import Projection
import Transport
import Wire

/// Answers `notifier.sock`: the registrations (`subscriber-add`, `subscribers`,
/// `subscriber-remove`), the dead letters (`dead-letters`, `retry`) and `status`
/// (docs/NOTIFICATIONS.md). The socket is the only way in, so the notifier is the one writer of its
/// files and a registration works from the next record on, confirmed.
final class NotifierHandler: RequestHandler {
    let dispatcher: Dispatcher
    let workers: [NotificationWorker]

    init(dispatcher: Dispatcher, workers: [NotificationWorker]) {
        self.dispatcher = dispatcher
        self.workers = workers
    }

    func handle(_ request: Request, on connection: Connection, done: @escaping @Sendable () -> Void) {
        connection.respond(to: request, done: done) {
            switch request.op {
            case "subscriber-add": return try add(request)
            case "subscribers": return JSONObject([.init("subscribers", .array(dispatcher.list()))])
            case "subscriber-remove": return try remove(request)
            case "dead-letters": return try deadLetters(request)
            case "retry": return try retry(request)
            case "status": return status()
            default:
                throw WireError(
                    .unknownOp,
                    "unknown op \"\(request.op)\"; notifier.sock serves subscriber-add, subscribers, subscriber-remove, dead-letters, retry, status"
                )
            }
        }
    }

    private func add(_ request: Request) throws -> JSONObject {
        let subscriber: Subscriber
        do {
            subscriber = try Subscriber(
                registration: request.body, id: Subscriber.makeID(),
                created: Timestamp(seconds: Int64(Date().timeIntervalSince1970)))
        } catch {
            throw WireError(.badRequest, error.description)
        }
        do {
            return try dispatcher.add(subscriber)
        } catch {
            throw WireError(.internalError, error.description)
        }
    }

    private func subscriberID(_ request: Request) throws -> String {
        guard let id = request["subscriber"]?.stringValue else { throw WireError(.badRequest, "name the \"subscriber\" (its id)") }
        return id
    }

    private func remove(_ request: Request) throws -> JSONObject {
        let id = try subscriberID(request)
        let removed: Bool
        do {
            removed = try dispatcher.remove(id)
        } catch {
            throw WireError(.internalError, error.description)
        }
        guard removed else { throw WireError(.notFound, "no subscriber \(id); `meterctl notifications list` shows them") }
        return JSONObject([.init("removed", .string(id))])
    }

    private func deadLetters(_ request: Request) throws -> JSONObject {
        let id = request["subscriber"]?.stringValue
        guard let letters = dispatcher.deadLetters(of: id) else {
            throw WireError(.notFound, "no subscriber \(id ?? ""); `meterctl notifications list` shows them")
        }
        return JSONObject([.init("deadLetters", .array(letters))])
    }

    private func retry(_ request: Request) throws -> JSONObject {
        let id = try subscriberID(request)
        guard let count = dispatcher.retry(id, notification: request["notification"]?.stringValue) else {
            throw WireError(.notFound, "no subscriber \(id); `meterctl notifications list` shows them")
        }
        return JSONObject([.init("retrying", .number(String(count)))])
    }

    private func status() -> JSONObject {
        let partitions: [JSONValue] = workers.map { worker in
            let progress = worker.followerProgress
            let next = worker.nextSequenceFolded
            var members: [JSONObject.Member] = [
                .init("partition", .number(String(worker.partition))), .init("position", .number(String(next))),
                .init("lag", progress.ingestNext.map { .number(String($0 > next ? $0 - next : 0)) } ?? .null),
                .init("connected", .bool(progress.connected)),
                .init(
                    "outbox",
                    .object(
                        JSONObject([
                            .init("first", .number(String(worker.outbox.firstOrdinal))),
                            .init("next", .number(String(worker.outbox.nextOrdinal))),
                        ]))),
            ]
            if let error = progress.lastError { members.append(.init("lastError", .string(error))) }
            return .object(JSONObject(members))
        }
        var result = JSONObject([.init("partitions", .array(partitions)), .init("subscribers", .number(String(dispatcher.list().count)))])
        if let refused = FoldingRefusal.current { result.members.append(.init("refused", .string(refused))) }
        return result
    }
}
