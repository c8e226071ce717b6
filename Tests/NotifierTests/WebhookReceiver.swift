import Foundation
import HTTP
import Synchronization
import Wire

@testable import Notifier

/// A receiver of notifications for the tests: an HTTP server on a fixed loopback port that checks
/// every signature, keeps every delivery, and can be told to fail (HTTP 500) or be stopped and
/// started again on the same port.
final class WebhookReceiver: Sendable {
    struct Delivery {
        var id: String
        var body: JSONObject
        var signed: Bool
    }

    let port: Int
    let secret: String
    private let state = Mutex(State())

    private struct State {
        var all: [Delivery] = []
        var failing = false
        var server: HTTPServer?
    }

    init(port: Int, secret: String) throws {
        self.port = port
        self.secret = secret
        try start()
    }

    var url: String { "http://127.0.0.1:\(port)/hooks" }

    func start() throws {
        var limits = HTTPServer.Limits()
        limits.maximumConnections = 8
        let server = try HTTPServer(host: "127.0.0.1", port: port, limits: limits, handler: Handler(receiver: self))
        server.start()
        state.withLock { $0.server = server }
    }

    func stop() {
        let running = state.withLock { state -> HTTPServer? in
            defer { state.server = nil }
            return state.server
        }
        running?.stop(waitingUpTo: 2)
    }

    /// While set, every delivery is answered 500 (and not kept).
    func fail(_ on: Bool) { state.withLock { $0.failing = on } }

    /// Every delivery taken (200), duplicates included, in arrival order.
    var deliveries: [Delivery] { state.withLock { $0.all } }

    /// What a receiver that de-duplicates by id keeps: the first delivery of each id, in order.
    var unique: [Delivery] {
        var seen: Set<String> = []
        return deliveries.filter { seen.insert($0.id).inserted }
    }

    /// Waits until `condition` holds for the unique deliveries.
    func wait(timeout: Double = 60, _ condition: ([Delivery]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(unique) { return true }
            usleep(50_000)
        }
        return condition(unique)
    }

    fileprivate func take(_ request: HTTPRequest) -> Int {
        guard !state.withLock({ $0.failing }) else { return 500 }
        let id = request.header(WebhookSignature.idHeader) ?? ""
        let signed =
            request.header(WebhookSignature.timestampHeader).flatMap(Int64.init).map { timestamp in
                WebhookSignature.verify(
                    secret: secret, id: id, timestamp: timestamp, body: request.body,
                    signature: request.header(WebhookSignature.signatureHeader) ?? "", now: Int64(Date().timeIntervalSince1970))
            } ?? false
        guard let body = (try? JSONParser.parse(request.body))?.objectValue else { return 400 }
        state.withLock { $0.all.append(Delivery(id: id, body: body, signed: signed && body["id"]?.stringValue == id)) }
        return 200
    }

    private struct Handler: HTTPHandler {
        let receiver: WebhookReceiver
        func handle(_ request: HTTPRequest) -> HTTPReply { .respond(HTTPResponse(status: receiver.take(request))) }
        func refused(_ status: Int, reason: String) {}
    }
}
