public import Wire

/// What folding a record did, for read models that need more than the state itself (usage per hour,
/// the marketplace status of each slot). Recorded only when `PartitionState.effects` is not nil, so
/// the aggregator's fold pays nothing for it.
public enum BillingEffect: Sendable, Equatable {
    /// Usage of meter `meterName` was recorded in the hour starting at `hour` (the hour its
    /// overage goes to), split per marketplace dimension; `previousPeriod`: it counted for the
    /// period before the current one (late usage within the grace); `late`: its own hour had
    /// closed, so it went to the oldest open hour. `period`: the subscription's current billing
    /// period (carried so a read model need not look the subscription up again).
    case usage(
        subscription: String, meterName: String, hour: Timestamp, parts: [UsagePart], previousPeriod: Bool, late: Bool,
        period: BillingPeriod)
    /// Usage of meter `meterName` was voided by a record of the hour `hour`. Per part: `quantity`
    /// is the voided usage on the dimension, `billed` the overage taken back, and `netted` the part
    /// of it that became a credit (the rest left unreported slots).
    case voided(subscription: String, meterName: String, hour: Timestamp, parts: [UsagePart], previousPeriod: Bool)
    /// `quantity` was added to the ready item of a slot (a new item, or merged into a pending one).
    case ready(subscription: String, dimension: String, hour: Timestamp, quantity: Quantity)
    /// A void took `quantity` back from the pending item of a slot.
    case withdrawn(subscription: String, dimension: String, hour: Timestamp, quantity: Quantity)
    /// A pending item was settled by a marketplace outcome. `status` is `Accepted` (also for a
    /// `Duplicate` with the same quantity), `Conflict` (a `Duplicate` with another quantity), `Expired`
    /// (billed again in the open hour), or a rejecting status. `acceptedQuantity` is what the
    /// marketplace holds when that is not `quantity` (a conflict, or a call made before a void).
    case settled(subscription: String, dimension: String, hour: Timestamp, quantity: Quantity, status: String, acceptedQuantity: Quantity?)
    /// Overage the marketplace had accepted became a credit of the current period (or of the
    /// previous one within its grace).
    case credited(subscription: String, dimension: String, quantity: Quantity)
    /// A credit was left unused at the end of the period starting at `periodStart`: listed for refund.
    case refund(subscription: String, dimension: String, quantity: Quantity, periodStart: Timestamp)
    /// A subscription was bought, or bought again after a deletion.
    case purchased(subscription: String)
    /// A subscription's plan changed (by `PlanChanged`, or a purchase with another plan).
    case planChanged(subscription: String, planId: String)
    /// A subscription's billing period renewed.
    case renewed(subscription: String)
    /// A subscription was deleted (it stays until its last items are settled).
    case deleted(subscription: String)
    /// A deleted subscription was forgotten: nothing of it is outstanding.
    case removed(subscription: String)

    /// The key of the subscription the effect concerns.
    public var subscription: String {
        switch self {
        case .usage(let key, _, _, _, _, _, _), .voided(let key, _, _, _, _), .ready(let key, _, _, _), .withdrawn(let key, _, _, _),
            .settled(let key, _, _, _, _, _), .credited(let key, _, _), .refund(let key, _, _, _), .purchased(let key),
            .planChanged(let key, _), .renewed(let key), .deleted(let key), .removed(let key):
            return key
        }
    }
}

/// The part of one usage event that fell on one marketplace dimension: all of it (`quantity`), the
/// overage reported for it (`billed`), and the overage a credit absorbed instead (`netted`). A
/// waterfall meter's free band counts on its first tier's dimension.
public struct UsagePart: Sendable, Equatable {
    public var dimension: String
    public var quantity: Quantity
    public var billed: Quantity
    public var netted: Quantity

    public init(dimension: String, quantity: Quantity, billed: Quantity, netted: Quantity = .zero) {
        self.dimension = dimension
        self.quantity = quantity
        self.billed = billed
        self.netted = netted
    }
}
