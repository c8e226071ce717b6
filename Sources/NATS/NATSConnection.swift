import Daemon
import Foundation
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Why a NATS operation failed.
public struct NATSError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Not connected now (the client is reconnecting): retry.
        case disconnected
        /// No answer in time: whether the request took effect is unknown.
        case timeout
        /// Nobody listens on the subject (a 503 status).
        case noResponders
        /// The connection was closed by its owner.
        case closed
        /// The arguments cannot be sent (a bad subject or header).
        case invalid
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// A request in flight: its answer arrives on the connection's inbox.
public final class NATSRequest: @unchecked Sendable {
    /// A condition variable, not just a lock: `wait` blocks on it until the answer arrives.
    private let condition = NSCondition()
    private var result: Result<NATSMessage, NATSError>?
    fileprivate let token: UInt64
    fileprivate weak var connection: NATSConnection?

    fileprivate init(token: UInt64, connection: NATSConnection) {
        self.token = token
        self.connection = connection
    }

    fileprivate func complete(_ outcome: Result<NATSMessage, NATSError>) {
        condition.withLock {
            guard result == nil else { return }
            result = outcome
            condition.broadcast()
        }
    }

    /// Waits up to `timeout` seconds for the answer; a request not answered by then is forgotten
    /// (a late answer is dropped) and fails with `timeout`.
    public func wait(timeout: Double) -> Result<NATSMessage, NATSError> {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        while result == nil {
            if !condition.wait(until: deadline) { break }
        }
        let outcome = result
        condition.unlock()
        if let outcome { return outcome }
        connection?.forget(token)
        return .failure(NATSError(.timeout, "no answer within \(timeout) s"))
    }
}

/// A client connection to a NATS server, written for this project: the core protocol (INFO and
/// CONNECT, PUB and HPUB, SUB and UNSUB, MSG and HMSG, PING and PONG, +OK and -ERR), request-reply
/// over one wildcard inbox, and reconnection with backoff across the configured servers and those
/// the cluster advertises (`connect_urls`). Subscriptions are made again after a reconnect;
/// requests in flight when the connection drops fail with `disconnected` (their effect is unknown:
/// callers that must know publish with a `Nats-Msg-Id` and send again).
///
/// One thread reads (and answers the server's PINGs); any thread may publish. Handlers run on the
/// reading thread and must not block.
public final class NATSConnection: @unchecked Sendable {
    /// How to connect.
    public struct Options: Sendable {
        /// The servers to try, in order; servers the cluster advertises are added.
        public var servers: [NATSServerAddress]
        /// The connection's name, shown by the server's monitoring.
        public var name = "metering"
        /// Seconds for one TCP connection and handshake.
        public var connectTimeout = 2.0
        /// The first wait after a failed round of connection attempts; it doubles up to the maximum.
        public var reconnectDelay = 0.05
        public var maximumReconnectDelay = 2.0
        /// Seconds of silence from the server after which a PING is sent.
        public var pingInterval = 2.0
        /// Unanswered PINGs after which the server is taken for dead.
        public var maximumPingsOutstanding = 2
        /// Only the configured servers, never the advertised ones (for a deployment where each
        /// process must talk to the server on its own host).
        public var onlyConfiguredServers = false

        public init(servers: [NATSServerAddress]) { self.servers = servers }
    }

    private struct Subscription {
        var subject: String
        var handler: @Sendable (NATSMessage) -> Void
    }

    public let options: Options
    /// A condition variable, not just a lock: callers wait on it for a connection
    /// (`waitUntilConnected`) and for the reader's end (`close`), the reader for its next attempt.
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var connected = false
    private var closed = false
    private var finished = false
    private var info: NATSServerInfo?
    private var currentServer: NATSServerAddress?
    private var discovered: [NATSServerAddress] = []
    private var subscriptions: [UInt64: Subscription] = [:]
    private var nextSID: UInt64 = 1
    private var pending: [UInt64: NATSRequest] = [:]
    private var nextToken: UInt64 = 1
    private var readerFD: Int32 = -1
    private var connections = 0
    private var lastFailure = "not tried yet"
    /// The socket writes go to, -1 while disconnected (closed only under the lock, so a write
    /// never reaches a reused descriptor). Taken inside `condition` (the reader connecting), so
    /// `condition` is never taken inside it.
    private let writeFD = Mutex<Int32>(-1)
    private let inboxPrefix: String
    private var inboxSID: UInt64 = 0
    private var thread: Thread?

    public init(options: Options) {
        self.options = options
        var generator = SystemRandomNumberGenerator()
        inboxPrefix = "_INBOX." + String(generator.next() as UInt64, radix: 36) + String(generator.next() as UInt64, radix: 36)
    }

    deinit { close() }

    /// Starts the connection and waits up to `timeout` seconds for the first server to accept it.
    /// Fails naming the last reason (refused, authentication) when none did; the connection then
    /// keeps trying in the background until closed.
    public func start(timeout: Double) throws(NATSError) {
        condition.withLock {
            inboxSID = nextSID
            nextSID += 1
            subscriptions[inboxSID] = Subscription(subject: inboxPrefix + ".*") { [weak self] message in self?.answer(message) }
        }
        let thread = Thread { [self] in run() }
        thread.name = "nats-reader"
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
        guard waitUntilConnected(timeout: timeout) else {
            let reason = condition.withLock { lastFailure }
            throw NATSError(.disconnected, "cannot connect to \(options.servers.map(\.description).joined(separator: ", ")): \(reason)")
        }
    }

    /// Waits until connected, at most `timeout` seconds.
    public func waitUntilConnected(timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while !connected && !closed {
            if !condition.wait(until: deadline) { return connected }
        }
        return connected
    }

    /// Whether a server is connected now.
    public var isConnected: Bool { condition.withLock { connected } }

    /// What the connected server said in its `INFO`.
    public var serverInfo: NATSServerInfo? { condition.withLock { info } }

    /// The server connected now (without credentials), and how many connections were made so far.
    public var server: (address: NATSServerAddress?, connections: Int) { condition.withLock { (currentServer, connections) } }

    /// Closes the connection for good: requests in flight fail with `closed`.
    public func close() {
        condition.lock()
        guard !closed else {
            condition.unlock()
            return
        }
        closed = true
        if readerFD >= 0 { shutdown(readerFD, Int32(SHUT_RDWR)) }
        condition.broadcast()
        let started = thread != nil
        while started && !finished { condition.wait() }
        condition.unlock()
    }

    // MARK: publishing

    /// Sends a message (`PUB`, or `HPUB` with headers). Fails with `disconnected` when no server
    /// is connected: nothing was sent then.
    public func publish(subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil, payload: [UInt8]) throws(NATSError) {
        guard NATSCommand.isValidSubject(subject), replyTo.map(NATSCommand.isValidSubject) ?? true else {
            throw NATSError(.invalid, "\"\(subject.prefix(100))\" is not a valid subject")
        }
        if let headers, !headers.fields.allSatisfy({ NATSHeaders.isValid(name: $0.name, value: $0.value) }) {
            throw NATSError(.invalid, "a header name or value cannot be sent")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(payload.count + 128)
        NATSCommand.publish(subject: subject, replyTo: replyTo, headers: headers, payload: payload, to: &bytes)
        try send(bytes)
    }

    /// Sends a request and returns at once; its answer (or failure) comes through the returned
    /// request, so many can be in flight.
    public func request(subject: String, headers: NATSHeaders? = nil, payload: [UInt8]) throws(NATSError) -> NATSRequest {
        let request = condition.withLock { () -> NATSRequest in
            let request = NATSRequest(token: nextToken, connection: self)
            pending[nextToken] = request
            nextToken += 1
            return request
        }
        do {
            try publish(subject: subject, replyTo: inboxPrefix + "." + String(request.token), headers: headers, payload: payload)
        } catch {
            forget(request.token)
            throw error
        }
        return request
    }

    /// Sends a request and waits for its answer.
    public func requestAndWait(subject: String, headers: NATSHeaders? = nil, payload: [UInt8], timeout: Double) -> Result<
        NATSMessage, NATSError
    > {
        do {
            return try request(subject: subject, headers: headers, payload: payload).wait(timeout: timeout)
        } catch {
            return .failure(error)
        }
    }

    fileprivate func forget(_ token: UInt64) { _ = condition.withLock { pending.removeValue(forKey: token) } }

    /// Subscribes `handler` to `subject` (kept across reconnects). Returns the subscription's id.
    @discardableResult
    public func subscribe(subject: String, handler: @escaping @Sendable (NATSMessage) -> Void) throws(NATSError) -> UInt64 {
        guard NATSCommand.isValidSubject(subject) else { throw NATSError(.invalid, "\"\(subject.prefix(100))\" is not a valid subject") }
        let (sid, isConnected) = condition.withLock { () -> (UInt64, Bool) in
            let sid = nextSID
            nextSID += 1
            subscriptions[sid] = Subscription(subject: subject, handler: handler)
            return (sid, connected)
        }
        // When not connected, the next connection subscribes it.
        if isConnected { try? send(NATSCommand.subscribe(subject: subject, sid: sid)) }
        return sid
    }

    /// Ends a subscription.
    public func unsubscribe(_ sid: UInt64) {
        let known = condition.withLock { subscriptions.removeValue(forKey: sid) != nil }
        if known { try? send(NATSCommand.unsubscribe(sid: sid)) }
    }

    private func send(_ bytes: [UInt8]) throws(NATSError) {
        let sent = writeFD.withLock { fd -> Bool? in
            guard fd >= 0 else { return nil }
            guard Self.writeAll(fd, bytes) else {
                // The reader notices the broken connection and reconnects.
                shutdown(fd, Int32(SHUT_RDWR))
                return false
            }
            return true
        }
        switch sent {
        case nil:
            // Asked after the write lock is released: the reader takes the two the other way round.
            throw NATSError(condition.withLock { closed } ? .closed : .disconnected, "not connected to a NATS server")
        case false?:
            throw NATSError(.disconnected, "the connection to the NATS server broke while sending")
        case true?:
            break
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if written < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }

    // MARK: the reading thread

    private func run() {
        var delay = options.reconnectDelay
        var failedRounds = 0
        while !condition.withLock({ closed }) {
            if let (fd, parser) = establish() {
                delay = options.reconnectDelay
                if failedRounds > 0 { Log.notice("NATS: connected again to \(server.address?.description ?? "?")") }
                failedRounds = 0
                read(fd, parser: parser)
                teardown(fd)
                continue
            }
            failedRounds += 1
            if failedRounds == 1 || failedRounds % 30 == 0 {
                Log.warning("NATS: cannot connect to any server (\(condition.withLock { lastFailure })); retrying")
            }
            let deadline = Date(timeIntervalSinceNow: delay)
            condition.withLock {
                while !closed { if !condition.wait(until: deadline) { break } }
            }
            delay = min(delay * 2, options.maximumReconnectDelay)
        }
        condition.withLock {
            finished = true
            condition.broadcast()
        }
    }

    /// The servers to try this round: the configured ones, then those the cluster advertised,
    /// starting after the one used last so a dead server is not tried first again.
    private func candidates() -> [NATSServerAddress] {
        condition.withLock {
            var list = options.servers
            if !options.onlyConfiguredServers {
                for address in discovered where !list.contains(where: { $0.host == address.host && $0.port == address.port }) {
                    list.append(address)
                }
            }
            if let current = currentServer, let index = list.firstIndex(of: current) {
                list = Array(list[(index + 1)...] + list[...index])
            }
            return list
        }
    }

    private func establish() -> (Int32, NATSParser)? {
        for address in candidates() {
            if condition.withLock({ closed }) { return nil }
            do {
                return try handshake(address)
            } catch {
                condition.withLock { lastFailure = "\(address): \(error.message)" }
            }
        }
        return nil
    }

    private func handshake(_ address: NATSServerAddress) throws(NATSError) -> (Int32, NATSParser) {
        let fd = try Self.connectTCP(host: address.host, port: address.port, timeout: options.connectTimeout)
        var ok = false
        defer { if !ok { Glibc.close(fd) } }
        Self.setReceiveTimeout(fd, seconds: options.connectTimeout)
        var parser = NATSParser()
        var operations: [NATSServerOperation] = []
        var serverInfo: NATSServerInfo?
        func next() throws(NATSError) -> NATSServerOperation {
            while operations.isEmpty {
                var chunk = [UInt8](repeating: 0, count: 64 << 10)
                let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { throw NATSError(.disconnected, count == 0 ? "closed during the handshake" : "no INFO in time") }
                do {
                    operations = try parser.parse(chunk[0..<count])
                } catch {
                    throw NATSError(.disconnected, "\(error)")
                }
            }
            return operations.removeFirst()
        }
        guard case .info(let json) = try next() else { throw NATSError(.disconnected, "the server did not start with INFO") }
        do {
            serverInfo = try NATSServerInfo.decode(json)
        } catch {
            throw NATSError(.disconnected, "\(error)")
        }
        guard let serverInfo, serverInfo.headers else { throw NATSError(.disconnected, "the server does not support headers") }
        let credentials = address.user == nil && address.token == nil ? options.servers.first : address
        var hello = NATSCommand.connect(
            name: options.name, user: credentials?.user, password: credentials?.password, token: credentials?.token)
        hello += NATSCommand.ping
        guard Self.writeAll(fd, hello) else { throw NATSError(.disconnected, "the connection broke during the handshake") }
        while true {
            switch try next() {
            case .pong:
                break
            case .error(let text):
                throw NATSError(.disconnected, "the server refused the connection: \(text)")
            case .ping:
                _ = Self.writeAll(fd, NATSCommand.pong)
                continue
            default:
                continue
            }
            break
        }
        // Subscriptions first, then the writers are let in: a request's reply always finds the inbox.
        condition.lock()
        var subscribe: [UInt8] = []
        for (sid, subscription) in subscriptions.sorted(by: { $0.key < $1.key }) {
            subscribe += NATSCommand.subscribe(subject: subscription.subject, sid: sid)
        }
        guard Self.writeAll(fd, subscribe) else {
            condition.unlock()
            throw NATSError(.disconnected, "the connection broke while subscribing")
        }
        writeFD.withLock { $0 = fd }
        connected = true
        readerFD = fd
        info = serverInfo
        currentServer = address
        connections += 1
        discovered = serverInfo.connectURLs.compactMap { NATSServerAddress($0) }
        condition.broadcast()
        condition.unlock()
        // What arrived with the PONG is handled by the reading loop.
        Self.setReceiveTimeout(fd, seconds: min(1, options.pingInterval))
        ok = true
        for operation in operations { handle(operation, fd: fd) }
        return (fd, parser)
    }

    private func read(_ fd: Int32, parser: NATSParser) {
        var parser = parser
        var chunk = [UInt8](repeating: 0, count: 256 << 10)
        var lastHeard = Date()
        var pingsOut = 0
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                if condition.withLock({ closed }) { return }
                if Date().timeIntervalSince(lastHeard) >= options.pingInterval {
                    if pingsOut >= options.maximumPingsOutstanding {
                        Log.warning("NATS: \(server.address?.description ?? "the server") did not answer \(pingsOut) PINGs; reconnecting")
                        return
                    }
                    pingsOut += 1
                    lastHeard = Date()
                    try? send(NATSCommand.ping)
                }
                continue
            }
            guard count > 0 else {
                if !condition.withLock({ closed }) {
                    Log.warning("NATS: the connection to \(server.address?.description ?? "the server") was lost; reconnecting")
                }
                return
            }
            lastHeard = Date()
            pingsOut = 0
            let operations: [NATSServerOperation]
            do {
                operations = try parser.parse(chunk[0..<count])
            } catch {
                Log.error("NATS: \(error); reconnecting")
                return
            }
            for operation in operations { handle(operation, fd: fd) }
        }
    }

    private func handle(_ operation: NATSServerOperation, fd: Int32) {
        switch operation {
        case .ping:
            try? send(NATSCommand.pong)
        case .message(let message):
            let handler = condition.withLock { subscriptions[message.sid]?.handler }
            handler?(message)
        case .error(let text):
            Log.warning("NATS: the server says: \(text)")
        case .info(let json):
            if let update = try? NATSServerInfo.decode(json) {
                condition.withLock {
                    info = update
                    discovered = update.connectURLs.compactMap { NATSServerAddress($0) }
                }
            }
        case .pong, .ok:
            break
        }
    }

    /// A message on the inbox: the answer to the request its last token names.
    private func answer(_ message: NATSMessage) {
        guard let dot = message.subject.lastIndex(of: "."), let token = UInt64(message.subject[message.subject.index(after: dot)...]) else {
            return
        }
        guard let request = condition.withLock({ pending.removeValue(forKey: token) }) else { return }
        if message.headers?.status == 503 {
            request.complete(.failure(NATSError(.noResponders, "nobody answers on that subject now")))
        } else {
            request.complete(.success(message))
        }
    }

    private func teardown(_ fd: Int32) {
        writeFD.withLock { writeFD in
            Glibc.close(fd)
            writeFD = -1
        }
        let failed = condition.withLock { () -> [NATSRequest] in
            connected = false
            readerFD = -1
            let failed = Array(pending.values)
            pending.removeAll()
            return failed
        }
        let error = NATSError(condition.withLock { closed } ? .closed : .disconnected, "the connection to the NATS server was lost")
        for request in failed { request.complete(.failure(error)) }
    }

    // MARK: sockets

    private static func setReceiveTimeout(_ fd: Int32, seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - floor(seconds)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A connected, blocking TCP socket to `host:port`, within `timeout` seconds per address.
    static func connectTCP(host: String, port: UInt16, timeout: Double) throws(NATSError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw NATSError(.disconnected, "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var failure = "no address"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            cursor = entry.pointee.ai_next
            let fd = socket(entry.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var result = Glibc.connect(fd, entry.pointee.ai_addr, entry.pointee.ai_addrlen)
            if result != 0 && errno == EINPROGRESS {
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&poller, 1, Int32(timeout * 1000)) == 1 {
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                    result = error == 0 ? 0 : -1
                    errno = error
                } else {
                    errno = ETIMEDOUT
                }
            }
            if result == 0 {
                _ = fcntl(fd, F_SETFL, flags)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            failure = String(cString: strerror(errno))
            Glibc.close(fd)
        }
        throw NATSError(.disconnected, failure)
    }
}
