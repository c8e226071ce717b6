/// The header block of an `HPUB` or `HMSG`: an optional status (`NATS/1.0 503`), then `Name: value`
/// lines. Pure: parsed from and written to bytes.
///
/// ```
/// NATS/1.0[ <status>[ <description>]]\r\n
/// Name: value\r\n
/// ...
/// \r\n
/// ```
public struct NATSHeaders: Sendable, Hashable {
    /// The status code of the status line (`503` for no responders, `404` for a missing message),
    /// nil when the line carries none.
    public var status: Int?
    /// The words after the status code.
    public var statusDescription: String
    /// The fields in order; a name may repeat.
    public var fields: [(name: String, value: String)]

    /// Headers with `fields` and no status.
    public init(_ fields: [(name: String, value: String)] = []) {
        self.status = nil
        self.statusDescription = ""
        self.fields = fields
    }

    /// The first value of `name` (names compare case-insensitively, as NATS does).
    public subscript(name: String) -> String? {
        let lowered = name.lowercased()
        return fields.first { $0.name.lowercased() == lowered }?.value
    }

    /// Adds a field.
    public mutating func append(_ name: String, _ value: String) { fields.append((name, value)) }

    public static func == (lhs: NATSHeaders, rhs: NATSHeaders) -> Bool {
        lhs.status == rhs.status && lhs.statusDescription == rhs.statusDescription && lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(status)
        hasher.combine(statusDescription)
        for field in fields {
            hasher.combine(field.name)
            hasher.combine(field.value)
        }
    }

    static let versionLine = Array("NATS/1.0".utf8)

    /// The encoded block, ending with the empty line.
    public var bytes: [UInt8] {
        var out = Self.versionLine
        if let status {
            out.append(UInt8(ascii: " "))
            out.append(contentsOf: String(status).utf8)
            if !statusDescription.isEmpty {
                out.append(UInt8(ascii: " "))
                out.append(contentsOf: statusDescription.utf8)
            }
        }
        out.append(contentsOf: [13, 10])
        for field in fields {
            out.append(contentsOf: field.name.utf8)
            out.append(contentsOf: ": ".utf8)
            out.append(contentsOf: field.value.utf8)
            out.append(contentsOf: [13, 10])
        }
        out.append(contentsOf: [13, 10])
        return out
    }

    /// Whether `text` may be written as a header name or value: no line breaks (a value with one
    /// would inject a header), names without spaces or colons.
    public static func isValid(name: String, value: String) -> Bool {
        !name.isEmpty && !name.utf8.contains { $0 <= 32 || $0 == UInt8(ascii: ":") || $0 == 127 }
            && !value.utf8.contains { $0 == 13 || $0 == 10 }
    }

    /// Parses a header block (the first `hdrlen` bytes of an `HMSG` payload).
    public static func parse(_ block: ArraySlice<UInt8>) throws(NATSProtocolError) -> NATSHeaders {
        var lines: [ArraySlice<UInt8>] = []
        var start = block.startIndex
        var index = block.startIndex
        while index < block.endIndex {
            if block[index] == 10 {
                var end = index
                if end > start && block[end - 1] == 13 { end -= 1 }
                lines.append(block[start..<end])
                start = index + 1
            }
            index += 1
        }
        guard start == block.endIndex else { throw NATSProtocolError("a header block does not end with a line break") }
        guard let statusLine = lines.first, statusLine.starts(with: versionLine) else {
            throw NATSProtocolError("a header block does not start with NATS/1.0")
        }
        var headers = NATSHeaders()
        let rest = statusLine.dropFirst(versionLine.count)
        if let first = rest.first {
            guard first == UInt8(ascii: " ") || first == 9 else { throw NATSProtocolError("a header status line is malformed") }
            let words = rest.split(omittingEmptySubsequences: true, whereSeparator: { $0 == 32 || $0 == 9 })
            if let code = words.first {
                guard code.count <= 4, let status = Int(String(decoding: code, as: UTF8.self)) else {
                    throw NATSProtocolError("a header status is not a number")
                }
                headers.status = status
                headers.statusDescription = words.dropFirst().map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
            }
        }
        for line in lines.dropFirst() {
            if line.isEmpty { continue }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else {
                throw NATSProtocolError("a header line has no name")
            }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self)
            var valueStart = colon + 1
            while valueStart < line.endIndex && (line[valueStart] == 32 || line[valueStart] == 9) { valueStart += 1 }
            headers.fields.append((name, String(decoding: line[valueStart..<line.endIndex], as: UTF8.self)))
        }
        return headers
    }
}
