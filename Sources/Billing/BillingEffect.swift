public import Wire

/// What folding a record did, for read models that need more than the state itself (usage per hour,
/// the marketplace status of each slot). Recorded only when `PartitionState.effects` is not nil, so
/// the aggregator's fold pays nothing for it.
public enum BillingEffect: Sendable, Equatable {
    /// Usage of meter `meterName` was recorded in the hour starting at `hour` (the hour its
    /// overage goes to), split per marketplace dimension.
    case usage(subscription: String, meterName: String, hour: Timestamp, parts: [UsagePart])
    /// `quantity` was added to the ready item of a slot (a new item, or merged into a pending one).
    case ready(subscription: String, dimension: String, hour: Timestamp, quantity: Quantity)
    /// A pending item was settled by a marketplace outcome. `status` is `Accepted` (also for a
    /// `Duplicate` with the same quantity), `Conflict` (a `Duplicate` with another quantity, given
    /// as `acceptedQuantity`), `Expired` (billed again in the open hour), or a rejecting status.
    case settled(subscription: String, dimension: String, hour: Timestamp, quantity: Quantity, status: String, acceptedQuantity: Quantity?)
    /// A subscription was bought, or bought again with other terms.
    case purchased(subscription: String)
    /// A subscription's billing period renewed.
    case renewed(subscription: String)
    /// A subscription was deleted (it stays until its last items are settled).
    case deleted(subscription: String)
    /// A deleted subscription was forgotten: nothing of it is outstanding.
    case removed(subscription: String)

    /// The key of the subscription the effect concerns.
    public var subscription: String {
        switch self {
        case .usage(let key, _, _, _), .ready(let key, _, _, _), .settled(let key, _, _, _, _, _), .purchased(let key),
            .renewed(let key), .deleted(let key), .removed(let key):
            return key
        }
    }
}

/// The part of one usage event that fell on one marketplace dimension: all of it (`quantity`) and
/// the overage among it (`billed`). A waterfall meter's free band counts on its first tier's dimension.
public struct UsagePart: Sendable, Equatable {
    public var dimension: String
    public var quantity: Quantity
    public var billed: Quantity

    public init(dimension: String, quantity: Quantity, billed: Quantity) {
        self.dimension = dimension
        self.quantity = quantity
        self.billed = billed
    }
}
