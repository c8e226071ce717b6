import Foundation
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A non-blocking socket for attackers and probes: nothing it does can block the soak.
final class RawSocket {
    let fd: Int32

    private init(fd: Int32) {
        self.fd = fd
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(fd) }

    /// Connects to a Unix socket; nil when the server does not take the connection.
    static func unix(_ path: String) -> RawSocket? {
        guard let fd = try? UnixSocket.connect(path: path) else { return nil }
        return RawSocket(fd: fd)
    }

    /// Connects to `127.0.0.1:port` within `seconds`; nil when that fails.
    static func tcp(_ port: Int, within seconds: Double = 5) -> RawSocket? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0 {
            guard errno == EINPROGRESS else {
                close(fd)
                return nil
            }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard poll(&entry, 1, Int32(seconds * 1000)) == 1, getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length) == 0, failure == 0
            else {
                close(fd)
                return nil
            }
        }
        return RawSocket(fd: fd)
    }

    /// Sends what the socket takes now; how many bytes, or nil when the peer is gone.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int? {
        guard !bytes.isEmpty else { return 0 }
        let written = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if written >= 0 { return written }
        return errno == EAGAIN || errno == EINTR ? 0 : nil
    }

    /// Whether the peer has closed the connection (reading and dropping what it sent).
    func peerClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 { continue }
            return count == 0 || (errno != EAGAIN && errno != EINTR)
        }
    }

    /// Whether the peer has closed the connection, without reading anything it sent.
    func peerHungUp() -> Bool {
        var entry = pollfd(fd: fd, events: 0, revents: 0)
        return poll(&entry, 1, 0) == 1 && entry.revents & Int16(POLLHUP | POLLERR) != 0
    }

    /// Sends `bytes` and reads until the peer closes or an HTTP response with its body is
    /// complete, within `seconds`; what was received, nil on a timeout.
    func exchange(_ bytes: [UInt8], within seconds: Double) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(seconds)
        var offset = 0
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while Date() < deadline {
            if offset < bytes.count {
                guard let sent = send(Array(bytes[offset...])) else { return received }
                offset += sent
            }
            var entry = pollfd(fd: fd, events: Int16(POLLIN | (offset < bytes.count ? POLLOUT : 0)), revents: 0)
            _ = poll(&entry, 1, 100)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 {
                received += buffer[0..<count]
                if HTTPProbe.isComplete(received) { return received }
            } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                return received
            }
        }
        return nil
    }
}

/// A well-behaved HTTP client: one `GET` on a new connection, timed.
enum HTTPProbe {
    /// `GET path` on `port`: the status (0 when there was no answer) and the seconds it took.
    static func get(port: Int, path: String, within seconds: Double) -> (status: Int, seconds: Double) {
        let started = Date()
        guard let socket = RawSocket.tcp(port, within: seconds),
            let answer = socket.exchange(
                Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8), within: seconds)
        else { return (0, Date().timeIntervalSince(started)) }
        let text = String(decoding: answer.prefix(32), as: UTF8.self).split(separator: " ")
        return (text.count >= 2 ? Int(text[1]) ?? 0 : 0, Date().timeIntervalSince(started))
    }

    /// Whether `bytes` hold a complete response head and its `Content-Length` body.
    static func isComplete(_ bytes: [UInt8]) -> Bool {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4, let end = (0...(bytes.count - 4)).first(where: { bytes[$0..<($0 + 4)].elementsEqual(separator) })
        else { return false }
        let head = String(decoding: bytes[..<end], as: UTF8.self).lowercased()
        let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }.flatMap {
            Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
        }
        return bytes.count >= end + 4 + (length ?? 0)
    }
}
