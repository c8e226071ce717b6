import Crypto
public import Wire

/// One billing adapter's credential as the store keeps it: what it may read, until when, and the
/// SHA-256 of its secret (never the secret). Adapter credentials only ever read; they are distinct
/// from the customers' run-rate tokens (one subscription each, signed, short-lived) and from the
/// front door's credentials (which append usage).
public struct AdapterCredential: Sendable, Hashable {
    public var id: String
    /// A label for people: which system uses it.
    public var name: String
    /// The subscriptions it may read (resourceIds, resourceUris), or nil for all of them.
    public var subscriptions: [String]?
    public var created: Timestamp
    /// From this instant on every request is refused (`credential_expired`).
    public var expires: Timestamp?
    /// When it was revoked; refused from then on.
    public var revoked: Timestamp?
    /// Lower-case hex SHA-256 of the secret; erased when the credential is revoked.
    public var secretHash: String?

    public init(
        id: String, name: String, subscriptions: [String]?, created: Timestamp, expires: Timestamp? = nil, revoked: Timestamp? = nil,
        secretHash: String?
    ) {
        self.id = id
        self.name = name
        self.subscriptions = subscriptions
        self.created = created
        self.expires = expires
        self.revoked = revoked
        self.secretHash = secretHash
    }

    /// A new credential for `key`, keeping only the hash of its secret.
    public init(key: AdapterKey, name: String, subscriptions: [String]?, created: Timestamp, expires: Timestamp? = nil) {
        self.init(id: key.id, name: name, subscriptions: subscriptions, created: created, expires: expires, secretHash: key.secretHash)
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

    /// Whether `key`'s secret is this credential's (compared in constant time).
    public func matches(_ key: AdapterKey) -> Bool {
        guard key.id == id, let secretHash else { return false }
        return HMACSHA256.constantTimeEqual(Array(key.secretHash.utf8), Array(secretHash.utf8))
    }

    /// The scope for people: "all subscriptions" or the names.
    public var scopeText: String { subscriptions.map { $0.joined(separator: " ") } ?? "all subscriptions" }
}

extension AdapterCredential {
    /// The stored form (docs/BILLING-ADAPTERS.md, "Credentials").
    public var json: JSONValue {
        func time(_ value: Timestamp?) -> JSONValue { value.map { .string($0.iso8601) } ?? .null }
        return .object(
            JSONObject([
                .init("id", .string(id)), .init("name", .string(name)),
                .init("subscriptions", subscriptions.map { .array($0.map { .string($0) }) } ?? .null),
                .init("created", .string(created.iso8601)), .init("expires", time(expires)), .init("revoked", time(revoked)),
                .init("secretHash", secretHash.map { .string($0) } ?? .null),
            ]))
    }

    /// Reads the stored form; the error names the member at fault.
    public init(json: JSONValue) throws(AdapterCredentialError) {
        guard let object = json.objectValue else { throw AdapterCredentialError("an adapter credential must be an object") }
        guard let id = object["id"]?.stringValue, AdapterKey.isWellFormedId(id) else {
            throw AdapterCredentialError("an adapter credential has no well-formed \"id\" (mad_ and 16 hex digits)")
        }
        func time(_ key: String) throws(AdapterCredentialError) -> Timestamp? {
            guard let value = object[key], value != .null else { return nil }
            guard let text = value.stringValue, let time = Timestamp(iso8601: text) else {
                throw AdapterCredentialError("adapter credential \(id): \"\(key)\" must be an ISO 8601 time or null")
            }
            return time
        }
        var subscriptions: [String]?
        if let value = object["subscriptions"], value != .null {
            guard let array = value.arrayValue, !array.isEmpty else {
                throw AdapterCredentialError("adapter credential \(id): \"subscriptions\" must be null (all) or a non-empty array")
            }
            var names: [String] = []
            for element in array {
                guard let name = element.stringValue, !name.isEmpty else {
                    throw AdapterCredentialError("adapter credential \(id): \"subscriptions\" must hold non-empty strings")
                }
                names.append(name)
            }
            subscriptions = names
        }
        guard let created = try time("created") else { throw AdapterCredentialError("adapter credential \(id): \"created\" is missing") }
        let revoked = try time("revoked")
        var hash: String?
        if let value = object["secretHash"], value != .null {
            guard let text = value.stringValue, text.utf8.count == 64,
                text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
            else { throw AdapterCredentialError("adapter credential \(id): \"secretHash\" must be 64 lower-case hex digits or null") }
            hash = text
        }
        guard hash != nil || revoked != nil else {
            throw AdapterCredentialError("adapter credential \(id) has no secretHash and is not revoked")
        }
        self.init(
            id: id, name: object["name"]?.stringValue ?? "", subscriptions: subscriptions, created: created, expires: try time("expires"),
            revoked: revoked, secretHash: hash)
    }
}

/// Why the adapter credential file could not be read or written.
public struct AdapterCredentialError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
