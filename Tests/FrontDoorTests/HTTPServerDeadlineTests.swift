import Foundation
import HTTP
import StackTestSupport
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Answers every request with 200 and its path.
private struct PathHandler: HTTPHandler {
    func handle(_ request: HTTPRequest) -> HTTPReply { .respond(.json(200, ["path": .string(request.path)])) }
    func refused(_ status: Int, reason: String) {}
}

/// HTTPServer's deadlines: slow clients cannot keep a connection forever.
@Suite("HTTPServer deadlines")
struct HTTPServerDeadlineTests {
    static func server(_ configure: (inout HTTPServer.Limits) -> Void) throws -> HTTPServer {
        var limits = HTTPServer.Limits()
        configure(&limits)
        let server = try HTTPServer(host: "127.0.0.1", port: 0, limits: limits, handler: PathHandler())
        server.start()
        return server
    }

    @Test("a request head that trickles in past the request deadline gets 408 and a close, however steady the trickle")
    func headDeadline() throws {
        let server = try Self.server { $0.requestTimeoutSeconds = 1 }
        defer { server.stop(waitingUpTo: 1) }
        let client = try TestHTTPClient(port: server.port)
        let started = Date()
        for byte in Array("GET /slow HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8) {
            guard client.send([byte]), Date().timeIntervalSince(started) < 5 else { break }
            usleep(100_000)
        }
        let answer = String(decoding: client.readToEnd(), as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 408 "), "\(answer)")
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test("a body that does not arrive within the request deadline gets 408, and the deadline starts anew for the next request")
    func bodyDeadline() throws {
        let server = try Self.server { $0.requestTimeoutSeconds = 1 }
        defer { server.stop(waitingUpTo: 1) }
        let client = try TestHTTPClient(port: server.port)
        // A request answered in time, then waiting longer than the request deadline between
        // requests is fine (that is the idle timeout's business).
        #expect(try client.request("GET", "/first").status == 200)
        usleep(1_500_000)
        #expect(try client.request("GET", "/second").status == 200)
        client.send("POST /body HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"partial\":")
        let answer = String(decoding: client.readToEnd(), as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 408 "), "\(answer)")
    }

    @Test("a keep-alive connection with no new request is closed after the idle timeout")
    func idleTimeout() throws {
        let server = try Self.server { $0.idleTimeoutSeconds = 1 }
        defer { server.stop(waitingUpTo: 1) }
        let client = try TestHTTPClient(port: server.port)
        #expect(try client.request("GET", "/once").status == 200)
        let started = Date()
        #expect(client.isClosedByServer())
        #expect(Date().timeIntervalSince(started) < 10)
        let deadline = Date().addingTimeInterval(10)
        while server.connectionCount > 0 && Date() < deadline { usleep(20_000) }
        #expect(server.connectionCount == 0)
    }
}
