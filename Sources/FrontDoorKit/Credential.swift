import Crypto
public import Wire

/// What a managed application's deployment holds to call home: the credential's id and its
/// secret, written as one text `fdc_<16 hex>.<43 base64url>` (an ARM parameter, an app setting).
public struct CredentialKey: Sendable, Hashable, CustomStringConvertible {
    /// Public: sent with every request, shown by `meterctl credentials list`.
    public var id: String
    /// Private to the deployment; the front door never sees or stores it.
    public var secret: String

    public init(id: String, secret: String) {
        self.id = id
        self.secret = secret
    }

    /// Reads `<id>.<secret>`; nil when either part is malformed.
    public init?(text: String) {
        guard let dot = text.firstIndex(of: ".") else { return nil }
        let id = String(text[..<dot])
        let secret = String(text[text.index(after: dot)...])
        guard Credential.isWellFormedId(id), secret.utf8.count >= 32, ByteText.bytes(base64URL: secret) != nil else { return nil }
        self.init(id: id, secret: secret)
    }

    /// The one text a deployment is given.
    public var text: String { id + "." + secret }

    /// Never the secret: keys end up in logs through string interpolation otherwise.
    public var description: String { "credential \(id)" }

    /// A new id (64 random bits) and secret (256 random bits) from the system's generator, which
    /// on Linux is `getrandom(2)`.
    public static func generate() -> CredentialKey {
        var generator = SystemRandomNumberGenerator()
        let idBytes = (0..<8).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let secretBytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return CredentialKey(id: Credential.idPrefix + ByteText.hex(idBytes), secret: ByteText.base64URL(secretBytes))
    }
}

/// One deployment's credential as the store keeps it: what it may report for, until when, and
/// the key its requests are verified with (derived from the secret, never the secret itself).
public struct Credential: Sendable, Hashable {
    public var id: String
    /// The `resourceId`s (SaaS subscription ids) the credential may name.
    public var resourceIds: [String]
    /// The `resourceUri`s (managed application ids) the credential may name.
    public var resourceUris: [String]
    /// The client message types it may send; `UsageReported` unless the operator allowed more.
    public var messageTypes: [MessageType]
    public var created: Timestamp
    /// After this instant every request is refused (`credential_expired`).
    public var expires: Timestamp?
    /// When it was revoked; its requests are refused from then on.
    public var revoked: Timestamp?
    /// `RequestSignature.signingKey(secret:)` of the secret: verifies signatures, and cannot be
    /// turned back into the secret. Erased when the credential is revoked.
    public var verificationKey: [UInt8]?

    /// The start of every credential id.
    public static let idPrefix = "fdc_"

    public init(
        id: String, resourceIds: [String], resourceUris: [String], messageTypes: [MessageType] = [.usageReported], created: Timestamp,
        expires: Timestamp? = nil, revoked: Timestamp? = nil, verificationKey: [UInt8]?
    ) {
        self.id = id
        self.resourceIds = resourceIds
        self.resourceUris = resourceUris
        self.messageTypes = messageTypes
        self.created = created
        self.expires = expires
        self.revoked = revoked
        self.verificationKey = verificationKey
    }

    /// A new credential for `key`, storing only the key derived from its secret.
    public init(
        key: CredentialKey, resourceIds: [String], resourceUris: [String], messageTypes: [MessageType] = [.usageReported],
        created: Timestamp, expires: Timestamp? = nil
    ) {
        self.init(
            id: key.id, resourceIds: resourceIds, resourceUris: resourceUris, messageTypes: messageTypes, created: created,
            expires: expires, verificationKey: RequestSignature.signingKey(secret: key.secret))
    }

    /// `fdc_` and 16 lower-case hex digits.
    public static func isWellFormedId(_ id: String) -> Bool {
        guard id.hasPrefix(idPrefix) else { return false }
        let digits = id.utf8.dropFirst(idPrefix.utf8.count)
        return digits.count == 16
            && digits.allSatisfy {
                ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "f"))
            }
    }

    /// Whether requests are served at `now`.
    public enum Status: String, Sendable {
        case active, expired, revoked
    }

    public func status(at now: Timestamp) -> Status {
        if revoked != nil { return .revoked }
        if let expires, now >= expires { return .expired }
        return .active
    }

    /// Why this credential may not send `message`, or nil when it may: the type must be allowed
    /// and **every** name the message carries must be bound to it (a message naming a bound URI
    /// and someone else's id would be billed to that id's subscription by ingest's routing).
    public func refusal(for message: Message) -> String? {
        guard messageTypes.contains(message.type) else {
            let allowed = messageTypes.map(\.rawValue).joined(separator: ", ")
            return "credential \(id) may send \(allowed) only, not \(message.type.rawValue)"
        }
        guard let resource = message.resource else {
            return "credential \(id) may not send \(message.type.rawValue)"
        }
        if let resourceId = resource.resourceId, !resourceIds.contains(resourceId) {
            return "credential \(id) is not bound to resourceId \"\(resourceId)\"; it reports for \(boundNames)"
        }
        if let resourceUri = resource.resourceUri, !resourceUris.contains(resourceUri) {
            return "credential \(id) is not bound to resourceUri \"\(resourceUri)\"; it reports for \(boundNames)"
        }
        return nil
    }

    /// The bound resources, for messages to the credential's own holder.
    public var boundNames: String {
        let names = resourceUris.map { "resourceUri \"\($0)\"" } + resourceIds.map { "resourceId \"\($0)\"" }
        return names.joined(separator: ", ")
    }
}

extension Credential {
    /// The stored form (docs/FRONTDOOR.md §3).
    public var json: JSONValue {
        func strings(_ values: [String]) -> JSONValue { .array(values.map { .string($0) }) }
        func time(_ value: Timestamp?) -> JSONValue { value.map { .string($0.iso8601) } ?? .null }
        return .object(
            JSONObject([
                .init("id", .string(id)),
                .init("resourceUris", strings(resourceUris)),
                .init("resourceIds", strings(resourceIds)),
                .init("messages", strings(messageTypes.map(\.rawValue))),
                .init("created", .string(created.iso8601)),
                .init("expires", time(expires)),
                .init("revoked", time(revoked)),
                .init("verificationKey", verificationKey.map { .string(ByteText.hex($0)) } ?? .null),
            ]))
    }

    /// Reads the stored form; the error names the member at fault.
    public init(json: JSONValue) throws(CredentialStoreError) {
        guard let object = json.objectValue else { throw CredentialStoreError("a credential must be an object, got \(json.typeName)") }
        guard let id = object["id"]?.stringValue, Self.isWellFormedId(id) else {
            throw CredentialStoreError("a credential has no well-formed \"id\" (fdc_ and 16 hex digits)")
        }
        func strings(_ key: String) throws(CredentialStoreError) -> [String] {
            guard let array = object[key]?.arrayValue else { throw CredentialStoreError("credential \(id): \"\(key)\" must be an array") }
            var values: [String] = []
            for element in array {
                guard let text = element.stringValue, !text.isEmpty else {
                    throw CredentialStoreError("credential \(id): \"\(key)\" must hold non-empty strings")
                }
                values.append(text)
            }
            return values
        }
        func time(_ key: String) throws(CredentialStoreError) -> Timestamp? {
            guard let value = object[key], value != .null else { return nil }
            guard let text = value.stringValue, let time = Timestamp(iso8601: text) else {
                throw CredentialStoreError("credential \(id): \"\(key)\" must be an ISO 8601 time or null")
            }
            return time
        }
        let uris = try strings("resourceUris")
        let ids = try strings("resourceIds")
        guard !uris.isEmpty || !ids.isEmpty else { throw CredentialStoreError("credential \(id) is bound to no resource") }
        var types: [MessageType] = []
        for name in try strings("messages") {
            guard let type = MessageType(rawValue: name), type.isClientMessage else {
                throw CredentialStoreError("credential \(id): \"\(name)\" is not a client message type")
            }
            types.append(type)
        }
        guard let created = try time("created") else { throw CredentialStoreError("credential \(id): \"created\" is missing") }
        let revoked = try time("revoked")
        var key: [UInt8]?
        if let value = object["verificationKey"], value != .null {
            guard let text = value.stringValue, let bytes = Hex.bytes(text), bytes.count == 32 else {
                throw CredentialStoreError("credential \(id): \"verificationKey\" must be 64 hex digits or null")
            }
            key = bytes
        }
        guard key != nil || revoked != nil else {
            throw CredentialStoreError("credential \(id) has no verificationKey and is not revoked")
        }
        self.init(
            id: id, resourceIds: ids, resourceUris: uris, messageTypes: types, created: created, expires: try time("expires"),
            revoked: revoked, verificationKey: key)
    }
}
