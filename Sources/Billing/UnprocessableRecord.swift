public import Wire

/// A record that could not be billed (usage of an unknown or deleted subscription, an unknown
/// meter name, ...): kept with its reason so it is visible and never silently dropped, until an
/// operator removes it with `RemoveUnprocessedMessages` (DESIGN.md §4.3).
public struct UnprocessableRecord: Hashable, Sendable {
    /// The record's sequence number in its partition.
    public var sequence: UInt64
    /// The record's enqueued time.
    public var enqueuedTime: Timestamp
    /// Why it could not be billed, in words an operator can act on.
    public var reason: String
    /// The message as JSON (envelope with `type` and `value`), when it has a JSON form here.
    public var event: JSONValue?

    /// An unprocessable record at `sequence`, with its `reason` and `event`.
    public init(sequence: UInt64, enqueuedTime: Timestamp, reason: String, event: JSONValue?) {
        self.sequence = sequence
        self.enqueuedTime = enqueuedTime
        self.reason = reason
        self.event = event
    }

    /// The record as JSON: `{"sequence", "enqueuedTime", "reason", "event"?}`.
    public var json: JSONValue {
        var object = JSONObject([
            "sequence": .number(String(sequence)), "enqueuedTime": .string(enqueuedTime.iso8601), "reason": .string(reason),
        ])
        if let event { object["event"] = event }
        return .object(object)
    }

    /// Reads what `json` wrote.
    init(json: JSONValue, path: String) throws(SnapshotError) {
        let object = try SnapshotReader.object(json, path)
        self.init(
            sequence: try SnapshotReader.sequence(object, "sequence", path),
            enqueuedTime: try SnapshotReader.timestamp(object, "enqueuedTime", path),
            reason: try SnapshotReader.string(object, "reason", path, allowEmpty: true),
            event: object["event"])
    }
}
