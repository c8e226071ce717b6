import Crypto
public import Wire

/// The body of a front-door request and what is done to each of its messages before ingest sees
/// it (docs/FRONTDOOR.md §5).
public enum Submission {
    /// Why a body was refused as a whole.
    public struct Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        /// `bad_request` or `too_many_events`.
        public var code: String
        public var message: String
        public var description: String { "\(code): \(message)" }
    }

    /// The messages of a body: a JSON array of 1 to `maximumEvents` messages, or one message.
    public static func messages(_ body: [UInt8], maximumEvents: Int) -> Result<[JSONValue], Refusal> {
        guard !body.isEmpty else {
            return .failure(Refusal(code: "bad_request", message: "the body is empty; send a JSON array of messages"))
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(body)
        } catch {
            return .failure(Refusal(code: "bad_request", message: "the body is not valid JSON: \(error)"))
        }
        switch json {
        case .array(let messages):
            guard !messages.isEmpty else {
                return .failure(Refusal(code: "bad_request", message: "the array is empty; send 1 to \(maximumEvents) messages"))
            }
            guard messages.count <= maximumEvents else {
                return .failure(
                    Refusal(
                        code: "too_many_events", message: "\(messages.count) messages in one request; send at most \(maximumEvents)"))
            }
            return .success(messages)
        case .object:
            return .success([json])
        default:
            return .failure(
                Refusal(code: "bad_request", message: "the body must be a JSON array of messages (or one message), got \(json.typeName)"))
        }
    }

    /// The start of every idempotency key the front door stores: `fd:` + 32 hex digits + `:`.
    public static let keyPrefixLength = 36

    /// The longest client `id` that still fits ingest's limit once namespaced.
    public static let maximumClientIdLength = Message.maximumIdLength - keyPrefixLength

    /// The property every forwarded `UsageReported` carries: which credential reported it (the
    /// audit trail for a dispute). A client's own value is overwritten.
    public static let credentialProperty = "frontdoor.credential"

    /// One message checked for `credential`: what to forward to ingest, or why it is refused
    /// (an error of the same shape and codes as ingest's per-event errors).
    public static func prepare(_ event: JSONValue, for credential: Credential) -> Result<JSONValue, WireError> {
        let message: Message
        switch Message.decode(event) {
        case .success(let decoded): message = decoded
        case .failure(let error): return .failure(WireError(.invalidEvent, error.description))
        }
        guard message.type.isClientMessage else {
            return .failure(
                WireError(.forbidden, "\(message.type.rawValue) is an internal message; the front door takes client messages only"))
        }
        if let reason = credential.refusal(for: message) { return .failure(WireError(.forbidden, reason)) }
        guard var envelope = event.objectValue, let resource = message.resource else {
            return .failure(WireError(.invalidEvent, "value: names no resource"))
        }
        // Required here (optional on ingest's socket): a request replayed where the nonce cache
        // cannot see it (after a restart, at another replica) is then at most answered
        // `duplicate`, and a client retrying after a lost answer never counts twice.
        guard let id = message.id else {
            return .failure(
                WireError(
                    .invalidEvent,
                    "id: missing; through the front door every message carries an idempotency key (a new UUID per message, kept for its retries)"
                ))
        }
        guard id.utf8.count <= maximumClientIdLength else {
            return .failure(
                WireError(.invalidEvent, "id: through the front door an idempotency key has at most \(maximumClientIdLength) bytes"))
        }
        envelope["id"] = .string(namespacedKey(id, resource: resource))
        if message.type == .usageReported, var value = envelope["value"]?.objectValue {
            var properties = value["properties"]?.objectValue ?? JSONObject()
            properties[credentialProperty] = .string(credential.id)
            value["properties"] = .object(properties)
            envelope["value"] = .object(value)
        }
        return .success(.object(envelope))
    }

    /// The key ingest stores for a client's `id` about `resource`: `fd:<32 hex>:<id>`, the hex
    /// being the first 128 bits of SHA-256 of the resource's routing name (its `resourceId`, else
    /// its `resourceUri`).
    ///
    /// Ingest's keys are global to the log. Passed through bare, a key chosen by one tenant could
    /// claim a key another tenant (or a connector with predictable keys) will use, and that
    /// usage would be answered `duplicate` and never billed. Scoping the key by the resource,
    /// which the credential must be bound to, keeps each tenant in its own key space, and keeps
    /// retries idempotent across a credential's rotation (the resource stays the same).
    public static func namespacedKey(_ id: String, resource: ResourceName) -> String {
        let name = resource.resourceId ?? resource.resourceUri ?? ""
        return "fd:" + ByteText.hex(SHA256.hash(Array(name.utf8)).prefix(16)) + ":" + id
    }
}
