import Dispatch
import Foundation
import SystemIO
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Answers `{"op":"echo","n":…}` with the same `n`: at once on the serving thread, or a moment
/// later from another thread.
private final class EchoHandler: RequestHandler {
    let answersLater: Bool
    init(answersLater: Bool = false) { self.answersLater = answersLater }

    func handle(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void) {
        let answer = Response.ok(id: request.id, JSONObject(["n": request["n"] ?? .null]))
        if answersLater {
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(1)) {
                connection.send(answer)
                done()
            }
        } else {
            connection.send(answer)
            done()
        }
    }
}

/// A server on a socket in a directory of its own, removed with it.
private final class EchoServer {
    let directory: String
    let path: String
    let server: UnixServer

    init(lingerMilliseconds: Int32, answersLater: Bool = false) throws {
        directory = "/tmp/linger-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/echo.sock"
        var configuration = UnixServer.Configuration()
        configuration.lingerMilliseconds = lingerMilliseconds
        let descriptor = try UnixSocket.listen(path: path, mode: 0o600)
        server = try UnixServer(
            listeners: [Listener(descriptor: descriptor, name: "client")], configuration: configuration,
            handler: EchoHandler(answersLater: answersLater))
        server.start()
    }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Waits up to `seconds` for `condition`.
    func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(2_000)
        }
        return condition()
    }
}

private func echo(_ client: UnixClient, _ n: Int) throws -> Int? {
    try client.call("echo", JSONObject(["n": .number(String(n))]))["n"]?.intValue
}

private func frame(_ n: Int) -> [UInt8] {
    FrameEncoder.frame(Array(#"{"op":"echo","n":\#(n)}"#.utf8))
}

@Suite("A worker waits on the only busy connection's socket for its next request")
struct UnixServerLingerTests {
    @Test("a client sending one request at a time gets every answer in order, read by the worker that answered the one before")
    func oneRequestAtATime() throws {
        let echo = try EchoServer(lingerMilliseconds: 200)
        let client = try UnixClient(path: echo.path)
        for n in 0..<300 { #expect(try Self.echoed(client, n) == n) }
        // All but the first are read by a lingering worker (a slow machine may miss a few).
        #expect(echo.server.requestsReadWhileLingering > 200)
    }

    @Test("requests answered from another thread are read by the I/O thread, in order")
    func answeredLater() throws {
        let echo = try EchoServer(lingerMilliseconds: 200, answersLater: true)
        let client = try UnixClient(path: echo.path)
        for n in 0..<50 { #expect(try Self.echoed(client, n) == n) }
        #expect(echo.server.requestsReadWhileLingering == 0)
    }

    @Test("requests sent together are answered in order, without waiting on the socket in between")
    func pipelined() throws {
        let echo = try EchoServer(lingerMilliseconds: 200)
        let client = try UnixClient(path: echo.path)
        try client.sendRaw((0..<20).flatMap(frame))
        for n in 0..<20 { #expect(try client.receive()["n"]?.intValue == n) }
    }

    @Test("two clients taking turns are both answered correctly, and neither is delayed by the other's wait")
    func twoClients() throws {
        let echo = try EchoServer(lingerMilliseconds: 500)
        let first = try UnixClient(path: echo.path)
        let second = try UnixClient(path: echo.path)
        let started = Date()
        for n in 0..<100 {
            #expect(try Self.echoed(first, n) == n)
            #expect(try Self.echoed(second, 1000 + n) == 1000 + n)
        }
        // A worker waits only while its connection is the only busy one, and the other client's
        // request wakes it anyway: 200 calls take far less than 200 waits of 500 ms.
        #expect(Date().timeIntervalSince(started) < 20)
    }

    @Test("a request split across writes while the worker waits is put together and answered")
    func splitFrame() throws {
        let echo = try EchoServer(lingerMilliseconds: 500)
        let client = try UnixClient(path: echo.path)
        #expect(try Self.echoed(client, 1) == 1)
        let bytes = frame(2)
        try client.sendRaw(Array(bytes[0..<7]))
        usleep(50_000)
        try client.sendRaw(Array(bytes[7...]))
        #expect(try client.receive()["n"]?.intValue == 2)
        #expect(try Self.echoed(client, 3) == 3)
    }

    @Test("a client that hangs up while the worker waits is closed, and others are served after it")
    func hangUpWhileWaiting() throws {
        let echo = try EchoServer(lingerMilliseconds: 2000)
        do {
            let client = try UnixClient(path: echo.path)
            #expect(try Self.echoed(client, 1) == 1)
        }
        #expect(echo.eventually { echo.server.connectionCount == 0 })
        let next = try UnixClient(path: echo.path)
        #expect(try Self.echoed(next, 2) == 2)
    }

    @Test("stopping the server while a worker waits on a socket ends at once and closes the connection")
    func stopWhileWaiting() throws {
        let echo = try EchoServer(lingerMilliseconds: 5000)
        let client = try UnixClient(path: echo.path)
        client.setReceiveTimeout(seconds: 5)
        #expect(try Self.echoed(client, 1) == 1)
        usleep(100_000)  // the worker is waiting on the socket by now
        let started = Date()
        echo.server.stop()
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(throws: UnixClient.Failure.self) { try client.receive() }
    }

    static func echoed(_ client: UnixClient, _ n: Int) throws -> Int? { try echo(client, n) }
}
