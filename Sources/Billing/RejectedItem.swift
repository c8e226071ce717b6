public import Wire

/// An item the marketplace refused for good (`ResourceNotFound`, `InvalidDimension`, ...): out of
/// the pending list so it is not retried forever, kept here so it stays visible (DESIGN.md §4.5).
public struct RejectedItem: Hashable, Sendable {
    /// The item as it was pending.
    public var item: ReadyItem
    /// The marketplace's status, such as `ResourceNotActive`.
    public var status: String
    /// The marketplace's explanation (its error message and details), or the status when it gave none.
    public var reason: String
    /// The log time at which the outcome was recorded.
    public var at: Timestamp

    /// A rejection of `item` with the marketplace's `status` and `reason`, recorded at `at`.
    public init(item: ReadyItem, status: String, reason: String, at: Timestamp) {
        self.item = item
        self.status = status
        self.reason = reason
        self.at = at
    }

    /// The rejection as JSON: `{"item": ..., "status", "reason", "at"}`.
    public var json: JSONValue {
        [
            "item": item.json, "status": .string(status), "reason": .string(reason), "at": .string(at.iso8601),
        ]
    }

    /// Reads what `json` wrote.
    init(json: JSONValue, path: String) throws(SnapshotError) {
        let object = try SnapshotReader.object(json, path)
        self.init(
            item: try ReadyItem(json: try SnapshotReader.member(object, "item", path), path: "\(path).item"),
            status: try SnapshotReader.string(object, "status", path),
            reason: try SnapshotReader.string(object, "reason", path, allowEmpty: true),
            at: try SnapshotReader.timestamp(object, "at", path))
    }
}
