public import Wire

/// An item whose slot the marketplace had already accepted with a different quantity (`Duplicate`
/// with another `acceptedMessage.quantity`): settled, since the marketplace never changes a slot,
/// and recorded with both quantities because it means something else reported that slot.
public struct Conflict: Hashable, Sendable {
    /// The item as this state computed it.
    public var item: ReadyItem
    /// The quantity the marketplace holds for the slot.
    public var acceptedQuantity: Quantity
    /// The log time at which the outcome was recorded.
    public var at: Timestamp

    /// A conflict between `item` and the marketplace's `acceptedQuantity`, recorded at `at`.
    public init(item: ReadyItem, acceptedQuantity: Quantity, at: Timestamp) {
        self.item = item
        self.acceptedQuantity = acceptedQuantity
        self.at = at
    }

    /// The conflict as JSON: `{"item": ..., "acceptedQuantity", "at"}`.
    public var json: JSONValue {
        ["item": item.json, "acceptedQuantity": acceptedQuantity.json, "at": .string(at.iso8601)]
    }

    /// Reads what `json` wrote.
    init(json: JSONValue, path: String) throws(SnapshotError) {
        let object = try SnapshotReader.object(json, path)
        self.init(
            item: try ReadyItem(json: try SnapshotReader.member(object, "item", path), path: "\(path).item"),
            acceptedQuantity: try SnapshotReader.quantity(object, "acceptedQuantity", path),
            at: try SnapshotReader.timestamp(object, "at", path))
    }
}
