public import Wire

/// A record that could not be billed (usage of an unknown or deleted subscription, an unknown
/// meter name, ...): counted with its reason so it is visible and never silently dropped, until an
/// operator removes it with `RemoveUnprocessedMessages` (DESIGN.md §4.3). The most recent ones are
/// kept whole as examples (`UnprocessableLedger`).
public struct UnprocessableRecord: Hashable, Sendable {
    /// The record's sequence number in its partition.
    public var sequence: UInt64
    /// The record's enqueued time.
    public var enqueuedTime: Timestamp
    /// Why it could not be billed, in words an operator can act on.
    public var reason: String
    /// Why it could not be billed, as what records are counted by.
    public var kind: UnprocessableLedger.Reason
    /// The subscription name the record gave, as its group lists it (nil when the group is that
    /// of unlisted subscriptions).
    public var subscription: String?
    /// The message as JSON (envelope with `type` and `value`), when it has a JSON form here; cut
    /// down when it is large (see `UnprocessableLedger.maximumEventBytes`).
    public var event: JSONValue?

    /// An unprocessable record at `sequence`, with its reason and event, both cut to their bounds.
    public init(
        sequence: UInt64, enqueuedTime: Timestamp, kind: UnprocessableLedger.Reason, subscription: String?, reason: String,
        event: JSONValue?
    ) {
        self.sequence = sequence
        self.enqueuedTime = enqueuedTime
        self.kind = kind
        self.subscription = subscription
        self.reason = Self.cut(reason, to: UnprocessableLedger.maximumReasonBytes)
        self.event = event.map(Self.bounded)
    }

    /// The record as JSON: `{"sequence", "enqueuedTime", "reason", "kind", "subscription"?, "event"?}`.
    public var json: JSONValue {
        var object = JSONObject([
            "sequence": .number(String(sequence)), "enqueuedTime": .string(enqueuedTime.iso8601), "reason": .string(reason),
            "kind": .string(kind.rawValue),
        ])
        if let subscription { object["subscription"] = .string(subscription) }
        if let event { object["event"] = event }
        return .object(object)
    }

    /// Reads what `json` wrote.
    init(json: JSONValue, path: String) throws(SnapshotError) {
        let object = try SnapshotReader.object(json, path)
        let kindName = try SnapshotReader.string(object, "kind", path)
        guard let kind = UnprocessableLedger.Reason(rawValue: kindName) else {
            throw SnapshotError("\(path).kind: unknown reason \"\(kindName)\"")
        }
        self.init(
            sequence: try SnapshotReader.sequence(object, "sequence", path),
            enqueuedTime: try SnapshotReader.timestamp(object, "enqueuedTime", path), kind: kind,
            subscription: SnapshotReader.optional(object, "subscription")?.stringValue,
            reason: try SnapshotReader.string(object, "reason", path, allowEmpty: true), event: object["event"])
    }

    /// `text` cut to at most `bytes` bytes of UTF-8, on a character boundary, marked with `…`.
    static func cut(_ text: String, to bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var kept = ""
        var used = 0
        for character in text {
            let size = character.utf8.count
            guard used + size <= bytes - 3 else { break }
            kept.append(character)
            used += size
        }
        return kept + "…"
    }

    /// The event, or for a large one its type, id, names, meter and quantity (names cut), marked
    /// `"truncated": true`: an example must not cost what the sender chose to send.
    static func bounded(_ event: JSONValue) -> JSONValue {
        guard JSONWriter.bytes(event).count > UnprocessableLedger.maximumEventBytes else { return event }
        var value = JSONObject()
        for key in ["resourceId", "resourceUri", "meterName"] {
            if let text = event["value"]?[key]?.stringValue { value[key] = .string(cut(text, to: 256)) }
        }
        if let quantity = event["value"]?["quantity"] { value["quantity"] = quantity }
        var envelope = JSONObject(["type": event["type"] ?? .null, "value": .object(value), "truncated": true])
        if let id = event["id"]?.stringValue { envelope["id"] = .string(cut(id, to: 256)) }
        return .object(envelope)
    }
}
