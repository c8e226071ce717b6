import Foundation
import HTTP
import Wire

@testable import Notifier

/// A receiver of notifications for the tests: an HTTP server on a fixed loopback port that checks
/// every signature, keeps every delivery, and can be told to fail (HTTP 500) or be stopped and
/// started again on the same port.
final class WebhookReceiver: @unchecked Sendable {
    struct Delivery {
        var id: String
        var body: JSONObject
        var signed: Bool
    }

    let port: Int
    let secret: String
    private let lock = NSLock()
    private var all: [Delivery] = []
    private var failing = false
    private var server: HTTPServer?

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
        lock.withLock { self.server = server }
    }

    func stop() {
        let running = lock.withLock { () -> HTTPServer? in
            defer { server = nil }
            return server
        }
        running?.stop(waitingUpTo: 2)
    }

    /// While set, every delivery is answered 500 (and not kept).
    func fail(_ on: Bool) { lock.withLock { failing = on } }

    /// Every delivery taken (200), duplicates included, in arrival order.
    var deliveries: [Delivery] { lock.withLock { all } }

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
        guard !lock.withLock({ failing }) else { return 500 }
        let id = request.header(WebhookSignature.idHeader) ?? ""
        let signed =
            request.header(WebhookSignature.timestampHeader).flatMap(Int64.init).map { timestamp in
                WebhookSignature.verify(
                    secret: secret, id: id, timestamp: timestamp, body: request.body,
                    signature: request.header(WebhookSignature.signatureHeader) ?? "", now: Int64(Date().timeIntervalSince1970))
            } ?? false
        guard let body = (try? JSONParser.parse(request.body))?.objectValue else { return 400 }
        lock.withLock { all.append(Delivery(id: id, body: body, signed: signed && body["id"]?.stringValue == id)) }
        return 200
    }

    private struct Handler: HTTPHandler {
        let receiver: WebhookReceiver
        func handle(_ request: HTTPRequest) -> HTTPReply { .respond(HTTPResponse(status: receiver.take(request))) }
        func refused(_ status: Int, reason: String) {}
    }
}
