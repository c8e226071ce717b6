public import SystemIO
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking client of a length-prefixed JSON socket: what `meterctl`, tests and the Swift SDK use.
///
/// Requests can be pipelined: `send` several, then `receive` their responses in order. A server
/// closes connections that stay idle (docs/OPERATIONS.md, "Limits"): when every answer has been
/// received and the server has closed the connection since, the next `send` connects again.
public final class UnixClient {
    /// Why a call failed: the transport, the framing, or the server's answer.
    public enum Failure: Error, CustomStringConvertible {
        case system(SystemError)
        case closed
        case frame(FrameDecoder.Failure)
        case json(JSONParser.Failure)
        case server(WireError)

        public var description: String {
            switch self {
            case .system(let error): return error.description
            case .closed: return "the server closed the connection"
            case .frame(let error): return "bad frame from server: \(error)"
            case .json(let error): return "bad JSON from server: \(error)"
            case .server(let error): return error.description
            }
        }
    }

    public let path: String
    private var fd: Int32
    private var decoder: FrameDecoder
    /// Requests sent and not answered yet (a stream's frames count down to zero, never below).
    private var outstanding = 0
    /// How long a read waits, for `poll` (-1: forever).
    private var receiveTimeoutMilliseconds: Int32 = -1
    private var ready: [[UInt8]] = []
    private var readBuffer = [UInt8](repeating: 0, count: 1 << 16)

    /// Connects to the socket at `path`.
    public init(path: String, maximumFrameLength: Int = FrameEncoder.defaultMaximumFrameLength) throws(Failure) {
        UnixSocket.ignoreSIGPIPE()
        self.path = path
        do {
            self.fd = try UnixSocket.connect(path: path)
        } catch {
            throw .system(error)
        }
        self.decoder = FrameDecoder(maximumFrameLength: maximumFrameLength, reservesAnnouncedLength: true)
    }

    deinit { close(fd) }

    /// Sends one request without waiting for its response.
    public func send(_ request: Request) throws(Failure) {
        if outstanding == 0 && ready.isEmpty && decoder.bufferedByteCount == 0 && peerHasClosed() { try reconnect() }
        try sendRaw(FrameEncoder.frame(request.bytes))
        outstanding += 1
    }

    /// Whether the server has ended the connection (and sent nothing more): an idle one closed.
    private func peerHasClosed() -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, 0) == 1 else { return false }
        var byte: UInt8 = 0
        let count = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR)
    }

    private func reconnect() throws(Failure) {
        let fresh: Int32
        do { fresh = try UnixSocket.connect(path: path) } catch { throw .system(error) }
        close(fd)
        fd = fresh
        decoder = FrameDecoder(maximumFrameLength: decoder.maximumFrameLength, reservesAnnouncedLength: true)
    }

    /// Sends raw bytes (tests use this for malformed input).
    public func sendRaw(_ bytes: [UInt8]) throws(Failure) {
        do { try UnixSocket.writeAll(fd, bytes) } catch { throw .system(error) }
    }

    /// Half-closes the connection for writing (the server still answers what it got).
    public func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Waits up to `seconds` for each read (0: forever).
    public func setReceiveTimeout(seconds: Double) {
        receiveTimeoutMilliseconds = seconds > 0 ? Int32(min(seconds * 1000, Double(Int32.max)).rounded(.up)) : -1
    }

    /// Receives the next frame's payload.
    public func receiveFrame() throws(Failure) -> [UInt8] {
        while ready.isEmpty {
            // Wait in poll, then read what is there: a thread blocked in recv on a Unix socket is
            // woken each time the server takes bytes this side sent (the kernel signals write space
            // on the same wait queue), only to sleep again; poll wakes for input alone.
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let waited = poll(&entry, 1, receiveTimeoutMilliseconds)
            if waited < 0 {
                if errno == EINTR { continue }
                throw .system(SystemError("poll", path))
            }
            if waited == 0 {
                errno = EAGAIN
                throw .system(SystemError("recv", path))
            }
            // A large frame whose length is known is received straight into its own array.
            let direct = decoder.receiveIntoFrame { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            let count = direct?.count ?? readBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw .system(SystemError("recv", path))
            }
            if count == 0 {
                do { try decoder.finish() } catch { throw .frame(error) }
                throw .closed
            }
            if let direct {
                if let frame = direct.frame { ready.append(frame) }
                continue
            }
            do { ready = try decoder.decode(readBuffer[0..<count]) } catch { throw .frame(error) }
        }
        outstanding = max(0, outstanding - 1)
        return ready.removeFirst()
    }

    /// Receives the next frame as JSON.
    public func receive() throws(Failure) -> JSONValue {
        let payload = try receiveFrame()
        do { return try JSONParser.parse(payload) } catch { throw .json(error) }
    }

    /// Sends `request` and returns its successful response, or throws the server's error.
    public func call(_ request: Request) throws(Failure) -> JSONObject {
        try send(request)
        switch Response.check(try receive()) {
        case .success(let object): return object
        case .failure(let error): throw .server(error)
        }
    }

    /// Convenience: `call` with an op name and fields.
    public func call(_ op: String, _ fields: JSONObject = JSONObject()) throws(Failure) -> JSONObject {
        try call(Request(op: op, fields: fields))
    }
}
