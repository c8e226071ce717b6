/// A validated message ready for the log: what ingest needs to place it, and its bytes.
public struct ValidatedEvent: Sendable {
    public var type: MessageType
    public var idempotencyKey: String?
    /// The resource that decides the partition, or nil for partition-addressed messages.
    public var resource: ResourceName?
    public var addressedPartition: Int?
    /// The message exactly as the client sent it (its bytes within the request).
    public var payload: [UInt8]
    /// The digest of the message's canonical form, for messages with an idempotency key: a resend
    /// with the key must carry the same message.
    public var payloadDigest: PayloadDigest?
    /// `PayloadDigest.hash` of the idempotency key, which the index keeps instead of the key.
    public var keyDigest: PayloadDigest?

    public init(message: Message, payload: [UInt8], json: JSONValue? = nil) {
        self.type = message.type
        self.idempotencyKey = message.id
        self.resource = message.resource
        self.addressedPartition = message.addressedPartition
        self.payload = payload
        if let key = message.id {
            keyDigest = PayloadDigest.hash(key)
            if let json {
                payloadDigest = PayloadDigest.ofMessage(json)
            } else if let parsed = try? JSONParser.parse(payload) {
                payloadDigest = PayloadDigest.ofMessage(parsed)
            }
        }
    }

    public var isPurchase: Bool { type == .subscriptionPurchased }
}

/// An `append` request decoded in one pass: every event validated on its own (one bad event
/// rejects only itself) and kept as the exact bytes the client sent.
public struct AppendBatch: Sendable {
    public var id: JSONValue?
    public var events: [Result<ValidatedEvent, WireError>]

    /// Decodes an `append` request frame.
    public static func decode(_ payload: [UInt8], maximumDepth: Int = JSONParser.defaultMaximumDepth) -> Result<
        AppendBatch, RequestError
    > {
        switch Request.decode(payload, maximumDepth: maximumDepth) {
        case .failure(let error): return .failure(error)
        case .success(let request): return AppendBatch.from(request)
        }
    }

    /// The events of a decoded `append` request, each validated and with its bytes as sent
    /// (re-encoded compactly when the request was built in code rather than read from a frame).
    public static func from(_ request: Request) -> Result<AppendBatch, RequestError> {
        guard let events = request["events"]?.arrayValue else {
            return .failure(RequestError(id: request.id, error: WireError(.badRequest, "append needs \"events\": an array of messages")))
        }
        let spans = request.eventSpans.count == events.count ? request.eventSpans : nil
        var results: [Result<ValidatedEvent, WireError>] = []
        results.reserveCapacity(events.count)
        for (index, event) in events.enumerated() {
            switch Message.decode(event) {
            case .success(let message):
                let bytes = spans.map { Array(request.frame[$0[index]]) } ?? JSONWriter.bytes(event)
                results.append(.success(ValidatedEvent(message: message, payload: bytes, json: event)))
            case .failure(let error):
                results.append(.failure(WireError(.invalidEvent, error.description)))
            }
        }
        return .success(AppendBatch(id: request.id, events: results))
    }
}
