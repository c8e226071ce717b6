import CWireShims
import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Serves requests arriving on a connection. Called on a worker thread, one request at a time
/// per connection (pipelined requests wait their turn, so responses keep their order).
public protocol RequestHandler: Sendable {
    /// Handles `request` and calls `done` once its last frame has been sent. A streaming
    /// operation may send many frames, and may never call `done` (it ends with the connection).
    func handle(_ request: Request, on connection: Connection, done: @escaping @Sendable () -> Void)

    /// Offered every frame before it is decoded as a request: a handler that reads some requests
    /// straight from their bytes (ingest's appends) answers true when it took this one, and then
    /// calls `done` as `handle` would. The default takes none.
    func handle(frame: [UInt8], on connection: Connection, done: @escaping @Sendable () -> Void) -> Bool
}

extension RequestHandler {
    public func handle(frame: [UInt8], on connection: Connection, done: @escaping @Sendable () -> Void) -> Bool { false }
}

/// A listening socket and the name the handler sees it by (`client`, `admin`, ...).
public struct Listener: Sendable {
    public var descriptor: Int32
    public var name: String
    public init(descriptor: Int32, name: String) {
        self.descriptor = descriptor
        self.name = name
    }
}

/// A length-prefixed JSON server on Unix sockets: one epoll thread does the I/O, requests are
/// handled on Dispatch's worker threads.
///
/// Memory per connection is bounded: a frame is at most `maximumFrameLength`, reading pauses while
/// `maximumQueuedRequests` requests wait, and streams wait while unsent output exceeds
/// `outputHighWater`. A protocol error gets an error frame and closes that connection only.
public final class UnixServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var maximumFrameLength = FrameEncoder.defaultMaximumFrameLength
        public var maximumConnections = 16_384
        public var maximumQueuedRequests = 32
        public var maximumJSONDepth = JSONParser.defaultMaximumDepth
        public var outputHighWater = 4 << 20
        public init() {}
    }

    public let configuration: Configuration
    let handler: any RequestHandler
    private let listeners: [Listener]
    let epollFD: Int32
    private let wakeFD: Int32
    private let lock = NSLock()
    private var connections: [UInt64: Connection] = [:]
    private var nextConnectionID: UInt64 = 1
    private var stopping = false
    private var loopThread: Thread?
    private let stopped = DispatchSemaphore(value: 0)
    private var lastLimitWarning = 0.0

    private static let listenerTag: UInt64 = 1 << 63
    private static let wakeTag: UInt64 = 1 << 62

    public init(listeners: [Listener], configuration: Configuration = Configuration(), handler: any RequestHandler) throws(SystemError) {
        UnixSocket.ignoreSIGPIPE()
        self.listeners = listeners
        self.configuration = configuration
        self.handler = handler
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epollFD >= 0 else { throw SystemError("epoll_create1") }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0 else { throw SystemError("eventfd") }
        var wake = cwire_epoll_event(EPOLLIN.rawValue, Self.wakeTag)
        epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &wake)
        for (index, listener) in listeners.enumerated() {
            let flags = fcntl(listener.descriptor, F_GETFL)
            _ = fcntl(listener.descriptor, F_SETFL, flags | O_NONBLOCK)
            var event = cwire_epoll_event(EPOLLIN.rawValue, Self.listenerTag | UInt64(index))
            guard epoll_ctl(epollFD, EPOLL_CTL_ADD, listener.descriptor, &event) == 0 else {
                throw SystemError("epoll_ctl", "listener \(listener.name)")
            }
        }
    }

    /// The number of open connections.
    public var connectionCount: Int { lock.withLock { connections.count } }

    /// Starts the I/O thread.
    public func start() {
        let thread = Thread { [self] in runLoop() }
        thread.name = "wire-epoll"
        thread.stackSize = 1 << 20
        loopThread = thread
        thread.start()
    }

    /// Stops accepting, closes every connection and waits for the I/O thread to end.
    public func stop() {
        let alreadyStopping = lock.withLock { () -> Bool in
            defer { stopping = true }
            return stopping
        }
        if alreadyStopping { return }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
        if loopThread != nil { stopped.wait() }
        let open = lock.withLock { Array(connections.values) }
        for connection in open { connection.close() }
        for listener in listeners { close(listener.descriptor) }
        close(wakeFD)
        close(epollFD)
    }

    private func runLoop() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, 256, -1) }
            if count < 0 {
                if errno == EINTR { continue }
                Log.error("epoll_wait failed: \(SystemError("epoll_wait")); the server stops")
                break
            }
            if lock.withLock({ stopping }) { break }
            for index in 0..<Int(count) {
                let data = withUnsafePointer(to: &events[index]) { cwire_epoll_event_data($0) }
                let flags = events[index].events
                if data == Self.wakeTag {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                } else if data & Self.listenerTag != 0 {
                    accept(listener: listeners[Int(data & ~Self.listenerTag)])
                } else if let connection = lock.withLock({ connections[data] }) {
                    connection.handleEvents(flags, buffer: &buffer)
                }
            }
        }
        stopped.signal()
    }

    private func accept(listener: Listener) {
        while true {
            let fd = cwire_accept_nonblocking(listener.descriptor)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EAGAIN: return
                case EMFILE, ENFILE:
                    warnLimit("cannot accept on \(listener.name): \(SystemError("accept4")); raise LimitNOFILE")
                    usleep(10_000)
                    return
                default:
                    Log.warning("accept on \(listener.name) failed: \(SystemError("accept4"))")
                    return
                }
            }
            var pid: pid_t = 0
            var uid: uid_t = 0
            var gid: gid_t = 0
            _ = cwire_peercred(fd, &pid, &uid, &gid)
            let peer = PeerCredentials(pid: pid, uid: uid, gid: gid)
            let admitted = lock.withLock { () -> UInt64? in
                guard connections.count < configuration.maximumConnections else { return nil }
                defer { nextConnectionID += 1 }
                return nextConnectionID
            }
            guard let id = admitted else {
                warnLimit("refused a connection on \(listener.name) from \(peer): \(configuration.maximumConnections) connections are open")
                let refusal = FrameEncoder.frame(Response.error(id: nil, WireError(.unavailable, "too many connections; try again later")))
                _ = refusal.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                close(fd)
                continue
            }
            let connection = Connection(id: id, fd: fd, listener: listener.name, peer: peer, server: self)
            lock.withLock { connections[id] = connection }
            var event = cwire_epoll_event(EPOLLIN.rawValue | EPOLLRDHUP.rawValue, id)
            if epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) != 0 {
                Log.warning("epoll_ctl add failed: \(SystemError("epoll_ctl"))")
                connection.close()
            }
        }
    }

    private func warnLimit(_ message: String) {
        let now = Date().timeIntervalSince1970
        let due = lock.withLock { () -> Bool in
            guard now - lastLimitWarning > 5 else { return false }
            lastLimitWarning = now
            return true
        }
        if due { Log.warning(message) }
    }

    func remove(_ connection: Connection) {
        _ = lock.withLock { connections.removeValue(forKey: connection.id) }
    }
}

/// One client connection. Thread-safe: the I/O thread reads, handlers send from any thread.
public final class Connection: @unchecked Sendable {
    private enum Item {
        case frame([UInt8])
        case protocolError(WireError)
    }

    let id: UInt64
    /// The name of the listener it arrived on (`client`, `admin`, ...).
    public let listener: String
    /// Who connected (`SO_PEERCRED`), for logs.
    public let peer: PeerCredentials
    private let fd: Int32
    private unowned let server: UnixServer
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var closed = false
    private var closeAfterFlush = false
    private var inbox: [Item] = []
    private var inboxBytes = 0
    private var busy = false
    private var readPaused = false
    private var readEOF = false
    private var streaming = false
    private var interest: UInt32
    private var closeHandlers: [@Sendable () -> Void] = []
    // Touched by the I/O thread only.
    private var decoder: FrameDecoder

    init(id: UInt64, fd: Int32, listener: String, peer: PeerCredentials, server: UnixServer) {
        self.id = id
        self.fd = fd
        self.listener = listener
        self.peer = peer
        self.server = server
        self.decoder = FrameDecoder(maximumFrameLength: server.configuration.maximumFrameLength)
        self.interest = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    }

    /// True once the connection is closed (by either side).
    public var isClosed: Bool { condition.withLock { closed } }

    /// Marks the current request as a stream: when the peer hangs up the connection closes at once.
    public func markStreaming() { condition.withLock { streaming = true } }

    /// Runs `handler` once when the connection closes (at once if it is closed already).
    public func onClose(_ handler: @escaping @Sendable () -> Void) {
        let runNow = condition.withLock { () -> Bool in
            if closed { return true }
            closeHandlers.append(handler)
            return false
        }
        if runNow { handler() }
    }

    /// Sends one frame carrying `payload`. Never blocks; a dead peer closes the connection.
    public func send(_ payload: [UInt8]) {
        condition.lock()
        guard !closed else {
            condition.unlock()
            return
        }
        FrameEncoder.append(payload, to: &output)
        let handlers = flushLocked()
        condition.unlock()
        for handler in handlers { handler() }
    }

    /// Blocks while more than the configured high-water mark of output is unsent. Returns false
    /// when the connection closed. Streams call this between batches, so a slow reader slows the
    /// stream instead of growing memory.
    public func waitForOutputSpace() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !closed && output.count - outputOffset > server.configuration.outputHighWater { condition.wait() }
        return !closed
    }

    /// Closes the connection now.
    public func close() {
        condition.lock()
        let handlers = closeLocked()
        condition.unlock()
        for handler in handlers { handler() }
    }

    // MARK: I/O thread

    func handleEvents(_ flags: UInt32, buffer: inout [UInt8]) {
        if flags & (EPOLLERR.rawValue) != 0 {
            close()
            return
        }
        if flags & EPOLLOUT.rawValue != 0 {
            condition.lock()
            let handlers = flushLocked()
            condition.unlock()
            for handler in handlers { handler() }
        }
        if flags & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLRDHUP.rawValue) != 0 { readAvailable(&buffer) }
    }

    private func readAvailable(_ buffer: inout [UInt8]) {
        for _ in 0..<8 {
            if condition.withLock({ closed || readPaused || readEOF }) { return }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 {
                do {
                    let frames = try decoder.decode(buffer[0..<count])
                    enqueue(frames.map { .frame($0) })
                } catch {
                    Log.warning("protocol error on \(listener) from \(peer): \(error); closing the connection")
                    enqueue([.protocolError(WireError(.badFrame, error.description))], stopReading: true)
                    return
                }
            } else if count == 0 {
                var failure: WireError?
                do { try decoder.finish() } catch {
                    Log.warning("\(listener) connection from \(peer) ended inside a frame: \(error)")
                    failure = WireError(.badFrame, error.description)
                }
                endOfInput(failure)
                return
            } else {
                if errno == EINTR { continue }
                if errno == EAGAIN { return }
                close()
                return
            }
        }
    }

    private func endOfInput(_ failure: WireError?) {
        if let failure, !condition.withLock({ streaming }) {
            // A half-closed peer can still read why its last frame was dropped.
            enqueue([.protocolError(failure)], stopReading: true)
            return
        }
        condition.lock()
        readEOF = true
        let handlers: [@Sendable () -> Void]
        if streaming || (!busy && inbox.isEmpty) {
            handlers = closeLocked()
        } else {
            updateInterestLocked()
            handlers = []
        }
        condition.unlock()
        for handler in handlers { handler() }
    }

    private func enqueue(_ items: [Item], stopReading: Bool = false) {
        guard !items.isEmpty else { return }
        condition.lock()
        inbox.append(contentsOf: items)
        for case .frame(let payload) in items { inboxBytes += payload.count }
        if stopReading || inbox.count >= server.configuration.maximumQueuedRequests
            || inboxBytes >= server.configuration.maximumFrameLength
        {
            readPaused = true
            if stopReading { readEOF = true }
            updateInterestLocked()
        }
        let start = !busy
        busy = true
        condition.unlock()
        if start { scheduleNext() }
    }

    // MARK: request processing

    /// The handler is done with the current request: go on with the next queued one, if any.
    /// With nothing queued the connection just becomes idle, without a trip through Dispatch.
    private func requestFinished() {
        condition.lock()
        if !closed && inbox.isEmpty && !readEOF {
            busy = false
            condition.unlock()
            return
        }
        condition.unlock()
        scheduleNext()
    }

    private func scheduleNext() {
        DispatchQueue.global().async { self.processNext() }
    }

    private func processNext() {
        condition.lock()
        guard !closed, !inbox.isEmpty else {
            busy = false
            var handlers: [@Sendable () -> Void] = []
            if !closed && readEOF {
                closeAfterFlush = true
                handlers = flushLocked()
            }
            condition.unlock()
            for handler in handlers { handler() }
            return
        }
        let item = inbox.removeFirst()
        if case .frame(let payload) = item { inboxBytes -= payload.count }
        if readPaused && !readEOF && inbox.count < server.configuration.maximumQueuedRequests / 2 {
            readPaused = false
            updateInterestLocked()
        }
        condition.unlock()
        switch item {
        case .protocolError(let error):
            condition.lock()
            FrameEncoder.append(Response.error(id: nil, error), to: &output)
            closeAfterFlush = true
            let handlers = flushLocked()
            condition.unlock()
            for handler in handlers { handler() }
        case .frame(let payload):
            if server.handler.handle(frame: payload, on: self, done: { [self] in requestFinished() }) { return }
            switch Request.decode(payload, maximumDepth: server.configuration.maximumJSONDepth) {
            case .failure(let failure):
                Log.notice("rejected a request on \(listener) from \(peer): \(failure.error)")
                send(Response.error(id: failure.id, failure.error))
                requestFinished()
            case .success(let request):
                server.handler.handle(request, on: self) { [self] in requestFinished() }
            }
        }
    }

    // MARK: helpers (condition held)

    private func flushLocked() -> [@Sendable () -> Void] {
        while outputOffset < output.count {
            let written = output.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + outputOffset, $0.count - outputOffset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if written > 0 {
                outputOffset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else if written < 0 && errno == EAGAIN {
                updateInterestLocked()
                return []
            } else {
                return closeLocked()
            }
        }
        if output.capacity > 1 << 20 { output = [] } else { output.removeAll(keepingCapacity: true) }
        outputOffset = 0
        condition.broadcast()
        if closeAfterFlush { return closeLocked() }
        updateInterestLocked()
        return []
    }

    private func updateInterestLocked() {
        guard !closed else { return }
        var wanted: UInt32 = 0
        if !readPaused && !readEOF { wanted |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue }
        if outputOffset < output.count { wanted |= EPOLLOUT.rawValue }
        guard wanted != interest else { return }
        interest = wanted
        var event = cwire_epoll_event(wanted, id)
        epoll_ctl(server.epollFD, EPOLL_CTL_MOD, fd, &event)
    }

    private func closeLocked() -> [@Sendable () -> Void] {
        guard !closed else { return [] }
        closed = true
        epoll_ctl(server.epollFD, EPOLL_CTL_DEL, fd, nil)
        Glibc.close(fd)
        inbox.removeAll()
        output = []
        condition.broadcast()
        server.remove(self)
        defer { closeHandlers = [] }
        return closeHandlers
    }
}
