import CWireShims
import Daemon
import Dispatch
import Foundation
import Synchronization
public import SystemIO
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Serves requests arriving on a connection. Called on a worker thread, one request at a time
/// per connection (pipelined requests wait their turn, so responses keep their order).
public protocol RequestHandler: Sendable {
    /// Handles `request` and calls `done` once its last frame has been sent. A streaming
    /// operation may send many frames, and may never call `done` (it ends with the connection).
    func handle(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void)

    /// Offered every frame before it is decoded as a request: a handler that reads some requests
    /// straight from their bytes (ingest's appends) answers true when it took this one, and then
    /// calls `done` as `handle` would. The default takes none.
    func handle(frame: [UInt8], on connection: any Connection, done: @escaping @Sendable () -> Void) -> Bool

    /// Offered a small frame on the server's I/O thread, when other connections have requests in
    /// hand: a handler that can take it there without blocking (ingest hands appends to its
    /// committer) answers true and calls `done` as `handle` would, saving the hand-off to a worker
    /// thread. The default takes none; the frame then goes to a worker.
    func handleOnIOThread(frame: [UInt8], on connection: any Connection, done: @escaping @Sendable () -> Void) -> Bool
}

extension RequestHandler {
    public func handle(frame: [UInt8], on connection: any Connection, done: @escaping @Sendable () -> Void) -> Bool { false }

    public func handleOnIOThread(frame: [UInt8], on connection: any Connection, done: @escaping @Sendable () -> Void) -> Bool {
        false
    }

    /// Serves one frame's payload as the server does: offered to `handle(frame:)` first, else
    /// decoded as a request (an undecodable one is answered with its error) and handled.
    public func serve(frame payload: [UInt8], on connection: any Connection, maximumDepth: Int, done: @escaping @Sendable () -> Void) {
        if handle(frame: payload, on: connection, done: done) { return }
        switch Request.decode(payload, maximumDepth: maximumDepth) {
        case .failure(let failure):
            Log.notice("rejected a request on \(connection.listener) from \(connection.peer): \(failure.error)")
            connection.send(Response.error(id: failure.id, failure.error))
            done()
        case .success(let request):
            handle(request, on: connection, done: done)
        }
    }
}

/// A listening socket, the name the handler sees it by (`client`, `admin`, ...), and how many
/// connections it may hold at once.
///
/// Each listener has a budget of its own, so a flood on one (the client socket) can never take
/// the connections another needs (the admin socket).
public struct Listener: Sendable {
    /// The listening socket.
    public var descriptor: Int32
    /// What the handler sees the connections' `listener` as.
    public var name: String
    /// The most connections it holds at once (a new one beyond is refused, or takes the place
    /// of the longest idle).
    public var maximumConnections: Int
    /// A listener for `descriptor`, known as `name`, with a budget of `maximumConnections`.
    public init(descriptor: Int32, name: String, maximumConnections: Int = 1024) {
        self.descriptor = descriptor
        self.name = name
        self.maximumConnections = max(1, maximumConnections)
    }
}

/// A length-prefixed JSON server on Unix sockets: one epoll thread does the I/O, requests are
/// handled on Dispatch's worker threads.
///
/// Memory per connection is bounded: a frame is at most `maximumFrameLength`; reading pauses
/// while `maximumQueuedRequests` requests or `inputHighWater` bytes of them wait; and while more
/// than `outputHighWater` bytes of answers are unsent, the connection neither reads nor starts
/// its next request (streams wait in `waitForOutputSpace`). So a client that sends and never
/// reads costs at most the high-water marks, one answer and one frame, whatever the operation.
/// A protocol error gets an error frame and closes that connection only.
///
/// Connections are bounded per listener. A connection with nothing in flight (no request queued
/// or being handled, no answer unsent, no stream) is idle: it is closed after
/// `idleTimeoutSeconds`, and when its listener is full, the longest-idle ones (idle at least
/// `minimumIdleBeforeEviction`) are closed to admit a new connection, so idle connections can
/// never lock others out. A connection whose client has taken none of its answers for
/// `idleTimeoutSeconds` is closed as well.
///
/// Unchecked because the timers' state (and `loopThread`, set before the thread starts) is the I/O
/// thread's alone; what connections and callers share with that thread is in `shared`.
public final class UnixServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var maximumFrameLength = FrameEncoder.defaultMaximumFrameLength
        public var maximumQueuedRequests = 32
        public var maximumJSONDepth = JSONParser.defaultMaximumDepth
        /// Unsent answer bytes above which a connection stops reading and handling requests.
        public var outputHighWater = 256 << 10
        /// Queued request bytes above which a connection stops reading (at least one request is
        /// always taken, whatever its size).
        public var inputHighWater = 256 << 10
        /// An idle connection is closed after this long, and so is one whose client has taken
        /// none of its answers for this long.
        public var idleTimeoutSeconds = 60.0
        /// When a listener is full, connections idle at least this long make room for new ones.
        public var minimumIdleBeforeEviction = 1.0
        /// How long a worker that answered the only busy connection waits on its socket for the
        /// client's next request before it gives the thread back (0: never waits).
        public var lingerMilliseconds: Int32 = 1
        public init() {}
    }

    public let configuration: Configuration
    let handler: any RequestHandler
    private let listeners: [Listener]
    let epollFD: Int32
    private let wakeFD: Int32
    private let shared: Mutex<Shared>
    /// Connections with a request queued or in hand (streams aside): a worker lingers on its
    /// connection only while that connection is the only one.
    let busyConnections = Atomic<Int>(0)
    let lingeringReads = Atomic<Int>(0)
    private var loopThread: Thread?
    private let stopped = DispatchSemaphore(value: 0)
    // Touched by the I/O thread only: listeners out of descriptors, and when to try them again.
    private var pausedListeners: [Int: Double] = [:]
    private var nextSweep = 0.0
    private var noIdleUntil: [Int: Double] = [:]

    /// What the connections and the callers share with the I/O thread.
    private struct Shared {
        var connections: [UInt64: SocketConnection] = [:]
        /// Open connections per listener.
        var perListener: [Int]
        var nextConnectionID: UInt64 = 1
        var stopping = false
        var lastLimitWarning = 0.0
    }

    private static let listenerTag: UInt64 = 1 << 63
    private static let wakeTag: UInt64 = 1 << 62

    public init(listeners: [Listener], configuration: Configuration = Configuration(), handler: any RequestHandler) throws(SystemError) {
        UnixSocket.ignoreSIGPIPE()
        self.listeners = listeners
        self.configuration = configuration
        self.handler = handler
        shared = Mutex(Shared(perListener: Array(repeating: 0, count: listeners.count)))
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

    /// How many times a worker waiting on a connection's socket (`Configuration.lingerMilliseconds`)
    /// read its next request itself.
    public var requestsReadWhileLingering: Int { lingeringReads.load(ordering: .relaxed) }

    /// The number of open connections.
    public var connectionCount: Int { shared.withLock { $0.connections.count } }

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
        let alreadyStopping = shared.withLock { shared -> Bool in
            defer { shared.stopping = true }
            return shared.stopping
        }
        if alreadyStopping { return }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
        if loopThread != nil { stopped.wait() }
        let open = shared.withLock { Array($0.connections.values) }
        for connection in open { connection.close() }
        for listener in listeners { close(listener.descriptor) }
        close(wakeFD)
        close(epollFD)
    }

    private func runLoop() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let timeout = Int32(max(1, min(1000, (nextTimer() - MonotonicClock.now()) * 1000)))
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, 256, timeout) }
            if count < 0 {
                if errno == EINTR { continue }
                Log.error("epoll_wait failed: \(SystemError("epoll_wait")); the server stops")
                break
            }
            if shared.withLock({ $0.stopping }) { break }
            for index in 0..<Int(count) {
                let data = withUnsafePointer(to: &events[index]) { cwire_epoll_event_data($0) }
                let flags = events[index].events
                if data == Self.wakeTag {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                } else if data & Self.listenerTag != 0 {
                    accept(listenerIndex: Int(data & ~Self.listenerTag))
                } else if let connection = shared.withLock({ $0.connections[data] }) {
                    connection.handleEvents(flags, buffer: &buffer)
                }
            }
            runTimers()
        }
        stopped.signal()
    }

    private func nextTimer() -> Double {
        pausedListeners.values.reduce(nextSweep, min)
    }

    /// Resumes listeners that ran out of descriptors, and closes connections idle too long.
    private func runTimers() {
        let now = MonotonicClock.now()
        for (index, until) in pausedListeners where until <= now {
            pausedListeners[index] = nil
            var event = cwire_epoll_event(EPOLLIN.rawValue, Self.listenerTag | UInt64(index))
            epoll_ctl(epollFD, EPOLL_CTL_MOD, listeners[index].descriptor, &event)
        }
        guard now >= nextSweep else { return }
        nextSweep = now + 1
        let open = shared.withLock { Array($0.connections.values) }
        var idle = 0
        var stalled = 0
        for connection in open {
            if connection.idleSeconds(now: now) ?? 0 > configuration.idleTimeoutSeconds {
                connection.close()
                idle += 1
            } else if connection.stalledSeconds(now: now) ?? 0 > configuration.idleTimeoutSeconds {
                connection.close()
                stalled += 1
            }
        }
        let timeout = Int(configuration.idleTimeoutSeconds)
        if idle > 0 { Log.debug("closed \(idle) connections idle for more than \(timeout) s") }
        if stalled > 0 { Log.notice("closed \(stalled) connections whose client read none of its answers for \(timeout) s") }
    }

    private func accept(listenerIndex index: Int) {
        let listener = listeners[index]
        while true {
            let fd = cwire_accept_nonblocking(listener.descriptor)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EAGAIN: return
                case EMFILE, ENFILE:
                    // Out of descriptors: stop watching this listener for a moment (waiting
                    // clients stay in its backlog) instead of spinning on it.
                    warnLimit("cannot accept on \(listener.name): \(SystemError("accept4")); raise LimitNOFILE")
                    var event = cwire_epoll_event(0, Self.listenerTag | UInt64(index))
                    epoll_ctl(epollFD, EPOLL_CTL_MOD, listener.descriptor, &event)
                    pausedListeners[index] = MonotonicClock.now() + 0.1
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
            var admitted = admit(index)
            if admitted == nil && evictIdle(index) > 0 { admitted = admit(index) }
            guard let id = admitted else {
                warnLimit(
                    "refused a connection on \(listener.name) from \(peer): its \(listener.maximumConnections) connections are open and busy"
                )
                let refusal = FrameEncoder.frame(Response.error(id: nil, WireError(.unavailable, "too many connections; try again later")))
                _ = refusal.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                close(fd)
                continue
            }
            let connection = SocketConnection(id: id, fd: fd, listenerIndex: index, listener: listener.name, peer: peer, server: self)
            shared.withLock { $0.connections[id] = connection }
            var event = cwire_epoll_event(EPOLLIN.rawValue | EPOLLRDHUP.rawValue, id)
            if epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) != 0 {
                Log.warning("epoll_ctl add failed: \(SystemError("epoll_ctl"))")
                connection.close()
            }
        }
    }

    /// A connection id when listener `index` has room, counted at once.
    private func admit(_ index: Int) -> UInt64? {
        shared.withLock { shared -> UInt64? in
            guard shared.perListener[index] < listeners[index].maximumConnections else { return nil }
            shared.perListener[index] += 1
            defer { shared.nextConnectionID += 1 }
            return shared.nextConnectionID
        }
    }

    /// Closes the longest-idle connections of listener `index` (a 32nd of its budget at a time,
    /// so a flood does not scan them all for every new connection); how many were closed.
    private func evictIdle(_ index: Int) -> Int {
        let now = MonotonicClock.now()
        // Found none a moment ago: refuse without scanning again, or a flood would keep the
        // I/O thread scanning.
        if let until = noIdleUntil[index], now < until { return 0 }
        let open = shared.withLock { $0.connections.values.filter { $0.listenerIndex == index } }
        var idle: [(since: Double, connection: SocketConnection)] = []
        for connection in open {
            if let seconds = connection.idleSeconds(now: now), seconds >= configuration.minimumIdleBeforeEviction,
                !connection.hasUnreadInput
            {
                idle.append((now - seconds, connection))
            }
        }
        let victims = idle.sorted { $0.since < $1.since }.prefix(max(1, listeners[index].maximumConnections / 32))
        for victim in victims { victim.connection.close() }
        if victims.isEmpty { noIdleUntil[index] = now + 0.1 }
        if !victims.isEmpty {
            warnLimit(
                "\(listeners[index].name) has all its \(listeners[index].maximumConnections) connections open: closed the \(victims.count) idle longest to admit new ones"
            )
        }
        return victims.count
    }

    private func warnLimit(_ message: String) {
        let now = MonotonicClock.now()
        let due = shared.withLock { shared -> Bool in
            guard now - shared.lastLimitWarning > 5 else { return false }
            shared.lastLimitWarning = now
            return true
        }
        if due { Log.warning(message) }
    }

    func remove(_ connection: SocketConnection) {
        shared.withLock { shared in
            if shared.connections.removeValue(forKey: connection.id) != nil { shared.perListener[connection.listenerIndex] -= 1 }
        }
    }
}

/// One client connection of a socket. Thread-safe: the I/O thread reads, handlers send from any
/// thread.
public final class SocketConnection: Connection, @unchecked Sendable {
    private enum Item {
        case frame([UInt8])
        case protocolError(WireError)
    }

    let id: UInt64
    let listenerIndex: Int
    /// The name of the listener it arrived on (`client`, `admin`, ...).
    public let listener: String
    /// Who connected (`SO_PEERCRED`), for logs.
    public let peer: PeerCredentials
    private let fd: Int32
    private unowned let server: UnixServer
    /// A condition variable, not just a lock: a handler sending a stream waits on it until the
    /// client has taken enough of the output (`waitForOutputSpace`).
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var output = OutputQueue()
    private var closed = false
    private var closeAfterFlush = false
    private var inbox: [Item] = []
    private var inboxBytes = 0
    private var busy = false
    /// The next request waits until the unsent output is back under the high-water mark.
    private var awaitingOutput = false
    private var readPaused = false
    private var readEOF = false
    /// The peer hung up while reading was paused: the socket is no longer watched.
    private var detached = false
    private var streaming = false
    /// A worker is waiting on the socket for this connection's next request (`linger`), or
    /// serving the request it read there: the I/O thread does not read it meanwhile.
    private var lingering = false
    /// The peer hung up while a worker held the socket: epoll stopped watching it (`hungUp`),
    /// and watches it again if the worker gives it back without having read the end.
    private var detachedWhileLingering = false
    /// Whether the server's `busyConnections` counts it now.
    private var counted = false
    /// Whether a request's `done` came while `processNext` was still in its handler: that
    /// thread goes on with the connection's next request.
    private var serving = false
    private var finishedWhileServing = false
    /// Closed while a worker lingered on the socket: that worker closes the descriptor, so it is
    /// never reused under its poll.
    private var descriptorCloseDeferred = false
    private var interest: UInt32
    private var closeHandlers: [@Sendable () -> Void] = []
    /// When the connection last did anything (monotonic seconds), for the idle timeout.
    private var lastActive: Double
    /// When the client last took some of its answers, or an answer began to wait for it.
    private var lastSent: Double
    /// The frame decoder, behind the lock held while reading the socket and decoding: by the I/O
    /// thread, or by a lingering worker.
    private let reading: Mutex<FrameDecoder>

    init(id: UInt64, fd: Int32, listenerIndex: Int, listener: String, peer: PeerCredentials, server: UnixServer) {
        self.id = id
        self.fd = fd
        self.listenerIndex = listenerIndex
        self.listener = listener
        self.peer = peer
        self.server = server
        self.reading = Mutex(FrameDecoder(maximumFrameLength: server.configuration.maximumFrameLength))
        self.interest = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        self.lastActive = MonotonicClock.now()
        self.lastSent = lastActive
    }

    /// True once the connection is closed (by either side).
    public var isClosed: Bool { condition.withLock { closed } }

    /// Marks the current request as a stream: when the peer hangs up the connection closes at once,
    /// and it closes now if the peer has gone already (its end read before the stream began, by
    /// the I/O thread, which reports it no more).
    public func markStreaming() {
        condition.lock()
        streaming = true
        updateCountLocked()
        let handlers = readEOF ? closeLocked() : []
        condition.unlock()
        for handler in handlers { handler() }
    }

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
        // The stall clock starts when answers begin to wait, not at the last send long ago.
        if unsentLocked == 0 { lastSent = MonotonicClock.now() }
        output.append(frame: payload)
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
        while !closed && unsentLocked > server.configuration.outputHighWater { condition.wait() }
        return !closed
    }

    /// Closes the connection now.
    public func close() {
        condition.lock()
        let handlers = closeLocked()
        condition.unlock()
        for handler in handlers { handler() }
    }

    /// How long it has been idle (nothing queued, in hand, unsent or streaming), or nil when it
    /// is not idle.
    func idleSeconds(now: Double) -> Double? {
        condition.withLock {
            guard !closed, !busy, inbox.isEmpty, unsentLocked == 0, !streaming else { return nil }
            return now - lastActive
        }
    }

    /// How long its unsent answers have not moved (the client reads nothing), or nil when
    /// nothing is unsent.
    func stalledSeconds(now: Double) -> Double? {
        condition.withLock {
            guard !closed, unsentLocked > 0 else { return nil }
            return now - lastSent
        }
    }

    /// Whether the peer has sent bytes not read yet (a request on its way: not idle after all).
    var hasUnreadInput: Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
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
        if flags & EPOLLHUP.rawValue != 0 { hungUp() }
    }

    /// The peer is gone for good (it can receive nothing more) while reading is paused or over:
    /// epoll would report the hang-up again and again, so stop watching the socket. Requests
    /// already queued are still handled (their answers fail to send, which closes it); with
    /// nothing queued, or answers stuck unsent, it closes now.
    private func hungUp() {
        condition.lock()
        if lingering && !closed && !detached {
            // A worker waits on the socket and reads the end itself; epoll, which reports a
            // hang-up whatever it is asked for, would report it again and again until then.
            detached = true
            detachedWhileLingering = true
            epoll_ctl(server.epollFD, EPOLL_CTL_DEL, fd, nil)
            condition.unlock()
            return
        }
        guard !closed, !detached, readEOF || readPaused || unsentLocked > server.configuration.outputHighWater else {
            condition.unlock()
            return
        }
        readEOF = true
        detached = true
        epoll_ctl(server.epollFD, EPOLL_CTL_DEL, fd, nil)
        let handlers: [@Sendable () -> Void] = (!busy && inbox.isEmpty) || unsentLocked > 0 ? closeLocked() : []
        condition.unlock()
        for handler in handlers { handler() }
    }

    private func readAvailable(_ buffer: inout [UInt8]) {
        reading.withLock { decoder in
            for _ in 0..<8 {
                let paused = condition.withLock {
                    closed || lingering || readPaused || readEOF || unsentLocked > server.configuration.outputHighWater
                }
                if paused { return }
                let more = buffer.withUnsafeMutableBytes { readOnce(into: $0, decoder: &decoder, onIOThread: true) }
                if !more { return }
            }
        }
    }

    /// One `recv` into `buffer`, its frames decoded with `decoder` (the one in `reading`, so called
    /// with that lock held) and queued; whether there may be more to read now.
    private func readOnce(into buffer: UnsafeMutableRawBufferPointer, decoder: inout FrameDecoder, onIOThread: Bool) -> Bool {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if count > 0 {
                condition.withLock { lastActive = MonotonicClock.now() }
                do {
                    let frames = try decoder.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                    if onIOThread && frames.count == 1 && handledOnIOThread(frames[0]) { return true }
                    enqueue(frames.map { .frame($0) })
                } catch {
                    Log.warning("protocol error on \(listener) from \(peer): \(error); closing the connection")
                    enqueue([.protocolError(WireError(.badFrame, error.description))], stopReading: true)
                    return false
                }
                return true
            } else if count == 0 {
                var failure: WireError?
                do { try decoder.finish() } catch {
                    Log.warning("\(listener) connection from \(peer) ended inside a frame: \(error)")
                    failure = WireError(.badFrame, error.description)
                }
                endOfInput(failure)
                return false
            } else {
                if errno == EINTR { continue }
                if errno == EAGAIN { return false }
                close()
                return false
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

    /// Frames up to this size may be handled on the I/O thread (`RequestHandler.handleOnIOThread`).
    static let ioThreadFrameLimit = 4 << 10

    /// Offers `frame`, the only one just read, to the handler on the I/O thread, when the
    /// connection has nothing else in hand and other connections are busy (a client alone is
    /// served faster by a worker that then waits on its socket, `linger`). True when the frame is
    /// dealt with (taken there, or declined and queued for a worker); false when it was not
    /// offered, and the caller queues it.
    private func handledOnIOThread(_ frame: [UInt8]) -> Bool {
        condition.lock()
        guard frame.count <= Self.ioThreadFrameLimit, !busy, inbox.isEmpty, !closed, !readEOF, unsentLocked == 0,
            server.busyConnections.load(ordering: .relaxed) > 0
        else {
            condition.unlock()
            return false
        }
        setBusyLocked(true)
        lastActive = MonotonicClock.now()
        condition.unlock()
        if server.handler.handleOnIOThread(frame: frame, on: self, done: { [self] in requestFinished() }) { return true }
        // Not taken: a worker handles it (the connection is busy already).
        condition.lock()
        inbox.append(.frame(frame))
        inboxBytes += frame.count
        condition.unlock()
        scheduleNext()
        return true
    }

    private func enqueue(_ items: [Item], stopReading: Bool = false) {
        guard !items.isEmpty else { return }
        condition.lock()
        inbox.append(contentsOf: items)
        for case .frame(let payload) in items { inboxBytes += payload.count }
        if stopReading || inbox.count >= server.configuration.maximumQueuedRequests
            || inboxBytes >= server.configuration.inputHighWater
        {
            readPaused = true
            if stopReading { readEOF = true }
            updateInterestLocked()
        }
        let start = !busy
        if start { setBusyLocked(true) }
        condition.unlock()
        if start { scheduleNext() }
    }

    // MARK: request processing

    /// The handler is done with the current request: go on with the next queued one, if any.
    /// With nothing queued the connection just becomes idle, without a trip through Dispatch.
    private func requestFinished() {
        condition.lock()
        lastActive = MonotonicClock.now()
        if serving {
            // Still inside `processNext`'s handler call: that thread goes on.
            finishedWhileServing = true
            condition.unlock()
            return
        }
        if !closed && inbox.isEmpty && !readEOF {
            setBusyLocked(false)
            condition.unlock()
            return
        }
        condition.unlock()
        scheduleNext()
    }

    private func scheduleNext() {
        DispatchQueue.global().async { self.processNext() }
    }

    /// Handles the queued requests one after another on this thread, for as long as each one's
    /// answer is given before its handler returns; a request answered later (by another thread)
    /// goes on from `requestFinished` there.
    private func processNext() {
        while true {
            condition.lock()
            guard !closed, !inbox.isEmpty else {
                stopLingeringLocked()
                setBusyLocked(false)
                var handlers: [@Sendable () -> Void] = []
                if !closed && readEOF {
                    closeAfterFlush = true
                    handlers = flushLocked()
                }
                condition.unlock()
                for handler in handlers { handler() }
                return
            }
            if unsentLocked > server.configuration.outputHighWater {
                // The peer is not reading its answers: the next request waits (still counted as
                // busy) until a flush makes room, so what it would answer is never built.
                awaitingOutput = true
                stopLingeringLocked()
                condition.unlock()
                return
            }
            let item = inbox.removeFirst()
            if case .frame(let payload) = item {
                inboxBytes -= payload.count
                serving = true
                finishedWhileServing = false
                holdSocketLocked()
            }
            if readPaused && !readEOF && inbox.count < server.configuration.maximumQueuedRequests / 2
                && inboxBytes < server.configuration.inputHighWater / 2
            {
                readPaused = false
                updateInterestLocked()
            }
            condition.unlock()
            switch item {
            case .protocolError(let error):
                condition.lock()
                stopLingeringLocked()
                output.append(frame: Response.error(id: nil, error))
                closeAfterFlush = true
                let handlers = flushLocked()
                condition.unlock()
                for handler in handlers { handler() }
                return
            case .frame(let payload):
                server.handler.serve(frame: payload, on: self, maximumDepth: server.configuration.maximumJSONDepth) { [self] in
                    requestFinished()
                }
                let finished = condition.withLock { () -> Bool in
                    serving = false
                    // Answered later: this thread stops reading the socket (the I/O thread does).
                    if !finishedWhileServing { stopLingeringLocked() }
                    return finishedWhileServing
                }
                // Answered later, from another thread: `requestFinished` goes on there.
                guard finished else { return }
                linger()
            }
        }
    }

    /// With the request answered and nothing else queued, waits a moment on the socket for the
    /// client's next request and reads it on this thread, when this is the only busy connection:
    /// a client that sends one request at a time then wakes this thread directly, instead of the
    /// I/O thread that would hand the request to another worker (two thread wake-ups on the way
    /// to the disk's sync instead of one). The socket stays this thread's while it serves what it
    /// read (`holdSocketLocked`); it gives it back (`stopLingeringLocked`) when it stops reading it.
    private func linger() {
        let lingers = reading.withLock { _ -> Bool in
            condition.lock()
            guard server.configuration.lingerMilliseconds > 0, !closed, inbox.isEmpty, !readEOF, !readPaused, !streaming,
                unsentLocked == 0, server.busyConnections.load(ordering: .relaxed) == 1
            else {
                stopLingeringLocked()
                condition.unlock()
                return false
            }
            lingering = true
            updateInterestLocked()
            condition.unlock()
            return true
        }
        guard lingers else { return }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var ready = poll(&entry, 1, server.configuration.lingerMilliseconds)
        // A request larger than one read (a batch of events) is read whole here, waiting up to the
        // same time for each next part (the poll outside the lock, which a hang-up on the I/O
        // thread takes), rather than handed to the I/O thread and from it to another worker.
        while reading.withLock({ decoder in readLingering(ready: ready > 0, decoder: &decoder) }) {
            ready = poll(&entry, 1, server.configuration.lingerMilliseconds)
        }
    }

    /// One turn of `linger`, with the socket readable or not (`ready`): reads what is there and
    /// returns whether a request is begun but not yet whole, so the worker waits for the rest;
    /// otherwise the request read is served on this thread, with the socket still its own, or the
    /// socket goes back to the I/O thread.
    private func readLingering(ready: Bool, decoder: inout FrameDecoder) -> Bool {
        func done() -> Bool { condition.withLock { !inbox.isEmpty || closed || readEOF || readPaused } }
        if ready && !condition.withLock({ closed }) {
            withUnsafeTemporaryAllocation(byteCount: 64 << 10, alignment: 1) { buffer in
                while readOnce(into: buffer, decoder: &decoder, onIOThread: false) && !done() {}
            }
        }
        condition.lock()
        defer { condition.unlock() }
        let stopped = closed || readEOF || readPaused
        if !inbox.isEmpty { server.lingeringReads.add(1, ordering: .relaxed) }
        // Waits for the rest while this is still the only busy connection (else the I/O thread
        // reads on, and this worker serves others).
        if inbox.isEmpty && !stopped && ready && decoder.bufferedByteCount > 0 && server.busyConnections.load(ordering: .relaxed) == 1 {
            return true
        }
        if inbox.isEmpty || stopped { stopLingeringLocked() }
        return false
    }

    /// When this is the only busy connection, the worker about to serve its request takes the
    /// socket from the I/O thread (`lingering`) before it serves: the client's next request, sent
    /// as soon as the answer reaches it, waits in the socket for this worker's `linger` instead of
    /// waking the I/O thread, which would queue it for this worker anyway. One `epoll_ctl` when a
    /// worker starts serving the connection; none per request while it goes on.
    private func holdSocketLocked() {
        guard !lingering, server.configuration.lingerMilliseconds > 0, !closed, !readEOF, !readPaused, !streaming,
            server.busyConnections.load(ordering: .relaxed) == 1
        else { return }
        lingering = true
        updateInterestLocked()
    }

    /// The lingering worker stops reading the socket: the I/O thread watches it again, and a
    /// descriptor whose close waited for the worker is closed now.
    private func stopLingeringLocked() {
        guard lingering else { return }
        lingering = false
        if descriptorCloseDeferred {
            descriptorCloseDeferred = false
            Glibc.close(fd)
        }
        if detachedWhileLingering {
            detachedWhileLingering = false
            if !closed && !readEOF {
                // The peer hung up while this worker served (a stream it started, say), and the
                // worker reads no more: the I/O thread reads the end, as for any connection.
                detached = false
                var event = cwire_epoll_event(0, id)
                epoll_ctl(server.epollFD, EPOLL_CTL_ADD, fd, &event)
                interest = 0
            }
        }
        updateInterestLocked()
    }

    // MARK: helpers (condition held)

    private var unsentLocked: Int { output.unsentBytes }

    private func flushLocked() -> [@Sendable () -> Void] {
        let before = unsentLocked
        var blocked = false
        while !output.isEmpty {
            let written = output.withUnsentPieces { pieces in
                withUnsafeTemporaryAllocation(of: iovec.self, capacity: pieces.count) { vectors in
                    for (index, piece) in pieces.enumerated() {
                        vectors[index] = iovec(iov_base: UnsafeMutableRawPointer(mutating: piece.baseAddress), iov_len: piece.count)
                    }
                    var message = msghdr()
                    message.msg_iov = vectors.baseAddress
                    message.msg_iovlen = vectors.count
                    return Glibc.sendmsg(fd, &message, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
            }
            if written > 0 {
                output.markSent(written)
                lastSent = MonotonicClock.now()
            } else if written < 0 && errno == EINTR {
                continue
            } else if written < 0 && errno == EAGAIN {
                blocked = true
                break
            } else {
                return closeLocked()
            }
        }
        if !blocked { lastActive = MonotonicClock.now() }
        let highWater = server.configuration.outputHighWater
        if unsentLocked < before && unsentLocked <= highWater {
            condition.broadcast()
            if awaitingOutput {
                awaitingOutput = false
                scheduleNext()
            }
        }
        if !blocked && closeAfterFlush { return closeLocked() }
        updateInterestLocked()
        return []
    }

    /// Marks the connection busy or not.
    private func setBusyLocked(_ value: Bool) {
        busy = value
        updateCountLocked()
    }

    /// Keeps the server's `busyConnections` counting this connection while it is busy with
    /// requests (a stream, which keeps its request for good, is not counted).
    private func updateCountLocked() {
        let counts = busy && !streaming && !closed
        guard counts != counted else { return }
        counted = counts
        server.busyConnections.add(counts ? 1 : -1, ordering: .relaxed)
    }

    private func updateInterestLocked() {
        guard !closed, !detached else { return }
        var wanted: UInt32 = 0
        if !lingering && !readPaused && !readEOF && unsentLocked <= server.configuration.outputHighWater {
            wanted |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        }
        if !output.isEmpty { wanted |= EPOLLOUT.rawValue }
        guard wanted != interest else { return }
        interest = wanted
        var event = cwire_epoll_event(wanted, id)
        epoll_ctl(server.epollFD, EPOLL_CTL_MOD, fd, &event)
    }

    private func closeLocked() -> [@Sendable () -> Void] {
        guard !closed else { return [] }
        closed = true
        epoll_ctl(server.epollFD, EPOLL_CTL_DEL, fd, nil)
        if lingering {
            // A worker polls the descriptor: it closes it when the poll ends (the shutdown ends
            // it now), so the number is not reused under it.
            shutdown(fd, Int32(SHUT_RDWR))
            descriptorCloseDeferred = true
        } else {
            Glibc.close(fd)
        }
        updateCountLocked()
        inbox.removeAll()
        output.removeAll()
        condition.broadcast()
        server.remove(self)
        defer { closeHandlers = [] }
        return closeHandlers
    }
}
