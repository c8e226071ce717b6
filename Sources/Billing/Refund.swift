public import Wire

/// A credit left unused when its billing period ended: overage the marketplace accepted and a void
/// then took back, which no later overage of the period absorbed. The marketplace has no refund
/// API, so it is listed for the ISV to refund by hand.
public struct Refund: Hashable, Sendable {
    /// The subscription's names when the refund was listed.
    public var resource: ResourceName
    /// The plan in force then.
    public var planId: String
    /// The marketplace dimension the overage was billed on.
    public var dimension: String
    /// The billing period the credit belongs to: `[periodStart, periodEnd)`.
    public var periodStart: Timestamp
    public var periodEnd: Timestamp
    /// How much to refund, in the dimension's unit.
    public var quantity: Quantity
    /// The log time at which it was listed.
    public var at: Timestamp

    /// A refund of `quantity` of `dimension` for `resource`'s period `[periodStart, periodEnd)`.
    public init(
        resource: ResourceName, planId: String, dimension: String, periodStart: Timestamp, periodEnd: Timestamp, quantity: Quantity,
        at: Timestamp
    ) {
        self.resource = resource
        self.planId = planId
        self.dimension = dimension
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.quantity = quantity
        self.at = at
    }

    /// The refund as JSON: names, `planId`, `dimension`, `period` (`start`, `end`), `quantity`, `at`.
    public var json: JSONValue {
        var members = resource.members
        members += [
            JSONObject.Member("planId", .string(planId)), JSONObject.Member("dimension", .string(dimension)),
            JSONObject.Member("period", ["start": .string(periodStart.iso8601), "end": .string(periodEnd.iso8601)]),
            JSONObject.Member("quantity", quantity.json), JSONObject.Member("at", .string(at.iso8601)),
        ]
        return .object(JSONObject(members))
    }

    /// Reads what `json` wrote.
    init(json: JSONValue, path: String) throws(SnapshotError) {
        let object = try SnapshotReader.object(json, path)
        let period = try SnapshotReader.object(try SnapshotReader.member(object, "period", path), "\(path).period")
        self.init(
            resource: try SnapshotReader.resource(object, path), planId: try SnapshotReader.string(object, "planId", path),
            dimension: try SnapshotReader.string(object, "dimension", path),
            periodStart: try SnapshotReader.timestamp(period, "start", "\(path).period"),
            periodEnd: try SnapshotReader.timestamp(period, "end", "\(path).period"),
            quantity: try SnapshotReader.quantity(object, "quantity", path), at: try SnapshotReader.timestamp(object, "at", path))
    }
}
