import Foundation
import HTTP
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A tiny blocking HTTP/1.1 client over a Glibc socket: full control of the bytes sent (for
/// malformed requests and keep-alive) and a clear difference between a reply and a connection
/// cut without one.
public final class TestHTTPClient {
    public enum Failure: Error, CustomStringConvertible {
        case system(String)
        /// The connection ended before a complete response.
        case closed(received: Int)

        public var description: String {
            switch self {
            case .system(let text): return text
            case .closed(let received): return "the connection closed after \(received) bytes of a response"
            }
        }
    }

    public struct Response {
        public var status: Int
        /// Names lowercased.
        public var headers: [String: String]
        public var body: [UInt8]

        public var json: JSONValue? { try? JSONParser.parse(body) }
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public let fd: Int32
    private var buffer: [UInt8] = []

    public init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.system("socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw Failure.system("connect to port \(port): errno \(errno)")
        }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends raw bytes; false when the server has already closed the connection.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    @discardableResult
    public func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Sends a request and reads its response.
    public func request(_ method: String, _ target: String, headers: [String: String] = [:], body: [UInt8]? = nil) throws -> Response {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body {
            if headers["Content-Type"] == nil { head += "Content-Type: application/json\r\n" }
            head += "Content-Length: \(body.count)\r\n"
        }
        send(Array((head + "\r\n").utf8) + (body ?? []))
        return try receive(toHEAD: method == "HEAD")
    }

    /// Reads the next response, skipping interim `100 Continue` ones unless told otherwise. The
    /// answer to a `HEAD` request has a `Content-Length` but no body.
    public func receive(skippingContinue: Bool = true, toHEAD: Bool = false) throws -> Response {
        while true {
            let response = try receiveOne(bodiless: toHEAD)
            if response.status != 100 || !skippingContinue { return response }
        }
    }

    /// Ends the sending side: the server sees the end of the stream after what was sent.
    public func finishSending() { shutdown(fd, Int32(SHUT_WR)) }

    /// Everything the server sends until it closes the connection.
    public func readToEnd() -> [UInt8] {
        while readMore() {}
        defer { buffer.removeAll() }
        return buffer
    }

    private func receiveOne(bodiless: Bool) throws -> Response {
        while true {
            if let end = find([13, 10, 13, 10]) {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                var lines = head.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw Failure.system("bad status line: \(head)") }
                var headers: [String: String] = [:]
                for line in lines {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                // Interim responses have no body, whatever they say.
                let length = status == 100 || bodiless ? 0 : Int(headers["content-length"] ?? "0") ?? 0
                while buffer.count < end + 4 + length {
                    guard readMore() else { throw Failure.closed(received: buffer.count) }
                }
                let body = Array(buffer[(end + 4)..<(end + 4 + length)])
                buffer.removeFirst(end + 4 + length)
                return Response(status: status, headers: headers, body: body)
            }
            guard readMore() else { throw Failure.closed(received: buffer.count) }
        }
    }

    /// Whether the server closed the connection (orderly or by reset) with nothing more to read.
    public func isClosedByServer() -> Bool {
        buffer.isEmpty && !readMore()
    }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        for index in 0...(buffer.count - pattern.count) where buffer[index..<(index + pattern.count)].elementsEqual(pattern) {
            return index
        }
        return nil
    }

    private func readMore() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            buffer += chunk[..<count]
            return true
        }
    }
}
