import Foundation
import Wire

/// An error JetStream answered with (`{"error":{"code","err_code","description"}}`), or a failure
/// to reach it.
public struct JetStreamError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The HTTP-like code (404, 400, 503); 0 when JetStream was not reached.
    public var code: Int
    /// JetStream's own error code (10071: wrong last sequence; 10059: stream not found), 0 when none.
    public var errorCode: Int
    public var message: String
    /// Set when JetStream was not reached (or did not answer): whether a publish took effect is
    /// then unknown.
    public var transport: NATSError?

    public init(code: Int, errorCode: Int, message: String, transport: NATSError? = nil) {
        self.code = code
        self.errorCode = errorCode
        self.message = message
        self.transport = transport
    }

    public var description: String { errorCode == 0 ? message : "\(message) (JetStream error \(errorCode))" }

    /// `Nats-Expected-Last-Sequence` did not match: another writer appended first.
    public static let wrongLastSequence = 10071
    /// The stream does not exist.
    public static let streamNotFound = 10059

    /// The stream's last sequence a wrong-last-sequence error names (`wrong last sequence: 42`).
    public var actualLastSequence: UInt64? {
        guard errorCode == Self.wrongLastSequence, let colon = message.lastIndex(of: ":") else { return nil }
        return UInt64(String(message[message.index(after: colon)...]).trimmingSpaces)
    }

    static func from(_ transport: NATSError) -> JetStreamError {
        JetStreamError(code: 0, errorCode: 0, message: "JetStream not reached: \(transport.message)", transport: transport)
    }

    /// The error in an API answer, if it is one.
    static func decode(_ value: JSONValue) -> JetStreamError? {
        guard let error = value["error"] else { return nil }
        return JetStreamError(
            code: error["code"]?.intValue ?? 0, errorCode: error["err_code"]?.intValue ?? 0,
            message: error["description"]?.stringValue ?? "unknown JetStream error")
    }
}

/// JetStream's answer to a publish.
public struct PublishAck: Sendable, Hashable {
    public var stream: String
    /// The stream sequence the message got (for a duplicate: the one it got the first time).
    public var sequence: UInt64
    /// The `Nats-Msg-Id` was seen within the window: nothing new was stored.
    public var duplicate: Bool

    /// Decodes an answer: the acknowledgement, or the error JetStream gave.
    public static func decode(_ payload: [UInt8]) -> Result<PublishAck, JetStreamError> {
        guard let value = try? JSONParser.parse(payload) else {
            return .failure(JetStreamError(code: 0, errorCode: 0, message: "JetStream's publish answer is not JSON"))
        }
        if let error = JetStreamError.decode(value) { return .failure(error) }
        guard let stream = value["stream"]?.stringValue, let text = value["seq"], case .number(let digits) = text,
            let sequence = UInt64(digits)
        else {
            return .failure(JetStreamError(code: 0, errorCode: 0, message: "JetStream's publish answer has no stream and seq"))
        }
        return .success(PublishAck(stream: stream, sequence: sequence, duplicate: value["duplicate"] == .bool(true)))
    }
}

/// What `STREAM.INFO` says of a stream that the store checks.
public struct StreamInfo: Sendable, Hashable {
    public var name: String
    public var subjects: [String]
    public var replicas: Int
    public var storage: String
    /// Nanoseconds.
    public var duplicateWindow: UInt64
    public var allowDirect: Bool
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    /// The server leading the stream's replicas (clustered only).
    public var leader: String?

    static func decode(_ value: JSONValue) -> StreamInfo? {
        guard let config = value["config"], let name = config["name"]?.stringValue, let state = value["state"] else { return nil }
        func number(_ value: JSONValue?) -> UInt64 {
            if case .number(let text)? = value { return UInt64(text) ?? 0 }
            return 0
        }
        return StreamInfo(
            name: name, subjects: config["subjects"]?.arrayValue?.compactMap(\.stringValue) ?? [],
            replicas: config["num_replicas"]?.intValue ?? 1, storage: config["storage"]?.stringValue ?? "",
            duplicateWindow: number(config["duplicate_window"]), allowDirect: config["allow_direct"] == .bool(true),
            messages: number(state["messages"]), bytes: number(state["bytes"]), firstSequence: number(state["first_seq"]),
            lastSequence: number(state["last_seq"]), leader: value["cluster"]?["leader"]?.stringValue)
    }
}

/// A message read from a stream by direct get.
public struct StoredMessage: Sendable, Hashable {
    public var sequence: UInt64
    public var subject: String
    /// The message's own headers (the `Nats-*` ones direct get adds are left in).
    public var headers: NATSHeaders
    public var payload: [UInt8]
}

/// The JetStream API over a connection's request-reply (`$JS.API.…`): streams made and checked,
/// publishes acknowledged, messages read by direct get. Stateless: any number may share a
/// connection.
public struct JetStream: Sendable {
    public let connection: NATSConnection
    /// Seconds an API request waits for its answer.
    public var timeout: Double

    public init(connection: NATSConnection, timeout: Double = 5) {
        self.connection = connection
        self.timeout = timeout
    }

    /// The header that de-duplicates a publish within the stream's window.
    public static let messageID = "Nats-Msg-Id"
    /// The header that makes a publish fail unless the stream's last sequence is the one given.
    public static let expectedLastSequence = "Nats-Expected-Last-Sequence"
    /// The header that makes a publish fail unless it lands in the named stream.
    public static let expectedStream = "Nats-Expected-Stream"

    private func api(_ subject: String, _ body: JSONValue?) -> Result<JSONValue, JetStreamError> {
        let payload = body.map(JSONWriter.bytes) ?? []
        switch connection.requestAndWait(subject: "$JS.API." + subject, payload: payload, timeout: timeout) {
        case .failure(let error): return .failure(.from(error))
        case .success(let message):
            guard let value = try? JSONParser.parse(message.payload) else {
                return .failure(JetStreamError(code: 0, errorCode: 0, message: "JetStream's answer to \(subject) is not JSON"))
            }
            if let error = JetStreamError.decode(value) { return .failure(error) }
            return .success(value)
        }
    }

    /// The stream's configuration and state; nil when it does not exist.
    public func streamInfo(_ name: String) -> Result<StreamInfo?, JetStreamError> {
        switch api("STREAM.INFO." + name, nil) {
        case .failure(let error) where error.errorCode == JetStreamError.streamNotFound: return .success(nil)
        case .failure(let error): return .failure(error)
        case .success(let value):
            guard let info = StreamInfo.decode(value) else {
                return .failure(JetStreamError(code: 0, errorCode: 0, message: "STREAM.INFO answered without a config"))
            }
            return .success(info)
        }
    }

    /// Creates a stream with file storage, `replicas` copies, one subject, a de-duplication
    /// window of `duplicateWindowSeconds`, direct get allowed, messages never deleted.
    public func createStream(name: String, subject: String, replicas: Int, duplicateWindowSeconds: Int) -> Result<
        StreamInfo, JetStreamError
    > {
        let config: JSONValue = [
            "name": .string(name), "subjects": [.string(subject)], "retention": "limits", "max_consumers": -1, "max_msgs": -1,
            "max_bytes": -1, "max_age": 0, "max_msgs_per_subject": -1, "max_msg_size": -1, "discard": "old", "storage": "file",
            "num_replicas": .number(String(replicas)), "duplicate_window": .number(String(UInt64(duplicateWindowSeconds) * 1_000_000_000)),
            "allow_direct": true, "deny_delete": true, "deny_purge": true,
        ]
        switch api("STREAM.CREATE." + name, config) {
        case .failure(let error): return .failure(error)
        case .success(let value):
            guard let info = StreamInfo.decode(value) else {
                return .failure(JetStreamError(code: 0, errorCode: 0, message: "STREAM.CREATE answered without a config"))
            }
            return .success(info)
        }
    }

    /// Publishes and returns at once: `PublishAck.decode` reads the answer, so many publishes can
    /// be in flight.
    public func publishAsync(subject: String, headers: NATSHeaders, payload: [UInt8]) throws(NATSError) -> NATSRequest {
        try connection.request(subject: subject, headers: headers, payload: payload)
    }

    /// Publishes and waits for the acknowledgement.
    public func publish(subject: String, headers: NATSHeaders, payload: [UInt8]) -> Result<PublishAck, JetStreamError> {
        switch connection.requestAndWait(subject: subject, headers: headers, payload: payload, timeout: timeout) {
        case .failure(let error): return .failure(.from(error))
        case .success(let message): return PublishAck.decode(message.payload)
        }
    }

    /// Asks for message `sequence` of `stream` by direct get (answered by any replica); the answer
    /// is read by `storedMessage(_:)`.
    public func directGetAsync(stream: String, sequence: UInt64) throws(NATSError) -> NATSRequest {
        try connection.request(subject: "$JS.API.DIRECT.GET." + stream, payload: Array(#"{"seq":\#(sequence)}"#.utf8))
    }

    /// Message `sequence` of `stream` as its leader has it (`STREAM.MSG.GET`): authoritative where
    /// a direct get may be answered by a replica that lags. Nil when the stream has none there.
    public func leaderGet(stream: String, sequence: UInt64) -> Result<StoredMessage?, JetStreamError> {
        switch api("STREAM.MSG.GET." + stream, ["seq": .number(String(sequence))]) {
        case .failure(let error) where error.code == 404: return .success(nil)
        case .failure(let error): return .failure(error)
        case .success(let value):
            guard let message = value["message"], case .number(let digits)? = message["seq"], let found = UInt64(digits),
                let data = Self.base64(message["data"]?.stringValue ?? "")
            else { return .failure(JetStreamError(code: 0, errorCode: 0, message: "STREAM.MSG.GET answered without a message")) }
            var headers = NATSHeaders()
            if let encoded = message["hdrs"]?.stringValue, !encoded.isEmpty {
                guard let block = Self.base64(encoded), let parsed = try? NATSHeaders.parse(block[...]) else {
                    return .failure(JetStreamError(code: 0, errorCode: 0, message: "STREAM.MSG.GET answered with unreadable headers"))
                }
                headers = parsed
            }
            return .success(StoredMessage(sequence: found, subject: message["subject"]?.stringValue ?? "", headers: headers, payload: data))
        }
    }

    static func base64(_ text: String) -> [UInt8]? { Data(base64Encoded: text).map { Array($0) } }

    /// Reads a direct get answer: the message, nil when the stream has no message at that
    /// sequence (a 404: not yet there, or never).
    public static func storedMessage(_ answer: Result<NATSMessage, NATSError>) -> Result<StoredMessage?, JetStreamError> {
        switch answer {
        case .failure(let error): return .failure(.from(error))
        case .success(let message):
            guard let headers = message.headers else {
                return .failure(JetStreamError(code: 0, errorCode: 0, message: "a direct get answer has no headers"))
            }
            if let status = headers.status {
                if status == 404 { return .success(nil) }
                return .failure(JetStreamError(code: status, errorCode: 0, message: "direct get: \(status) \(headers.statusDescription)"))
            }
            guard let sequenceText = headers["Nats-Sequence"], let sequence = UInt64(sequenceText) else {
                return .failure(JetStreamError(code: 0, errorCode: 0, message: "a direct get answer has no Nats-Sequence"))
            }
            return .success(
                StoredMessage(sequence: sequence, subject: headers["Nats-Subject"] ?? "", headers: headers, payload: message.payload))
        }
    }
}
