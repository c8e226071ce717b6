import CWireShims
import Daemon
import Foundation
import Synchronization
public import SystemIO
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Serves the requests of an `HTTPServer`, on its worker threads.
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest) -> HTTPReply
    /// A request the server answered itself with `status` because it could not be served
    /// (malformed, too large, the server full).
    func refused(_ status: Int, reason: String)
}

/// A small HTTP/1.1 server on a TCP or Unix socket: keep-alive and pipelining, bounded head and
/// body sizes, a bounded number of connections, and deadlines that slow clients cannot stretch.
///
/// One thread does the waiting: it accepts, reads request heads and bodies as they trickle in,
/// and enforces the deadlines, so a connection that sends slowly costs a buffer, never a thread.
/// A complete request goes to a worker thread (at most `maximumConcurrentRequests`), which runs
/// the handler and writes the answer, then hands the connection back.
///
/// - A request's head and body must be complete `requestTimeoutSeconds` after its first byte
///   (else 408 and a close), a connection waits `idleTimeoutSeconds` at most for its next
///   request, and an answer must be taken within `responseTimeoutSeconds`.
/// - When all `maximumConnections` are open, a new connection is admitted by closing the one that
///   has waited longest for its client (idle, or still sending its request): a trickle of header
///   bytes keeps nobody out. Only when every connection has a request in hand is a new one
///   refused, with 503.
///
/// Unchecked because the connection table and what follows it are the I/O thread's alone; what
/// the workers and callers share with that thread is in `shared`.
public final class HTTPServer: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Request line and header fields together.
        public var maximumHeadBytes = 16 << 10
        public var maximumBodyBytes = 1 << 20
        public var maximumConnections = 256
        /// Requests handled at once; complete requests beyond wait their turn.
        public var maximumConcurrentRequests = 64
        /// A connection with no request started for this long is closed.
        public var idleTimeoutSeconds = 60.0
        /// A request's head and body must be complete this long after its first byte.
        public var requestTimeoutSeconds = 10.0
        /// An answer must be taken by the client within this long.
        public var responseTimeoutSeconds = 30.0

        public init() {}
    }

    public let limits: Limits
    public let handler: any HTTPHandler
    /// The address actually bound (the port is the kernel's choice when 0 was asked for).
    public let host: String
    public let port: Int
    private let listener: Int32
    private let epollFD: Int32
    private let wakeFD: Int32
    let workers: WorkerPool

    private let shared = Mutex(Shared())
    private let stopped = DispatchSemaphore(value: 0)
    private var loopThread: Thread?

    // Touched by the I/O thread only.
    private var connections: [UInt64: HTTPConnection] = [:]
    private var nextID: UInt64 = 1
    private var nextSweep = 0.0
    private var listenerPaused = false
    private var lastAcceptWarning = -Double.infinity
    private var evicted = 0
    private var lastEvictionWarning = -Double.infinity

    /// What the workers and the callers share with the I/O thread.
    private struct Shared {
        /// Connections handed back by workers.
        var returned: [(HTTPConnection, keep: Bool)] = []
        var openCount = 0
        var stopping = false
        /// Requests being handled or answered right now: a stop waits for them.
        var busy = 0
    }
    private var timedOut = 0
    private var lastTimeoutWarning = -Double.infinity
    private var scratch = [UInt8](repeating: 0, count: 64 << 10)

    private static let listenerTag: UInt64 = 1 << 63
    private static let wakeTag: UInt64 = 1 << 62

    /// Binds and listens on `host:port` (IPv4).
    public convenience init(host: String, port: Int, limits: Limits, handler: any HTTPHandler) throws(SystemError) {
        UnixSocket.ignoreSIGPIPE()
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
        guard listen(fd, 1024) == 0 else {
            let error = SystemError("listen", "\(host):\(port)")
            close(fd)
            throw error
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        try self.init(listener: fd, host: host, port: Int(UInt16(bigEndian: actual.sin_port)), limits: limits, handler: handler)
    }

    /// Binds and listens on a Unix socket at `socketPath` with file mode `mode`, for a reverse
    /// proxy on the same host (a stale socket file is replaced, a live one is an error).
    /// `host` is then `unix:` and the path, and `port` is 0.
    public convenience init(socketPath: String, mode: UInt32 = 0o660, limits: Limits, handler: any HTTPHandler) throws(SystemError) {
        UnixSocket.ignoreSIGPIPE()
        let fd = try UnixSocket.listen(path: socketPath, mode: mode_t(mode), backlog: 1024)
        try self.init(listener: fd, host: "unix:" + socketPath, port: 0, limits: limits, handler: handler)
    }

    private init(listener: Int32, host: String, port: Int, limits: Limits, handler: any HTTPHandler) throws(SystemError) {
        self.listener = listener
        self.host = host
        self.port = port
        self.limits = limits
        self.handler = handler
        workers = WorkerPool(maximum: max(1, limits.maximumConcurrentRequests))
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epollFD >= 0 else {
            close(listener)
            throw SystemError("epoll_create1")
        }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0 else {
            close(listener)
            close(epollFD)
            throw SystemError("eventfd")
        }
        var wake = cwire_epoll_event(EPOLLIN.rawValue, Self.wakeTag)
        epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &wake)
        var accepting = cwire_epoll_event(EPOLLIN.rawValue, Self.listenerTag)
        epoll_ctl(epollFD, EPOLL_CTL_ADD, listener, &accepting)
    }

    /// Starts serving, on a thread of its own.
    public func start() {
        let thread = Thread { [self] in runLoop() }
        thread.name = "http-io"
        loopThread = thread
        thread.start()
    }

    /// Stops accepting, closes the connections waiting for their clients, and waits up to
    /// `seconds` for the requests in hand to be answered.
    public func stop(waitingUpTo seconds: Double) {
        let already = shared.withLock { shared -> Bool in
            defer { shared.stopping = true }
            return shared.stopping
        }
        guard !already else { return }
        wake()
        if loopThread != nil { stopped.wait() }
        let deadline = Date().addingTimeInterval(seconds)
        while shared.withLock({ $0.busy }) > 0 && Date() < deadline { usleep(10_000) }
    }

    /// The number of open connections.
    public var connectionCount: Int { shared.withLock { $0.openCount } }

    // MARK: the I/O thread

    private func runLoop() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        while true {
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, 256, 250) }
            if count < 0 && errno != EINTR {
                Log.error("epoll_wait failed: \(SystemError("epoll_wait")); the HTTP server stops")
                break
            }
            if shared.withLock({ $0.stopping }) { break }
            for index in 0..<max(0, Int(count)) {
                let data = withUnsafePointer(to: &events[index]) { cwire_epoll_event_data($0) }
                if data == Self.wakeTag {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                } else if data == Self.listenerTag {
                    acceptAll()
                } else if let connection = connections[data] {
                    readable(connection)
                }
            }
            takeBack()
            sweep()
        }
        close(listener)
        for connection in connections.values where connection.phase != .serving { discard(connection) }
        close(wakeFD)
        stopped.signal()
    }

    private func acceptAll() {
        while true {
            let fd = cwire_accept_nonblocking(listener)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO: continue
                case EAGAIN: return
                default:
                    // Out of descriptors or memory: the listener stays readable; the next sweep
                    // (or a closing connection) gives room, and the loop must not spin meanwhile.
                    let now = MonotonicClock.now()
                    if now - lastAcceptWarning > 10 {
                        Log.warning("accept: \(SystemError("accept4")); retrying")
                        lastAcceptWarning = now
                    }
                    var event = cwire_epoll_event(0, Self.listenerTag)
                    epoll_ctl(epollFD, EPOLL_CTL_MOD, listener, &event)
                    nextSweep = min(nextSweep, now + 0.1)
                    listenerPaused = true
                    return
                }
            }
            admit(fd)
        }
    }

    /// Registers a new connection, closing the one that has waited longest for its client when
    /// the server is full; refused with 503 when every connection has a request in hand.
    private func admit(_ fd: Int32) {
        let now = MonotonicClock.now()
        if connections.count >= limits.maximumConnections {
            let room = makeRoom()
            if case .full = room {
                var response = HTTPResponse.error(503, code: "ServiceUnavailable", message: "too many connections; retry later")
                response.add("Retry-After", "1")
                // A fresh socket's buffer takes the whole answer: never block this thread.
                let bytes = response.serialized(keepAlive: false)
                _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                close(fd)
                handler.refused(503, reason: "too many connections, every one of them with a request in hand")
                return
            }
            if case .close(let victim) = room {
                evicted += 1
                if now - lastEvictionWarning >= 10 {
                    Log.warning(
                        "all \(limits.maximumConnections) connections taken: closed \(evicted) that waited longest for their clients (the last after \(Int(now - victim.since)) s) to admit new ones"
                    )
                    evicted = 0
                    lastEvictionWarning = now
                }
                discard(victim)
            }
        }
        // A reply larger than a segment must not wait for the client's delayed ACK (Nagle).
        // Unix-socket connections refuse the option, which changes nothing for them.
        var noDelay: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        let connection = HTTPConnection(id: nextID, fd: fd, server: self)
        nextID += 1
        connection.awaitRequest(now: now)
        connections[connection.id] = connection
        shared.withLock { $0.openCount += 1 }
        var event = cwire_epoll_event(EPOLLIN.rawValue | EPOLLRDHUP.rawValue, connection.id)
        if epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) != 0 { discard(connection) }
    }

    private enum Room {
        /// A connection closed (or was handed back closed) meanwhile.
        case free
        /// Close this one, the one that has waited longest for its client.
        case close(HTTPConnection)
        /// Every connection has a request in hand.
        case full
    }

    /// How to admit a new connection into a full server. A request already in a candidate's
    /// socket buffer is taken first (and served): a client that sent its request in time is
    /// never closed for a newcomer.
    private func makeRoom() -> Room {
        let candidates = connections.values.filter { $0.phase != .serving }.sorted { $0.since < $1.since }
        for candidate in candidates {
            readable(candidate)
            if connections.count < limits.maximumConnections { return .free }
            if candidate.phase != .serving && connections[candidate.id] != nil { return .close(candidate) }
        }
        return .full
    }

    /// Reads what arrived; hands a complete request to a worker.
    private func readable(_ connection: HTTPConnection) {
        switch connection.receive(now: MonotonicClock.now(), scratch: &scratch) {
        case .waiting:
            break
        case .closed:
            discard(connection)
        case .ready:
            epoll_ctl(epollFD, EPOLL_CTL_DEL, connection.fd, nil)
            connection.phase = .serving
            shared.withLock { $0.busy += 1 }
            workers.run { [self] in
                let keep = connection.serve()
                let closing = shared.withLock { shared -> Bool in
                    shared.busy -= 1
                    // Stopped meanwhile: the I/O thread is gone, so the worker closes it.
                    if shared.stopping {
                        shared.openCount -= 1
                        return true
                    }
                    shared.returned.append((connection, keep))
                    return false
                }
                if closing { close(connection.fd) } else { wake() }
            }
        }
    }

    /// Connections whose requests are answered: back to waiting, or closed.
    private func takeBack() {
        let back = shared.withLock { shared -> [(HTTPConnection, keep: Bool)] in
            defer { shared.returned.removeAll() }
            return shared.returned
        }
        let now = MonotonicClock.now()
        for (connection, keep) in back {
            guard keep, !shared.withLock({ $0.stopping }) else {
                discard(connection)
                continue
            }
            connection.awaitRequest(now: now)
            var event = cwire_epoll_event(EPOLLIN.rawValue | EPOLLRDHUP.rawValue, connection.id)
            guard epoll_ctl(epollFD, EPOLL_CTL_ADD, connection.fd, &event) == 0 else {
                discard(connection)
                continue
            }
            // A pipelined request may be complete in the buffer already.
            if connection.hasBufferedBytes { readable(connection) }
        }
    }

    /// Closes connections past their deadline (408 for a request that did not arrive in time),
    /// and lets a listener that ran out of descriptors accept again.
    private func sweep() {
        let now = MonotonicClock.now()
        guard now >= nextSweep else { return }
        nextSweep = now + 0.25
        if listenerPaused {
            listenerPaused = false
            var event = cwire_epoll_event(EPOLLIN.rawValue, Self.listenerTag)
            epoll_ctl(epollFD, EPOLL_CTL_MOD, listener, &event)
        }
        for connection in connections.values where connection.phase != .serving && connection.deadline <= now {
            if connection.phase == .reading {
                connection.answerTimeout()
                timedOut += 1
            }
            discard(connection)
        }
        if timedOut > 0 && now - lastTimeoutWarning >= 10 {
            Log.warning(
                "closed \(timedOut) connections whose request did not arrive within \(Int(limits.requestTimeoutSeconds)) s (408) since the last such warning"
            )
            timedOut = 0
            lastTimeoutWarning = now
        }
    }

    /// Forgets and closes a connection that no worker holds.
    private func discard(_ connection: HTTPConnection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        epoll_ctl(epollFD, EPOLL_CTL_DEL, connection.fd, nil)
        close(connection.fd)
        shared.withLock { $0.openCount -= 1 }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }
}

/// The threads that run handlers: started when needed, up to `maximum`, and kept while there
/// is work.
final class WorkerPool: @unchecked Sendable {
    private let maximum: Int
    /// A condition variable, not just a lock: idle workers wait on it for the next job (30 s at most).
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var threads = 0
    private var idle = 0

    init(maximum: Int) { self.maximum = maximum }

    func run(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        if idle == 0 && threads < maximum {
            threads += 1
            let thread = Thread { [self] in work() }
            thread.name = "http-worker"
            thread.start()
        } else {
            condition.signal()
        }
        condition.unlock()
    }

    private func work() {
        condition.lock()
        while true {
            while jobs.isEmpty {
                idle += 1
                let woken = condition.wait(until: Date().addingTimeInterval(30))
                idle -= 1
                if !woken && jobs.isEmpty {
                    threads -= 1
                    condition.unlock()
                    return
                }
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
            condition.lock()
        }
    }
}
