public import Wire

/// What a customer's run-rate page shows for one subscription (DESIGN.md §3.4), computed from the
/// partition state alone, so the aggregator and the query service give the same numbers.
public struct RunRate: Sendable, Equatable {
    /// The subscription's key in its partition.
    public var key: String
    public var resource: ResourceName
    public var planId: String
    public var period: BillingPeriod
    /// The partition clock the numbers are valid at.
    public var asOf: Timestamp
    public var deleted: Bool
    public var meters: [MeterRunRate]
    /// The plans in force during the current period, oldest first (one unless the plan changed).
    public var plans: [PlanInForce]
}

/// A plan of a subscription and when it took effect (its purchase, the period's start, or a change).
public struct PlanInForce: Sendable, Equatable {
    public var planId: String
    public var from: Timestamp
}

/// One meter of a `RunRate`.
public struct MeterRunRate: Sendable, Equatable {
    /// How the meter bills: a summed dimension, a gauge (`max`, `last`), or waterfall tiers.
    public enum Kind: String, Sendable {
        case sum, max, last, waterfall
    }

    /// One waterfall tier: its band of the period's running total and how much of it is used.
    public struct Tier: Sendable, Equatable {
        public var dimension: String
        public var threshold: Quantity
        /// Where the tier's billed band starts in the running total (the free band ends at the first).
        public var from: Quantity
        /// Usage of the period inside this tier's band.
        public var consumed: Quantity
    }

    public var meterName: String
    public var kind: Kind
    /// The marketplace dimension being consumed now (for a waterfall meter, the current tier's, or
    /// the first tier's while the free band lasts).
    public var dimension: String
    /// Every marketplace dimension this meter may bill.
    public var dimensions: [String]
    /// The included quantity (a waterfall meter's free band).
    public var included: IncludedQuantity
    /// Usage in the current period (a gauge: its value so far, 0 before the first report).
    public var consumed: Quantity
    /// What is left of the included quantity (never negative; infinite when included is).
    public var remaining: IncludedQuantity
    /// Overage of the current period so far (a gauge: what it would report if the period ended now).
    public var overage: Quantity
    /// Overage in the still-open hours, not yet ready to report.
    public var openHourOverage: Quantity
    /// The period's total usage if it goes on at the rate seen so far (a gauge: its value).
    public var projected: Quantity
    /// Waterfall meters: each tier's usage.
    public var tiers: [Tier]
    /// Usage voided in the current period (already taken out of `consumed`).
    public var voided: Quantity = .zero
    /// Credit on the meter's dimensions not yet netted against overage: overage the marketplace
    /// accepted before a void took it back.
    public var credit: Quantity = .zero
    /// The figures (`openHourOverage`, `projected`) that went past the largest quantity and show
    /// it instead: "this much or more". Empty almost always; the billed totals themselves never
    /// saturate (usage that would overflow them is refused as unprocessable).
    public var saturated: [String] = []
}

extension PartitionState {
    /// The run-rate of the subscription named by `name`, or nil when this partition has none.
    public func runRate(_ name: ResourceName) -> RunRate? {
        guard let index = index(for: name) else { return nil }
        let key = subscriptions.keys[index]
        let subscription = subscriptions.values[index]
        let asOf = time ?? subscription.period.start
        let open = subscription.openHours.filter { subscription.period.contains($0.start) || $0.start >= subscription.period.end }
        let meters = subscription.meters.map { meter in
            var rate = meter.runRate(openHours: open, period: subscription.period, asOf: asOf)
            rate.credit = Quantity.saturatingSum(meter.rule.dimensions.map { subscription.credits.quantity(of: $0) }).total
            return rate
        }
        return RunRate(
            key: key, resource: subscription.resource, planId: subscription.planId, period: subscription.period, asOf: asOf,
            deleted: subscription.deleted, meters: meters,
            plans: subscription.plans.map { PlanInForce(planId: $0.planId, from: $0.from) })
    }

    /// The keys of the subscriptions held, in order.
    public var subscriptionKeys: [String] { subscriptions.keys.sorted() }
}

extension Meter {
    func runRate(openHours: [OpenHour], period: BillingPeriod, asOf: Timestamp) -> MeterRunRate {
        var rate = figures()
        rate.voided = usage.voided
        if rate.kind == .sum || rate.kind == .waterfall {
            // What the meter billed this period: the rule's overage for the consumption, unless a
            // plan change or a void made them differ.
            rate.overage = Quantity.saturatingSum(usage.billed.map(\.quantity)).total
        }
        // Each dimension's open-hour overage is in range, but several dimensions (tiers, meters
        // sharing a dimension, re-billed items) and hours may add up beyond it.
        let open = openHours.flatMap(\.overage).filter { rate.dimensions.contains($0.dimension) }.map(\.quantity)
        let (openTotal, openSaturated) = Quantity.saturatingSum(open)
        rate.openHourOverage = openTotal
        if openSaturated { rate.saturated.append("openHourOverage") }
        if rate.kind == .sum || rate.kind == .waterfall {
            let (projected, projectedSaturated) = Self.project(consumed, period: period, asOf: asOf)
            rate.projected = projected
            if projectedSaturated { rate.saturated.append("projected") }
        }
        return rate
    }

    /// The figures that follow from the meter alone.
    private func figures() -> MeterRunRate {
        switch rule {
        case .sum(let dimension, let included):
            let (remaining, overage) = Self.split(consumed, included)
            return MeterRunRate(
                meterName: name, kind: .sum, dimension: dimension, dimensions: [dimension], included: included, consumed: consumed,
                remaining: remaining, overage: overage, openHourOverage: .zero, projected: consumed, tiers: [])
        case .gauge(let dimension, let included, let aggregation):
            let value = gaugeValue ?? .zero
            let (remaining, overage) = Self.split(value, included)
            return MeterRunRate(
                meterName: name, kind: aggregation == .max ? .max : .last, dimension: dimension, dimensions: [dimension],
                included: included,
                consumed: value, remaining: remaining, overage: overage, openHourOverage: .zero, projected: value,
                tiers: [])
        case .waterfall(let tiers):
            let free = tiers.first?.lowerBound ?? .zero
            let (remaining, overage) = Self.split(consumed, .finite(free))
            var usage: [MeterRunRate.Tier] = []
            var current = tiers.first?.dimension ?? ""
            for (index, tier) in tiers.enumerated() {
                let upper = index + 1 < tiers.count ? min(consumed, tiers[index + 1].lowerBound) : consumed
                let used = max(.zero, upper - tier.lowerBound)
                if consumed > tier.lowerBound { current = tier.dimension }
                usage.append(MeterRunRate.Tier(dimension: tier.dimension, threshold: tier.threshold, from: tier.lowerBound, consumed: used))
            }
            let dimensions = tiers.map(\.dimension)
            return MeterRunRate(
                meterName: name, kind: .waterfall, dimension: current, dimensions: dimensions, included: .finite(free), consumed: consumed,
                remaining: remaining, overage: overage, openHourOverage: .zero, projected: consumed, tiers: usage)
        }
    }

    /// What is left of `included` after `used`, and the overage beyond it.
    static func split(_ used: Quantity, _ included: IncludedQuantity) -> (remaining: IncludedQuantity, overage: Quantity) {
        guard case .finite(let included) = included else { return (.infinite, .zero) }
        return (.finite(max(.zero, included - used)), max(.zero, used - included))
    }

    /// `consumed` scaled from the elapsed part of the period to all of it, to the micro-unit, and
    /// whether it went past the largest quantity (then it is the largest). Less than an hour in,
    /// the rate is taken over a whole hour, so a first burst is not multiplied into an absurd
    /// figure. The product is taken on 256 bits: a valid usage must never make this trap.
    static func project(_ consumed: Quantity, period: BillingPeriod, asOf: Timestamp) -> (Quantity, saturated: Bool) {
        let length = Int128((period.end.microseconds - period.start.microseconds) / 1_000_000)
        let elapsed = max(Int128(3600), Int128((asOf.microseconds - period.start.microseconds) / 1_000_000))
        guard elapsed < length else { return (consumed, false) }
        guard let projected = consumed.scaled(by: length, dividedBy: elapsed) else { return (.largest, true) }
        let micro = Quantity.unitsPerOne / 1_000_000
        return (Quantity(units: projected.units / micro * micro), false)
    }
}

extension PartitionState {
    /// The names, plan, current period and deletion of the subscription with key `key`, without
    /// copying it.
    public func terms(ofKey key: String) -> (resource: ResourceName, planId: String, period: BillingPeriod, deleted: Bool)? {
        guard let index = subscriptions.index(forKey: key) else { return nil }
        // One copy of the subscription, not one per member read (each retains all its storage).
        let subscription = subscriptions.values[index]
        return (subscription.resource, subscription.planId, subscription.period, subscription.deleted)
    }

    /// `terms(ofKey:)` read in place: copying the subscription out of its table (which the
    /// non-mutating form does) retains and releases all its storage, for a read model folding a
    /// record into it once per usage event. `hint`: a hash the key probably has (a record's
    /// `nameHash`), tried first so that the key need not be hashed; a wrong one costs a probe.
    public mutating func termsInPlace(
        ofKey key: String, hint: Int? = nil
    ) -> (resource: ResourceName, planId: String, period: BillingPeriod, deleted: Bool)? {
        guard let index = subscriptions.index(forKey: key, hint: hint) else { return nil }
        return inPlace(index) { ($0.resource, $0.planId, $0.period, $0.deleted) }
    }

    /// The current period of the subscription with key `key`, read in place (nothing retained);
    /// `hint` as for `termsInPlace(ofKey:hint:)`.
    public mutating func periodInPlace(ofKey key: String, hint: Int? = nil) -> BillingPeriod? {
        guard let index = subscriptions.index(forKey: key, hint: hint) else { return nil }
        return inPlace(index) { $0.period }
    }

    /// The key of the subscription named by `name`, if this partition has it.
    public func key(named name: ResourceName) -> String? { key(for: name) }
}
