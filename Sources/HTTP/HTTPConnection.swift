import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One client connection of `HTTPServer`: reads requests, hands them to the handler, writes the
/// responses in order, until the client closes, goes idle, or sends something unframeable.
struct HTTPConnection {
    let fd: Int32
    let server: HTTPServer
    /// Received bytes not yet consumed by a request.
    private var buffer: [UInt8] = []
    /// How much of `buffer` has been searched for the end of the head, so a head arriving in
    /// small pieces is not searched from the start each time.
    private var searched = 0

    init(fd: Int32, server: HTTPServer) {
        self.fd = fd
        self.server = server
    }

    private var limits: HTTPServer.Limits { server.limits }

    /// Serves requests until the connection ends, then closes it.
    mutating func serve() {
        var dropped = false
        defer {
            if !dropped { close(fd) }
        }
        while true {
            let headEnd: Int
            switch readHead() {
            case .complete(let end): headEnd = end
            case .closed: return
            case .refused(let error):
                refuse(error)
                return
            }
            let head: HTTPRequestHead
            do {
                head = try HTTPRequestHead.parse(buffer[..<headEnd], maximumBodyBytes: limits.maximumBodyBytes)
            } catch {
                refuse(error)
                return
            }
            let total = headEnd + head.contentLength
            if buffer.count < total && head.expectsContinue {
                guard (try? UnixSocket.writeAll(fd, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))) != nil else { return }
            }
            while buffer.count < total {
                guard readMore() else { return }
            }
            var request = head.request
            request.body = Array(buffer[headEnd..<total])
            buffer.removeFirst(total)
            searched = 0
            let keepAlive = request.keepsAlive
            let sent: Bool = server.whileBusy {
                switch server.handler.handle(request) {
                case .respond(let response):
                    let keep = keepAlive && !response.closesConnection
                    let bytes = response.serialized(keepAlive: keep, omittingBody: request.method == "HEAD")
                    return (try? UnixSocket.writeAll(fd, bytes)) != nil && keep
                case .drop:
                    reset()
                    dropped = true
                    return false
                }
            }
            guard sent else { return }
        }
    }

    private enum HeadOutcome {
        case complete(end: Int)
        case closed
        case refused(HTTPError)
    }

    /// Reads until `buffer` holds a complete head; refuses early what cannot become a request.
    private mutating func readHead() -> HeadOutcome {
        while true {
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            if let start = buffer.firstIndex(where: { $0 != 0x0D && $0 != 0x0A }), start > 0 {
                buffer.removeFirst(start)
                searched = 0
            } else if !buffer.isEmpty && buffer.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) {
                buffer.removeAll()
                searched = 0
            }
            if let end = headEnd() {
                if end > limits.maximumHeadBytes {
                    return .refused(HTTPError(431, "the request head is larger than \(limits.maximumHeadBytes) bytes"))
                }
                return .complete(end: end)
            }
            if let error = implausibleStart() { return .refused(error) }
            if buffer.count > limits.maximumHeadBytes {
                return .refused(HTTPError(431, "the request head is larger than \(limits.maximumHeadBytes) bytes"))
            }
            guard readMore() else { return .closed }
        }
    }

    /// The offset just past the empty line ending the head, if it has arrived.
    private mutating func headEnd() -> Int? {
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

    /// Garbage is answered as soon as it is recognizable, not after the head limit or the idle
    /// timeout: a method that is not a token, or a complete request line that does not parse.
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

    /// Appends what the socket has to `buffer`; false at the end of the stream, on an error, or
    /// after the idle timeout.
    private mutating func readMore() -> Bool {
        let chunk = 64 << 10
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: chunk))
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + start, chunk, 0) }
            if count < 0 && errno == EINTR { continue }
            buffer.removeLast(chunk - max(count, 0))
            return count > 0
        }
    }

    /// Answers `error` and ends the connection: the bytes after a malformed head cannot be framed.
    private func refuse(_ error: HTTPError) {
        server.handler.refused(error.status, reason: error.message)
        var response = HTTPResponse.error(error.status, code: Self.code(error.status), message: error.message)
        response.closesConnection = true
        try? UnixSocket.writeAll(fd, response.serialized(keepAlive: false))
        // Unread input would make close send a reset that can destroy the response in flight:
        // stop writing, then let the client read the answer before the socket goes.
        shutdown(fd, Int32(SHUT_WR))
        var drain = [UInt8](repeating: 0, count: 4096)
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var total = 0
        let deadline = ContinuousClock.now + .seconds(2)
        while total < 1 << 20 && ContinuousClock.now < deadline {
            let count = drain.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if count <= 0 { break }
            total += count
        }
    }

    /// Closes with a reset instead of an orderly end, as a crashed server or a cut network would.
    private func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    private static func code(_ status: Int) -> String {
        switch status {
        case 411: return "LengthRequired"
        case 413: return "PayloadTooLarge"
        case 417: return "ExpectationFailed"
        case 431: return "RequestHeaderFieldsTooLarge"
        case 505: return "HTTPVersionNotSupported"
        default: return "BadRequest"
        }
    }
}
