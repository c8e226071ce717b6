import Wire

/// What a client sends to a NATS server, written as protocol bytes. Pure.
public enum NATSCommand {
    /// The `CONNECT` options this client uses: headers on, no echo of its own messages, and a 503
    /// status instead of silence when a request has no responder.
    public static func connect(name: String, user: String?, password: String?, token: String?) -> [UInt8] {
        var options: [JSONObject.Member] = [
            .init("verbose", false), .init("pedantic", false), .init("tls_required", false), .init("name", .string(name)),
            .init("lang", "swift"), .init("version", "1.0"), .init("protocol", 1), .init("headers", true),
            .init("no_responders", true), .init("echo", false),
        ]
        if let user { options.append(.init("user", .string(user))) }
        if let password { options.append(.init("pass", .string(password))) }
        if let token { options.append(.init("auth_token", .string(token))) }
        var out = Array("CONNECT ".utf8)
        JSONWriter.write(.object(JSONObject(options)), to: &out)
        out.append(contentsOf: [13, 10])
        return out
    }

    /// `PUB`, or `HPUB` when there are headers.
    public static func publish(subject: String, replyTo: String?, headers: NATSHeaders?, payload: [UInt8], to out: inout [UInt8]) {
        let headerBytes = headers?.bytes
        out.append(contentsOf: (headerBytes == nil ? "PUB " : "HPUB ").utf8)
        out.append(contentsOf: subject.utf8)
        out.append(UInt8(ascii: " "))
        if let replyTo {
            out.append(contentsOf: replyTo.utf8)
            out.append(UInt8(ascii: " "))
        }
        if let headerBytes {
            out.append(contentsOf: String(headerBytes.count).utf8)
            out.append(UInt8(ascii: " "))
            out.append(contentsOf: String(headerBytes.count + payload.count).utf8)
        } else {
            out.append(contentsOf: String(payload.count).utf8)
        }
        out.append(contentsOf: [13, 10])
        if let headerBytes { out.append(contentsOf: headerBytes) }
        out.append(contentsOf: payload)
        out.append(contentsOf: [13, 10])
    }

    /// `SUB <subject> <sid>`.
    public static func subscribe(subject: String, sid: UInt64) -> [UInt8] { Array("SUB \(subject) \(sid)\r\n".utf8) }

    /// `UNSUB <sid>`.
    public static func unsubscribe(sid: UInt64) -> [UInt8] { Array("UNSUB \(sid)\r\n".utf8) }

    public static let ping = Array("PING\r\n".utf8)
    public static let pong = Array("PONG\r\n".utf8)

    /// Whether `subject` may be written in a command: non-empty tokens, no white space.
    public static func isValidSubject(_ subject: String) -> Bool {
        !subject.isEmpty && subject.utf8.count <= 1024 && !subject.utf8.contains { $0 <= 32 || $0 == 127 }
            && !subject.split(separator: ".", omittingEmptySubsequences: false).contains { $0.isEmpty }
    }
}

/// What a server's `INFO` says that the client uses.
public struct NATSServerInfo: Sendable, Hashable {
    public var serverID: String
    public var serverName: String
    public var version: String
    public var maximumPayload: Int
    public var headers: Bool
    public var authRequired: Bool
    public var tlsRequired: Bool
    /// The other servers of the cluster a client may connect to (`host:port`).
    public var connectURLs: [String]

    /// Decodes an `INFO` JSON object.
    public static func decode(_ json: [UInt8]) throws(NATSProtocolError) -> NATSServerInfo {
        guard let value = try? JSONParser.parse(json), value.objectValue != nil else {
            throw NATSProtocolError("INFO is not a JSON object")
        }
        return NATSServerInfo(
            serverID: value["server_id"]?.stringValue ?? "", serverName: value["server_name"]?.stringValue ?? "",
            version: value["version"]?.stringValue ?? "", maximumPayload: value["max_payload"]?.intValue ?? 1 << 20,
            headers: value["headers"] == .bool(true), authRequired: value["auth_required"] == .bool(true),
            tlsRequired: value["tls_required"] == .bool(true),
            connectURLs: value["connect_urls"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }
}

/// One server to connect to: `nats://[user:password@]host[:port]` (or `host[:port]`), with the
/// credentials for `CONNECT`.
public struct NATSServerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public var user: String?
    public var password: String?
    /// A token given as the user part with no password (`nats://token@host`).
    public var token: String?

    public init(host: String, port: UInt16 = 4222, user: String? = nil, password: String? = nil, token: String? = nil) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.token = token
    }

    /// The address without credentials (for logs: secrets are never written).
    public var description: String { "nats://\(host.contains(":") ? "[\(host)]" : host):\(port)" }

    /// Parses one URL; nil when it is not one.
    public init?(_ text: String) {
        var rest = Substring(text.trimmingSpaces)
        if rest.hasPrefix("nats://") {
            rest = rest.dropFirst("nats://".count)
        } else if rest.contains("://") {
            return nil
        }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[rest.startIndex..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = Self.unescape(credentials[credentials.startIndex..<colon])
                password = Self.unescape(credentials[credentials.index(after: colon)...])
            } else {
                token = Self.unescape(credentials)
            }
        }
        while rest.hasSuffix("/") { rest.removeLast() }
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { return nil }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[rest.startIndex..<colon])
            portText = rest[rest.index(after: colon)...]
        } else {
            host = String(rest)
        }
        port = 4222
        if let portText {
            guard let number = UInt16(portText), number > 0 else { return nil }
            port = number
        }
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else { return nil }
    }

    /// Parses a comma-separated list of URLs; nil when any is not one or the list is empty.
    public static func list(_ text: String) -> [NATSServerAddress]? {
        let parts = text.split(separator: ",").map(String.init)
        let addresses = parts.compactMap(NATSServerAddress.init)
        guard !parts.isEmpty, addresses.count == parts.count else { return nil }
        return addresses
    }

    private static func unescape(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var index = text.utf8.startIndex
        let utf8 = text.utf8
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%"), let high = utf8.index(index, offsetBy: 1, limitedBy: utf8.endIndex), high < utf8.endIndex,
                let low = utf8.index(index, offsetBy: 2, limitedBy: utf8.endIndex), low < utf8.endIndex,
                let value = UInt8(String(decoding: [utf8[high], utf8[low]], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                index = utf8.index(index, offsetBy: 3)
            } else {
                bytes.append(byte)
                index = utf8.index(after: index)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
