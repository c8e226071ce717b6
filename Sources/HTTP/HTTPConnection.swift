import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One client connection of `HTTPServer`. The server's I/O thread feeds it bytes until a request
/// (or a reason to refuse one) is complete; a worker thread then answers it (`serve`) and hands
/// it back. The two never touch it at the same time: the I/O thread stops watching the socket
/// while a worker has it.
final class HTTPConnection: @unchecked Sendable {
    /// What it is doing, for deadlines and for choosing whom to close when the server is full.
    enum Phase {
        /// Waiting for the first byte of a request (keep-alive): the idle timeout runs.
        case waiting
        /// A request has begun: its head and body have the request deadline.
        case reading
        /// A worker has it: left alone.
        case serving
    }

    /// What the bytes received so far amount to.
    enum Receipt {
        case waiting, closed, ready
    }

    private enum Work {
        case request(HTTPRequest)
        case refusal(HTTPError)
    }

    let id: UInt64
    let fd: Int32
    private unowned let server: HTTPServer
    var phase = Phase.waiting
    /// When the current phase began (monotonic seconds).
    var since = 0.0
    /// When the current wait ends.
    private(set) var deadline = 0.0
    /// Received bytes not yet consumed by a request.
    private var buffer: [UInt8] = []
    /// How much of `buffer` has been searched for the end of the head, so a head arriving in
    /// small pieces is not searched from the start each time.
    private var searched = 0
    /// The head of the request being read, once complete, and where it ends.
    private var head: (end: Int, parsed: HTTPRequestHead)?
    private var continueSent = false
    private var work: Work?

    init(id: UInt64, fd: Int32, server: HTTPServer) {
        self.id = id
        self.fd = fd
        self.server = server
    }

    private var limits: HTTPServer.Limits { server.limits }

    var hasBufferedBytes: Bool { !buffer.isEmpty }

    // MARK: the I/O thread

    /// Between requests: the idle timeout runs until the next request's first byte.
    func awaitRequest(now: Double) {
        phase = .waiting
        since = now
        deadline = now + limits.idleTimeoutSeconds
        continueSent = false
        if !buffer.isEmpty { beginRequest(now: now) }
    }

    /// A request's first byte is here: from now its head and body have `requestTimeoutSeconds`.
    private func beginRequest(now: Double) {
        guard phase == .waiting else { return }
        phase = .reading
        since = now
        deadline = now + limits.requestTimeoutSeconds
    }

    /// Takes what the socket has (never blocking; `scratch` is the I/O thread's read buffer)
    /// and says whether a request is ready to serve.
    func receive(now: Double, scratch: inout [UInt8]) -> Receipt {
        if let ready = parse() {
            work = ready
            return .ready
        }
        let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
        if count == 0 { return .closed }
        if count < 0 { return errno == EAGAIN || errno == EINTR ? .waiting : .closed }
        buffer.append(contentsOf: scratch[0..<count])
        beginRequest(now: now)
        guard let ready = parse() else { return .waiting }
        work = ready
        return .ready
    }

    /// The request (or the refusal) `buffer` completes, if any; sends `100 Continue` when a
    /// complete head asks for it.
    private func parse() -> Work? {
        if head == nil {
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            if let start = buffer.firstIndex(where: { $0 != 0x0D && $0 != 0x0A }), start > 0 {
                buffer.removeFirst(start)
                searched = 0
            } else if !buffer.isEmpty && buffer.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) {
                buffer.removeAll()
                searched = 0
            }
            guard let end = headEnd() else {
                if let error = implausibleStart() { return .refusal(error) }
                if buffer.count > limits.maximumHeadBytes {
                    return .refusal(HTTPError(431, "the request head is larger than \(limits.maximumHeadBytes) bytes"))
                }
                return nil
            }
            if end > limits.maximumHeadBytes {
                return .refusal(HTTPError(431, "the request head is larger than \(limits.maximumHeadBytes) bytes"))
            }
            do {
                head = (end, try HTTPRequestHead.parse(buffer[..<end], maximumBodyBytes: limits.maximumBodyBytes))
            } catch {
                return .refusal(error)
            }
        }
        guard let (end, parsed) = head else { return nil }
        let total = end + parsed.contentLength
        guard buffer.count >= total else {
            if parsed.expectsContinue && !continueSent {
                continueSent = true
                let interim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                _ = interim.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            }
            return nil
        }
        var request = parsed.request
        request.body = Array(buffer[end..<total])
        buffer.removeFirst(total)
        searched = 0
        head = nil
        return .request(request)
    }

    /// The offset just past the empty line ending the head, if it has arrived.
    private func headEnd() -> Int? {
        var index = max(0, searched - 2)
        while index < buffer.count {
            if buffer[index] == 0x0A {
                if index + 1 < buffer.count && buffer[index + 1] == 0x0A { return index + 2 }
                if index + 2 < buffer.count && buffer[index + 1] == 0x0D && buffer[index + 2] == 0x0A { return index + 3 }
            }
            index += 1
        }
        searched = buffer.count
        return nil
    }

    /// Garbage is answered as soon as it is recognizable, not after the head limit or the
    /// deadline: a method that is not a token, or a complete request line that does not parse.
    private func implausibleStart() -> HTTPError? {
        if let newline = buffer.firstIndex(of: 0x0A) {
            var line = buffer[..<newline]
            if line.last == 0x0D { line = line.dropLast() }
            do {
                _ = try HTTPRequestHead.parse(line + [0x0A], maximumBodyBytes: limits.maximumBodyBytes)
            } catch {
                return error
            }
            return nil
        }
        let method = buffer.prefix { $0 != UInt8(ascii: " ") }
        if !method.allSatisfy(HTTPRequestHead.isTokenByte) || method.count > 32 {
            return HTTPError(400, "malformed request line")
        }
        return nil
    }

    /// The request did not arrive in time: say so, if the client's buffer takes it.
    func answerTimeout() {
        var response = HTTPResponse.error(
            408, code: "RequestTimeout", message: "the request did not arrive within \(Int(limits.requestTimeoutSeconds)) s")
        response.closesConnection = true
        let bytes = response.serialized(keepAlive: false)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
    }

    // MARK: a worker thread

    /// Answers the ready request (or refusal); whether the connection stays open for another.
    func serve() -> Bool {
        guard let work else { return false }
        self.work = nil
        switch work {
        case .refusal(let error):
            refuse(error)
            return false
        case .request(let request):
            switch server.handler.handle(request) {
            case .respond(let response):
                let keep = request.keepsAlive && !response.closesConnection
                let bytes = response.serialized(keepAlive: keep, omittingBody: request.method == "HEAD")
                return write(bytes, within: limits.responseTimeoutSeconds) && keep
            case .drop:
                reset()
                return false
            }
        }
    }

    /// Writes all of `bytes` within `seconds`; false when the client did not take them in time,
    /// or is gone.
    private func write(_ bytes: [UInt8], within seconds: Double) -> Bool {
        let deadline = MonotonicClock.now() + seconds
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if written > 0 {
                offset += written
                continue
            }
            guard written < 0, errno == EAGAIN || errno == EINTR else { return false }
            let remaining = deadline - MonotonicClock.now()
            guard remaining > 0 else { return false }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&entry, 1, Int32(min(remaining * 1000 + 1, 60_000)))
        }
        return true
    }

    /// Answers `error` and ends the connection: the bytes after a malformed head cannot be framed.
    private func refuse(_ error: HTTPError) {
        server.handler.refused(error.status, reason: error.message)
        var response = HTTPResponse.error(error.status, code: Self.code(error.status), message: error.message)
        response.closesConnection = true
        _ = write(response.serialized(keepAlive: false), within: 2)
        // Unread input would make close send a reset that can destroy the response in flight:
        // stop writing, then let the client read the answer before the socket goes.
        shutdown(fd, Int32(SHUT_WR))
        var drain = [UInt8](repeating: 0, count: 4096)
        var total = 0
        let deadline = MonotonicClock.now() + 2
        while total < 1 << 20 {
            let remaining = deadline - MonotonicClock.now()
            guard remaining > 0 else { break }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(remaining * 1000 + 1)) > 0 else { break }
            let count = drain.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if count <= 0 && !(count < 0 && errno == EAGAIN) { break }
            total += max(0, count)
        }
    }

    /// Makes the server's close a reset instead of an orderly end, as a crashed server or a cut
    /// network would.
    private func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    }

    private static func code(_ status: Int) -> String {
        switch status {
        case 408: return "RequestTimeout"
        case 411: return "LengthRequired"
        case 413: return "PayloadTooLarge"
        case 417: return "ExpectationFailed"
        case 431: return "RequestHeaderFieldsTooLarge"
        case 505: return "HTTPVersionNotSupported"
        default: return "BadRequest"
        }
    }
}
