public import Wire

/// Usage ready to report to the marketplace: one `(resource, dimension, hour)` slot, in the
/// marketplace request's shape, plus the log time at which it became ready.
public struct ReadyItem: Hashable, Sendable {
    /// The subscription's names as known when the item became ready (both when both were given).
    public var resource: ResourceName
    /// The plan the usage was metered under.
    public var planId: String
    /// The marketplace dimension.
    public var dimension: String
    /// The hour the usage belongs to: always at a full hour (UTC).
    public var effectiveStartTime: Timestamp
    /// The overage to report: always greater than zero.
    public var quantity: Quantity
    /// The log time (enqueued time of a record) at which the item became ready, for its age.
    public var readySince: Timestamp
    /// What voids took back from the item after it became ready (it may have been sent before):
    /// an outcome holding up to `quantity + withdrawn` turns the difference into a credit.
    public var withdrawn: Quantity

    /// An item for `resource`'s `dimension` in the hour starting at `effectiveStartTime`.
    public init(
        resource: ResourceName, planId: String, dimension: String, effectiveStartTime: Timestamp, quantity: Quantity,
        readySince: Timestamp, withdrawn: Quantity = .zero
    ) {
        self.resource = resource
        self.planId = planId
        self.dimension = dimension
        self.effectiveStartTime = effectiveStartTime
        self.quantity = quantity
        self.readySince = readySince
        self.withdrawn = withdrawn
    }

    /// The item as JSON: the marketplace request members (`resourceId` and/or `resourceUri`,
    /// `planId`, `dimension`, `quantity`, `effectiveStartTime`) plus `readySince`, and `withdrawn`
    /// when a void took some back.
    public var json: JSONValue {
        var members = resource.members
        members.append(JSONObject.Member("planId", .string(planId)))
        members.append(JSONObject.Member("dimension", .string(dimension)))
        members.append(JSONObject.Member("quantity", quantity.json))
        members.append(JSONObject.Member("effectiveStartTime", .string(effectiveStartTime.iso8601)))
        members.append(JSONObject.Member("readySince", .string(readySince.iso8601)))
        if withdrawn > .zero { members.append(JSONObject.Member("withdrawn", withdrawn.json)) }
        return .object(JSONObject(members))
    }

    /// Reads what `json` wrote.
    init(json: JSONValue, path: String) throws(SnapshotError) {
        let object = try SnapshotReader.object(json, path)
        self.init(
            resource: try SnapshotReader.resource(object, path),
            planId: try SnapshotReader.string(object, "planId", path),
            dimension: try SnapshotReader.string(object, "dimension", path),
            effectiveStartTime: try SnapshotReader.timestamp(object, "effectiveStartTime", path),
            quantity: try SnapshotReader.quantity(object, "quantity", path),
            readySince: try SnapshotReader.timestamp(object, "readySince", path),
            withdrawn: try SnapshotReader.optional(object, "withdrawn").map { value throws(SnapshotError) in
                try SnapshotReader.quantity(value, "\(path).withdrawn")
            } ?? .zero)
    }

    /// The order of the pending list: oldest hour first, then by resource and dimension, so the
    /// submitter sends what is closest to the marketplace's 24-hour limit first.
    static func reportingOrder(_ lhs: (item: ReadyItem, resource: String), _ rhs: (item: ReadyItem, resource: String)) -> Bool {
        if lhs.item.effectiveStartTime != rhs.item.effectiveStartTime {
            return lhs.item.effectiveStartTime < rhs.item.effectiveStartTime
        }
        if lhs.resource != rhs.resource { return lhs.resource < rhs.resource }
        return lhs.item.dimension < rhs.item.dimension
    }
}
