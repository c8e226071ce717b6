/// A validated message ready for the log: what ingest needs to place it, and its bytes.
public struct ValidatedEvent: Sendable {
    public var type: MessageType
    /// The idempotency key: a string of its own (the general path), or bytes of `payload` (the
    /// fast path's usage reports, whose canonical form holds the key unescaped): read on the fast
    /// path, an event makes no string of its key or names unless one is asked for.
    private var key: Text
    /// The resource's names, as `key` is kept.
    private var resourceId: Text
    private var resourceUri: Text
    /// `resource`'s `routeHash` (of nothing without one), taken where the event is read, so the
    /// committer, which places events one after another, need not hash their names.
    public private(set) var routeHash: UInt64
    public var addressedPartition: Int?
    /// The message in its canonical form (`CanonicalJSON`): what the log stores.
    public private(set) var payload: [UInt8]
    /// The digest of the message's canonical form, for messages with an idempotency key: a resend
    /// with the key must carry the same message.
    public var payloadDigest: PayloadDigest?
    /// `PayloadDigest.hash` of the idempotency key, which the index keeps instead of the key.
    public var keyDigest: PayloadDigest?
    /// A usage report's `timestamp` (the sender's clock), which ingest checks under event-time
    /// attribution; nil for other messages.
    public var eventTime: Timestamp?
    /// The plan catalog's id this message defines (`PlanDefined`) or names instead of a whole plan
    /// (a purchase or plan change whose plan gives only its `planId`): ingest resolves it when it
    /// commits the message, in log order; nil for other messages.
    public var catalogPlanId: String?

    /// Where a text of the event is: nowhere, a string of its own, or bytes of the payload.
    enum Text: Sendable {
        case none
        case string(String)
        case inPayload(Range<Int>)
    }

    /// A usage report the fast path read: its canonical bytes, where its key and names are in
    /// them, and its digests.
    init(
        usagePayload payload: [UInt8], key: Range<Int>?, resourceId: Range<Int>?, resourceUri: Range<Int>?, eventTime: Timestamp,
        keyDigest: PayloadDigest?, payloadDigest: PayloadDigest?
    ) {
        func located(_ range: Range<Int>?) -> Text {
            range.map(Text.inPayload) ?? .none
        }
        self.type = .usageReported
        self.key = located(key)
        self.resourceId = located(resourceId)
        self.resourceUri = located(resourceUri)
        self.routeHash = payload.withUnsafeBytes { bytes in
            guard let names = resourceId ?? resourceUri else { return ResourceName.routeHash(of: "") }
            return ResourceName.routeHash(utf8: UnsafeRawBufferPointer(rebasing: bytes[names]))
        }
        self.addressedPartition = nil
        self.payload = payload
        self.eventTime = eventTime
        self.keyDigest = keyDigest
        self.payloadDigest = payloadDigest
    }

    /// The idempotency key, or nil (made into a string when asked for: ask `hasIdempotencyKey`
    /// or `keyInPayload` where a string is not needed).
    public var idempotencyKey: String? { string(key) }

    /// Whether the message has an idempotency key.
    public var hasIdempotencyKey: Bool {
        if case .none = key { return false }
        return true
    }

    /// Where the idempotency key is in `payload`, when it is kept there rather than as a string.
    public var keyInPayload: Range<Int>? {
        guard case .inPayload(let range) = key else { return nil }
        return range
    }

    /// The resource that decides the partition, or nil for partition-addressed messages.
    public var resource: ResourceName? {
        let id = string(resourceId)
        let uri = string(resourceUri)
        guard id != nil || uri != nil else { return nil }
        return ResourceName(resourceId: id, resourceUri: uri)
    }

    /// Whether the message names a `resourceUri` (the one name a purchase may route elsewhere
    /// than its hash says: `PartitionRouter`).
    public var namesResourceUri: Bool {
        if case .none = resourceUri { return false }
        return true
    }

    private func string(_ text: Text) -> String? {
        switch text {
        case .none: return nil
        case .string(let string): return string
        case .inPayload(let range): return String(decoding: payload[range], as: UTF8.self)
        }
    }

    private static func text(_ string: String?) -> Text { string.map(Text.string) ?? .none }

    /// A decoded message and its JSON: stored in its canonical form, with its digests.
    public init(message: Message, json: JSONValue) {
        self.type = message.type
        self.key = Self.text(message.id)
        self.resourceId = Self.text(message.resource?.resourceId)
        self.resourceUri = Self.text(message.resource?.resourceUri)
        self.routeHash = message.resource?.routeHash ?? ResourceName.routeHash(of: "")
        self.addressedPartition = message.addressedPartition
        self.payload = CanonicalJSON.bytes(json)
        switch message.body {
        case .usageReported(let usage): eventTime = usage.timestamp
        case .subscriptionPurchased(let purchase) where purchase.plan.isCatalogReference: catalogPlanId = purchase.plan.planId
        case .planChanged(let change) where change.plan.isCatalogReference: catalogPlanId = change.plan.planId
        case .planDefined(let definition): catalogPlanId = definition.plan.planId
        default: break
        }
        if let key = message.id {
            keyDigest = PayloadDigest.hash(key)
            payloadDigest = PayloadDigest.ofMessage(json)
        }
    }

    /// Validates one message of an append (the general path).
    public static func decode(_ json: JSONValue) -> Result<ValidatedEvent, WireError> {
        switch Message.decode(json) {
        case .success(let message): return .success(ValidatedEvent(message: message, json: json))
        case .failure(let error): return .failure(WireError(.invalidEvent, error.description))
        }
    }

    public var isPurchase: Bool { type == .subscriptionPurchased }
}

/// An `append` request decoded: every event validated on its own (one bad event rejects only
/// itself) and kept in its canonical form.
public struct AppendBatch: Sendable {
    public var id: JSONValue?
    public var events: [Result<ValidatedEvent, WireError>]

    /// Decodes an `append` request frame: on the fast path when it can, else the general one.
    public static func decode(_ payload: [UInt8], maximumDepth: Int = JSONParser.defaultMaximumDepth) -> Result<
        AppendBatch, RequestError
    > {
        if let batch = AppendFastPath.read(payload, maximumDepth: maximumDepth) { return .success(batch) }
        switch Request.decode(payload, maximumDepth: maximumDepth) {
        case .failure(let error): return .failure(error)
        case .success(let request): return AppendBatch.from(request)
        }
    }

    /// The events read, moved out of the batch (none copied, so no event's strings and payload are
    /// retained again), with the place of each in the request, and the refusals by place.
    public consuming func separated() -> (events: [ValidatedEvent], places: [Int], refused: [(place: Int, error: WireError)]) {
        var valid: [ValidatedEvent] = []
        var places: [Int] = []
        var refused: [(place: Int, error: WireError)] = []
        valid.reserveCapacity(events.count)
        places.reserveCapacity(events.count)
        for place in events.indices {
            switch Self.take(&events[place]) {
            case .success(let event):
                valid.append(event)
                places.append(place)
            case .failure(let error): refused.append((place, error))
            }
        }
        return (valid, places, refused)
    }

    /// What `slot` held, moved out, with a refusal made of constants left in its place.
    static func take(_ slot: inout Result<ValidatedEvent, WireError>) -> Result<ValidatedEvent, WireError> {
        var taken = Result<ValidatedEvent, WireError>.failure(WireError(.internalError, "taken"))
        swap(&taken, &slot)
        return taken
    }

    /// The events of a decoded `append` request, each validated and kept in its canonical form.
    public static func from(_ request: Request) -> Result<AppendBatch, RequestError> {
        guard let events = request["events"]?.arrayValue else {
            return .failure(RequestError(id: request.id, error: WireError(.badRequest, "append needs \"events\": an array of messages")))
        }
        return .success(AppendBatch(id: request.id, events: events.map(ValidatedEvent.decode)))
    }
}
