import Foundation
public import Wire

/// An HTTP response with a complete body (never streamed).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)] = []
    public var body: [UInt8] = []
    /// Close the connection after this response (its request could not be framed, or the
    /// server is full).
    public var closesConnection = false

    /// A response with `status`, `headers` and `body`.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [], closesConnection: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.closesConnection = closesConnection
    }

    /// A JSON response, written by Wire's `JSONWriter` so numbers keep their exact text.
    public static func json(_ status: Int, _ value: JSONValue) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json; charset=utf-8")], body: JSONWriter.bytes(value))
    }

    /// The metering API's error shape for a whole request: `{"code":..,"message":..}`, with the
    /// offending part as `target` when there is one.
    public static func error(_ status: Int, code: String, message: String, target: String? = nil) -> HTTPResponse {
        var members: [JSONObject.Member] = [.init("code", .string(code))]
        if let target { members.append(.init("target", .string(target))) }
        members.append(.init("message", .string(message)))
        return json(status, .object(JSONObject(members)))
    }

    /// Adds a header field.
    public mutating func add(_ name: String, _ value: String) { headers.append((name, value)) }

    /// The response's bytes, with `Content-Length` and `Connection` set. A response to `HEAD`
    /// keeps its length but has no body.
    public func serialized(keepAlive: Bool, omittingBody: Bool = false) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(body.count)\r\n"
        head += "Connection: \(keepAlive ? "keep-alive" : "close")\r\n"
        head += "Server: \(Self.serverName)\r\n\r\n"
        var bytes = Array(head.utf8)
        if !omittingBody { bytes += body }
        return bytes
    }

    /// The `Server` field: the executable's name (`meter-marketplace-emulator`, `meter-query`, ...).
    static let serverName = ProcessInfo.processInfo.processName

    /// The reason phrase of `status` (clients ignore it; people reading traces do not).
    public static func reason(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 417: return "Expectation Failed"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return status >= 500 ? "Server Error" : "Status \(status)"
        }
    }
}

/// What the server does with a request: answer it, or close the connection abruptly without
/// a reply (an injected fault: the client cannot know whether the call was recorded).
public enum HTTPReply: Sendable {
    case respond(HTTPResponse)
    case drop
}
