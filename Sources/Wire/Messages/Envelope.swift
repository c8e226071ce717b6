/// A stable error code of the wire protocol (docs/PROTOCOL.md lists them all).
public struct ErrorCode: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// The frame header announced 0 bytes, more than the maximum, or the stream ended inside a frame.
    public static let badFrame = ErrorCode("bad_frame")
    /// The frame is not one valid UTF-8 JSON object.
    public static let badJSON = ErrorCode("bad_json")
    /// The request lacks a field or a field has the wrong type or range.
    public static let badRequest = ErrorCode("bad_request")
    /// `op` names no operation of this socket.
    public static let unknownOp = ErrorCode("unknown_op")
    /// An event failed validation (per event in `append` results).
    public static let invalidEvent = ErrorCode("invalid_event")
    /// The operation or message type is not allowed on this socket.
    public static let forbidden = ErrorCode("forbidden")
    /// The service cannot take the request now (shutting down, too many connections, overloaded).
    public static let unavailable = ErrorCode("unavailable")
    /// The named partition, subscription or record does not exist.
    public static let notFound = ErrorCode("not_found")
    /// The request contradicts the service's state (for example moving the clock backwards).
    public static let conflict = ErrorCode("conflict")
    /// The service failed (for example a disk error); the request may be retried.
    public static let internalError = ErrorCode("internal")
}

/// An error answered to a request.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    public var json: JSONValue {
        .object(JSONObject(["code": .string(code.rawValue), "message": .string(message)]))
    }

    /// Decodes `{"code": ..., "message": ...}`.
    public init?(json: JSONValue) {
        guard let code = json["code"]?.stringValue else { return nil }
        self.init(ErrorCode(code), json["message"]?.stringValue ?? "")
    }
}

/// A request: `{"op": "<name>", "id": <any JSON, optional>, ...}`.
public struct Request: Sendable {
    public var op: String
    /// Echoed in the response, untouched.
    public var id: JSONValue?
    /// The whole request object.
    public var body: JSONObject

    public init(op: String, id: JSONValue? = nil, fields: JSONObject = JSONObject()) {
        self.op = op
        self.id = id
        var body = JSONObject([JSONObject.Member("op", .string(op))])
        if let id { body.members.append(JSONObject.Member("id", id)) }
        body.members.append(contentsOf: fields.members.filter { $0.key != "op" && $0.key != "id" })
        self.body = body
    }

    /// Reads a request from a frame's payload; the error says what is wrong, with the `id` when
    /// one could be read so the error response can still be matched.
    public static func decode(_ payload: [UInt8], maximumDepth: Int = JSONParser.defaultMaximumDepth) -> Result<
        Request, RequestError
    > {
        let json: JSONValue
        do {
            json = try JSONParser.parse(payload, maximumDepth: maximumDepth)
        } catch {
            return .failure(RequestError(id: nil, error: WireError(.badJSON, "the frame is not valid JSON: \(error)")))
        }
        guard let object = json.objectValue else {
            return .failure(RequestError(id: nil, error: WireError(.badJSON, "a request must be a JSON object, got \(json.typeName)")))
        }
        let id = object["id"]
        guard let opValue = object["op"] else {
            return .failure(
                RequestError(id: id, error: WireError(.badRequest, "missing \"op\": name the operation, e.g. {\"op\":\"status\"}")))
        }
        guard let op = opValue.stringValue else {
            return .failure(RequestError(id: id, error: WireError(.badRequest, "\"op\" must be a string, got \(opValue.typeName)")))
        }
        return .success(Request(op: op, id: id, parsed: object))
    }

    init(op: String, id: JSONValue?, parsed: JSONObject) {
        self.op = op
        self.id = id
        self.body = parsed
    }

    /// The frame payload of this request.
    public var bytes: [UInt8] { JSONWriter.bytes(.object(body)) }

    public subscript(key: String) -> JSONValue? { body[key] }
}

/// A request that could not be read: the error, and the request's `id` when it could be read.
public struct RequestError: Error, Sendable {
    public var id: JSONValue?
    public var error: WireError
}

/// Builds response payloads: `{"id"?: ..., "ok": true, ...}` or `{"id"?: ..., "ok": false, "error": {...}}`.
public enum Response {
    /// A success response with the given result members.
    public static func ok(id: JSONValue?, _ fields: JSONObject = JSONObject()) -> [UInt8] {
        var object = JSONObject()
        if let id { object.members.append(JSONObject.Member("id", id)) }
        object.members.append(JSONObject.Member("ok", .bool(true)))
        object.members.append(contentsOf: fields.members)
        return JSONWriter.bytes(.object(object))
    }

    /// Starts a success response written by hand for speed: `{"id":…,"ok":true,"<member>":[`.
    /// The caller appends the array's elements, then `]` and `}`.
    public static func beginOK(id: JSONValue?, arrayMember member: String, capacity: Int = 256) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(capacity)
        if let id {
            out.append(contentsOf: #""id":"#.utf8)
            JSONWriter.write(id, to: &out)
            out.append(UInt8(ascii: ","))
        }
        out.append(contentsOf: #""ok":true,"#.utf8)
        JSONWriter.writeString(member, to: &out)
        out.append(contentsOf: ":[".utf8)
        return out
    }

    /// An error response.
    public static func error(id: JSONValue?, _ error: WireError) -> [UInt8] {
        var object = JSONObject()
        if let id { object.members.append(JSONObject.Member("id", id)) }
        object.members.append(JSONObject.Member("ok", .bool(false)))
        object.members.append(JSONObject.Member("error", error.json))
        return JSONWriter.bytes(.object(object))
    }

    /// Checks a parsed response: the object itself when `ok` is true, the error otherwise.
    public static func check(_ json: JSONValue) -> Result<JSONObject, WireError> {
        guard let object = json.objectValue else {
            return .failure(WireError(.badJSON, "response is not an object"))
        }
        if object["ok"] == .bool(true) { return .success(object) }
        return .failure(WireError(json: object["error"] ?? .null) ?? WireError(.internalError, "malformed error response"))
    }
}
