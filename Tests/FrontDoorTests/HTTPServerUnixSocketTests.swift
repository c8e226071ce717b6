import Foundation
import HTTP
import StackTestSupport
import SystemIO
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Answers every request with its method and path, so a test can see what arrived.
private struct EchoHandler: HTTPHandler {
    func handle(_ request: HTTPRequest) -> HTTPReply {
        .respond(
            .json(
                200,
                [
                    "method": .string(request.method), "path": .string(request.path),
                    "body": .string(String(decoding: request.body, as: UTF8.self)),
                ]))
    }
    func refused(_ status: Int, reason: String) {}
}

@Suite("HTTPServer on a Unix socket")
struct HTTPServerUnixSocketTests {
    @Test("serves HTTP/1.1 on a Unix socket file with the asked mode, keep-alive included")
    func servesOnUnixSocket() throws {
        let home = StackHome()
        let path = home.path + "/http.sock"
        let server = try HTTPServer(socketPath: path, mode: 0o600, limits: HTTPServer.Limits(), handler: EchoHandler())
        server.start()
        defer { server.stop(waitingUpTo: 1) }
        #expect(server.host == "unix:" + path)
        #expect(server.port == 0)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(info.st_mode & 0o777 == 0o600)

        let fd = try UnixSocket.connect(path: path)
        defer { close(fd) }
        let request = "POST /v1/x HTTP/1.1\r\nHost: local\r\nContent-Length: 5\r\n\r\nhello" + "GET /second HTTP/1.1\r\nHost: local\r\n\r\n"
        try UnixSocket.writeAll(fd, Array(request.utf8))
        var received = ""
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(5)
        while received.components(separatedBy: "HTTP/1.1 200").count < 3 && Date() < deadline {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if count <= 0 { break }
            received += String(decoding: buffer[0..<count], as: UTF8.self)
        }
        #expect(received.contains(#"{"method":"POST","path":"/v1/x","body":"hello"}"#))
        #expect(received.contains(#"{"method":"GET","path":"/second","body":""}"#))
    }

    @Test("refuses a path where another server is already listening, and replaces a stale socket file")
    func refusesLiveSocket() throws {
        let home = StackHome()
        let path = home.path + "/http.sock"
        do {
            let first = try HTTPServer(socketPath: path, limits: HTTPServer.Limits(), handler: EchoHandler())
            first.start()
            #expect(throws: SystemError.self) { _ = try HTTPServer(socketPath: path, limits: HTTPServer.Limits(), handler: EchoHandler()) }
            first.stop(waitingUpTo: 1)
        }
        // The first server's file is left behind, with nobody accepting: a new server takes it over.
        let second = try HTTPServer(socketPath: path, limits: HTTPServer.Limits(), handler: EchoHandler())
        second.start()
        second.stop(waitingUpTo: 1)
    }
}
