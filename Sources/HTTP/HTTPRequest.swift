import Foundation

/// One HTTP/1.x request as the server reads it: a head and a `Content-Length` body.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The percent-decoded path, without the query (`/api/batchUsageEvent`).
    public var path: String
    /// The query's parameters, percent-decoded; the first of repeated names wins.
    public var query: [String: String]
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int
    /// Header fields in arrival order, names lowercased.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8] = []

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name == lowered }?.value
    }

    /// Whether the connection stays open after the response: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`.
    public var keepsAlive: Bool {
        let tokens = (header("connection") ?? "").lowercased().split(separator: ",").map { $0.trimmingSpaces }
        if tokens.contains("close") { return false }
        return minorVersion >= 1 || tokens.contains("keep-alive")
    }
}

/// Why a request cannot be served: the status and a message for the client. The connection is
/// closed after answering, since the rest of its bytes can no longer be framed.
public struct HTTPError: Error, Sendable {
    public var status: Int
    public var message: String

    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
}

/// A parsed request head: the request without its body, and how long the body is.
public struct HTTPRequestHead: Sendable {
    public var request: HTTPRequest
    public var contentLength: Int
    /// The client waits for `100 Continue` before sending the body (curl does for large bodies).
    public var expectsContinue: Bool

    /// The most header fields a request may carry.
    static let maximumHeaderCount = 100

    /// Parses the head in `bytes` (request line and header lines, ending with the empty line),
    /// with CRLF or bare LF line ends (RFC 9112 §2.2 lets a server accept both).
    public static func parse(_ bytes: ArraySlice<UInt8>, maximumBodyBytes: Int) throws(HTTPError) -> HTTPRequestHead {
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let requestLine = lines.first else { throw HTTPError(400, "empty request") }
        var request = try parseRequestLine(requestLine)
        let fields = lines.dropFirst()
        guard fields.count <= maximumHeaderCount else {
            throw HTTPError(431, "more than \(maximumHeaderCount) header fields")
        }
        for line in fields {
            request.headers.append(try parseField(line))
        }
        if request.header("transfer-encoding") != nil {
            throw HTTPError(411, "Transfer-Encoding (chunked) request bodies are not supported: send Content-Length")
        }
        let lengths = request.headers.filter { $0.name == "content-length" }.map(\.value)
        var contentLength = 0
        if let first = lengths.first {
            guard lengths.allSatisfy({ $0 == first }) else { throw HTTPError(400, "conflicting Content-Length headers") }
            guard !first.isEmpty, first.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                throw HTTPError(400, "Content-Length must be a decimal number of bytes")
            }
            // Digits too many for an Int are far beyond the limit as well.
            guard let length = Int(first), length <= maximumBodyBytes else {
                throw HTTPError(413, "the body is larger than \(maximumBodyBytes) bytes")
            }
            contentLength = length
        }
        let expectation = request.header("expect")?.lowercased()
        if let expectation, expectation != "100-continue" {
            throw HTTPError(417, "only Expect: 100-continue is supported")
        }
        return HTTPRequestHead(
            request: request, contentLength: contentLength, expectsContinue: expectation != nil && request.minorVersion >= 1)
    }

    /// `METHOD SP request-target SP HTTP/1.x`.
    private static func parseRequestLine(_ line: ArraySlice<UInt8>) throws(HTTPError) -> HTTPRequest {
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw HTTPError(400, "malformed request line: expected METHOD SP TARGET SP HTTP/1.1")
        }
        guard parts[0].allSatisfy(isTokenByte) else { throw HTTPError(400, "malformed method in the request line") }
        let version = Array(parts[2])
        guard version.count == 8, version.starts(with: Array("HTTP/".utf8)), version[6] == UInt8(ascii: "."),
            isDigit(version[5]), isDigit(version[7])
        else {
            throw HTTPError(400, "malformed HTTP version in the request line")
        }
        guard version[5] == UInt8(ascii: "1"), version[7] <= UInt8(ascii: "1") else {
            throw HTTPError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        guard parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw HTTPError(400, "malformed request target") }
        var target = String(decoding: parts[1], as: UTF8.self)
        // Absolute form (`http://host/path`), as sent to proxies: keep the path and query only.
        if let scheme = target.range(of: "://"), !target.hasPrefix("/") {
            let rest = target[scheme.upperBound...]
            target = rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
        }
        guard target.hasPrefix("/") else { throw HTTPError(400, "the request target must be a path such as /api/batchUsageEvent") }
        let pathText: Substring
        var query: [String: String] = [:]
        if let mark = target.firstIndex(of: "?") {
            pathText = target[..<mark]
            guard let parameters = FormEncoding.parameters(String(target[target.index(after: mark)...])) else {
                throw HTTPError(400, "malformed percent-encoding in the query")
            }
            query = parameters
        } else {
            pathText = target[...]
        }
        guard let path = FormEncoding.percentDecoded(String(pathText), plusIsSpace: false) else {
            throw HTTPError(400, "malformed percent-encoding in the path")
        }
        return HTTPRequest(
            method: String(decoding: parts[0], as: UTF8.self), path: path, query: query,
            minorVersion: Int(version[7] - UInt8(ascii: "0")), headers: [])
    }

    /// `name: value`, with no white space before the colon and no control characters.
    private static func parseField(_ line: ArraySlice<UInt8>) throws(HTTPError) -> (name: String, value: String) {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
            throw HTTPError(400, "malformed header line (no colon)")
        }
        let name = line[..<colon]
        guard !name.isEmpty, name.allSatisfy(isTokenByte) else {
            throw HTTPError(400, "malformed header name (folded lines and white space before the colon are not allowed)")
        }
        var value = line[line.index(after: colon)...]
        // Control characters (bare CR, NUL, ...) would let an echoed header split the response.
        guard value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else {
            throw HTTPError(400, "control character in a header value")
        }
        while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
        while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
        return (String(decoding: name, as: UTF8.self).lowercased(), String(decoding: value, as: UTF8.self))
    }

    /// A `tchar` of RFC 9110 §5.6.2.
    public static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        var text = self[...]
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return String(text)
    }
}
