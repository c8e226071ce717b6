import Foundation
import Synchronization
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Serves the requests of an `HTTPServer`, on the connections' threads.
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest) -> HTTPReply
    /// A request the server answered itself with `status` because it could not be served
    /// (malformed, too large, the server full).
    func refused(_ status: Int, reason: String)
}

/// A small HTTP/1.1 server on a TCP socket: one thread accepts, one thread per connection serves
/// that connection's requests in order (keep-alive and pipelining), with bounded head and body
/// sizes, a bounded number of connections, and an idle timeout.
///
/// A thread per connection is plenty for its users: the emulator (the submitter keeps one batch in
/// flight) and read-only endpoints behind a bounded connection count.
public final class HTTPServer: Sendable {
    public struct Limits: Sendable {
        /// Request line and header fields together.
        public var maximumHeadBytes = 16 << 10
        public var maximumBodyBytes = 1 << 20
        public var maximumConnections = 256
        /// A connection with no complete request for this long is closed.
        public var idleTimeoutSeconds = 60

        public init() {}
    }

    public let limits: Limits
    public let handler: any HTTPHandler
    /// The address actually bound (the port is the kernel's choice when 0 was asked for).
    public let host: String
    public let port: Int
    private let listener: Int32
    private let state = Mutex(State())

    private struct State {
        var connections = 0
        /// Requests being handled or answered right now: a stop waits for them.
        var busy = 0
        var stopping = false
    }

    /// Binds and listens on `host:port` (IPv4).
    public init(host: String, port: Int, limits: Limits, handler: any HTTPHandler) throws(SystemError) {
        UnixSocket.ignoreSIGPIPE()
        self.limits = limits
        self.handler = handler
        self.host = host
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", "\(host):\(port)") }
        // A restarted server must get its port back at once, not after TIME_WAIT.
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(truncatingIfNeeded: port)).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw SystemError("inet_pton", host, errno: EINVAL)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let error = SystemError("bind", "\(host):\(port)")
            close(fd)
            throw error
        }
        guard listen(fd, 128) == 0 else {
            let error = SystemError("listen", "\(host):\(port)")
            close(fd)
            throw error
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        self.listener = fd
    }

    /// Binds and listens on a Unix socket at `socketPath` with file mode `mode`, for a reverse
    /// proxy on the same host (a stale socket file is replaced, a live one is an error).
    /// `host` is then `unix:` and the path, and `port` is 0.
    public init(socketPath: String, mode: UInt32 = 0o660, limits: Limits, handler: any HTTPHandler) throws(SystemError) {
        UnixSocket.ignoreSIGPIPE()
        self.limits = limits
        self.handler = handler
        self.host = "unix:" + socketPath
        self.port = 0
        self.listener = try UnixSocket.listen(path: socketPath, mode: mode_t(mode), backlog: 128)
    }

    /// Starts accepting connections on a thread of its own.
    public func start() {
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "http-accept"
        thread.start()
    }

    /// Stops accepting and waits up to `seconds` for the requests in hand to be answered.
    public func stop(waitingUpTo seconds: Double) {
        state.withLock { $0.stopping = true }
        // shutdown wakes the blocked accept (close alone would not, and could reuse the number).
        shutdown(listener, Int32(SHUT_RDWR))
        let deadline = Date().addingTimeInterval(seconds)
        while state.withLock({ $0.busy }) > 0 && Date() < deadline { usleep(10_000) }
    }

    private func acceptLoop() {
        var lastWarning = Date.distantPast
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                let error = errno
                if state.withLock({ $0.stopping }) {
                    close(listener)
                    return
                }
                if error == EINTR || error == ECONNABORTED || error == EPROTO { continue }
                // Out of descriptors or memory: wait for connections to end instead of spinning.
                if Date().timeIntervalSince(lastWarning) > 10 {
                    Log.warning("accept: \(SystemError("accept", errno: error)); retrying")
                    lastWarning = Date()
                }
                usleep(100_000)
                continue
            }
            let admitted = state.withLock { state in
                guard !state.stopping, state.connections < limits.maximumConnections else { return false }
                state.connections += 1
                return true
            }
            guard admitted else {
                var response = HTTPResponse.error(503, code: "ServiceUnavailable", message: "too many connections; retry later")
                response.add("Retry-After", "1")
                try? UnixSocket.writeAll(client, response.serialized(keepAlive: false))
                close(client)
                handler.refused(503, reason: "too many connections")
                continue
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            configure(client)
            let thread = Thread { [self] in
                var connection = HTTPConnection(fd: client, server: self)
                connection.serve()
                state.withLock { $0.connections -= 1 }
            }
            thread.name = "http-connection"
            thread.start()
        }
    }

    /// Timeouts, so a silent or non-reading peer costs a thread for a bounded time only.
    private func configure(_ fd: Int32) {
        var idle = timeval(tv_sec: limits.idleTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, socklen_t(MemoryLayout<timeval>.size))
        var sending = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sending, socklen_t(MemoryLayout<timeval>.size))
        // A reply larger than a segment must not wait for the client's delayed ACK (Nagle).
        // Unix-socket connections refuse the option, which changes nothing for them.
        var noDelay: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Runs `body` counted as a request in hand (see `stop`).
    func whileBusy<T>(_ body: () -> T) -> T {
        state.withLock { $0.busy += 1 }
        defer { state.withLock { $0.busy -= 1 } }
        return body()
    }
}
