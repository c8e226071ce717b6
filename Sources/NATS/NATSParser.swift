/// A violation of the NATS protocol by the server (or by bytes claiming to be one).
public struct NATSProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A message delivered to a subscription (`MSG` or `HMSG`).
public struct NATSMessage: Sendable, Hashable {
    public var subject: String
    /// The subscription it was delivered for.
    public var sid: UInt64
    public var replyTo: String?
    /// Present for `HMSG`.
    public var headers: NATSHeaders?
    public var payload: [UInt8]

    public init(subject: String, sid: UInt64, replyTo: String? = nil, headers: NATSHeaders? = nil, payload: [UInt8]) {
        self.subject = subject
        self.sid = sid
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
    }
}

/// One operation sent by a NATS server.
public enum NATSServerOperation: Sendable, Hashable {
    /// `INFO {json}`: the JSON text, decoded by `NATSServerInfo`.
    case info([UInt8])
    case message(NATSMessage)
    case ping
    case pong
    case ok
    /// `-ERR 'text'`, without the quotes.
    case error(String)
}

/// The client side's decoder of what a NATS server sends: a two-state machine (a control line,
/// then for `MSG`/`HMSG` a payload of announced length) fed with whatever each read returned, in
/// any split. Pure: no I/O, tested with byte arrays.
///
/// Bounded: a control line longer than `maximumControlLine` or a payload above `maximumPayload` is
/// refused as soon as it is seen, so hostile bytes never cause a large allocation.
public struct NATSParser: Sendable {
    private enum State {
        case controlLine
        case payload(Pending)
    }

    private struct Pending {
        var subject: String
        var sid: UInt64
        var replyTo: String?
        var headerLength: Int?
        var totalLength: Int
    }

    /// The longest control line accepted (the op, a subject, a reply subject and lengths; `INFO`'s
    /// JSON with many cluster addresses is the longest in practice).
    public let maximumControlLine: Int
    /// The largest message payload (headers included) accepted.
    public let maximumPayload: Int
    private var state = State.controlLine
    private var buffer: [UInt8] = []
    private var consumed = 0

    public init(maximumControlLine: Int = 64 << 10, maximumPayload: Int = 64 << 20) {
        self.maximumControlLine = maximumControlLine
        self.maximumPayload = maximumPayload
    }

    /// Decodes every operation complete after `bytes`; keeps a partial one for the next call.
    /// After an error the parser must not be used again (the connection is closed).
    public mutating func parse(_ bytes: some Collection<UInt8>) throws(NATSProtocolError) -> [NATSServerOperation] {
        if consumed > 0 && consumed == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            consumed = 0
        } else if consumed > 64 << 10 && consumed > buffer.count / 2 {
            buffer.removeFirst(consumed)
            consumed = 0
        }
        buffer.append(contentsOf: bytes)
        var operations: [NATSServerOperation] = []
        while true {
            switch state {
            case .controlLine:
                guard let lineEnd = findLineEnd() else {
                    if buffer.count - consumed > maximumControlLine {
                        throw NATSProtocolError("a control line is longer than \(maximumControlLine) bytes")
                    }
                    return operations
                }
                guard lineEnd - consumed <= maximumControlLine else {
                    throw NATSProtocolError("a control line is longer than \(maximumControlLine) bytes")
                }
                var end = lineEnd
                if end > consumed && buffer[end - 1] == 13 { end -= 1 }
                let line = buffer[consumed..<end]
                consumed = lineEnd + 1
                if let operation = try controlLine(line) { operations.append(operation) }
            case .payload(let pending):
                guard buffer.count - consumed >= pending.totalLength + 2 else { return operations }
                let payloadStart = consumed + (pending.headerLength ?? 0)
                let end = consumed + pending.totalLength
                guard buffer[end] == 13 && buffer[end + 1] == 10 else {
                    throw NATSProtocolError("a message payload is not followed by CRLF")
                }
                var headers: NATSHeaders?
                if let headerLength = pending.headerLength {
                    headers = try NATSHeaders.parse(buffer[consumed..<(consumed + headerLength)])
                }
                operations.append(
                    .message(
                        NATSMessage(
                            subject: pending.subject, sid: pending.sid, replyTo: pending.replyTo, headers: headers,
                            payload: Array(buffer[payloadStart..<end]))))
                consumed = end + 2
                state = .controlLine
            }
        }
    }

    private func findLineEnd() -> Int? {
        var index = consumed
        let limit = min(buffer.count, consumed + maximumControlLine + 2)
        while index < limit {
            if buffer[index] == 10 { return index }
            index += 1
        }
        return nil
    }

    private mutating func controlLine(_ line: ArraySlice<UInt8>) throws(NATSProtocolError) -> NATSServerOperation? {
        var opEnd = line.startIndex
        while opEnd < line.endIndex && line[opEnd] != 32 && line[opEnd] != 9 { opEnd += 1 }
        let op = String(decoding: line[line.startIndex..<opEnd], as: UTF8.self).uppercased()
        let rest = line[opEnd..<line.endIndex]
        switch op {
        case "":
            // Blank lines carry nothing; servers do not send them, but they harm nothing.
            return nil
        case "PING": return .ping
        case "PONG": return .pong
        case "+OK": return .ok
        case "-ERR":
            var text = String(decoding: rest, as: UTF8.self).trimmingSpaces
            if text.count >= 2 && text.hasPrefix("'") && text.hasSuffix("'") { text = String(text.dropFirst().dropLast()) }
            return .error(text)
        case "INFO":
            let json = Array(rest.drop { $0 == 32 || $0 == 9 })
            guard json.first == UInt8(ascii: "{") else { throw NATSProtocolError("INFO without a JSON object") }
            return .info(json)
        case "MSG", "HMSG":
            let words = rest.split(omittingEmptySubsequences: true, whereSeparator: { $0 == 32 || $0 == 9 })
            let isHeaders = op == "HMSG"
            // MSG <subject> <sid> [reply] <#bytes>; HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>
            let fixed = isHeaders ? 4 : 3
            guard words.count == fixed || words.count == fixed + 1 else {
                throw NATSProtocolError("\(op) has \(words.count) arguments")
            }
            let subject = String(decoding: words[0], as: UTF8.self)
            guard let sid = UInt64(String(decoding: words[1], as: UTF8.self)) else { throw NATSProtocolError("\(op) has a bad sid") }
            let replyTo = words.count == fixed + 1 ? String(decoding: words[2], as: UTF8.self) : nil
            guard let total = Self.length(words[words.count - 1]) else { throw NATSProtocolError("\(op) has a bad length") }
            guard total <= maximumPayload else {
                throw NATSProtocolError("\(op) announces \(total) bytes, above the limit of \(maximumPayload)")
            }
            var headerLength: Int?
            if isHeaders {
                guard let length = Self.length(words[words.count - 2]), length <= total, length >= NATSHeaders.versionLine.count + 4 else {
                    throw NATSProtocolError("HMSG has a bad header length")
                }
                headerLength = length
            }
            state = .payload(Pending(subject: subject, sid: sid, replyTo: replyTo, headerLength: headerLength, totalLength: total))
            return nil
        default:
            throw NATSProtocolError("unknown operation \"\(op.prefix(16))\"")
        }
    }

    private static func length(_ word: ArraySlice<UInt8>) -> Int? {
        guard !word.isEmpty, word.count <= 10, word.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(String(decoding: word, as: UTF8.self))
    }
}

extension String {
    var trimmingSpaces: String {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return String(text)
    }
}
