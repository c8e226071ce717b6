import Wire

/// One meter of a subscription: how an application's meter name maps to marketplace dimensions
/// (DESIGN.md §4.3, §4.4) and what the current billing period has consumed.
struct Meter: Equatable, Sendable {
    /// The billing rule of the meter, from the plan.
    enum Rule: Equatable, Sendable {
        /// Usage consumes the included quantity first; the rest is overage of the open hour.
        case sum(dimension: String, included: IncludedQuantity)
        /// The period's maximum or latest report, billed once after the period (`max`, `last`).
        case gauge(dimension: String, included: IncludedQuantity, aggregation: Aggregation)
        /// Usage is billed on the tier whose band the period's running total is in.
        case waterfall(tiers: [Tier])
    }

    /// One waterfall tier. Thresholds are band sizes (the reference's semantics): with cumulative
    /// bounds c_k = t_0 + … + t_k, the running total's range [0, c_0) is free, tier k's dimension is
    /// billed for [c_k, c_{k+1}), and the last tier's for everything from c_{n−1} on.
    struct Tier: Equatable, Sendable {
        var dimension: String
        var threshold: Quantity
        /// c_k: where this tier's billed band starts.
        var lowerBound: Quantity
    }

    var name: String
    var rule: Rule
    /// Sum and waterfall meters: the usage recorded in the current period.
    var consumed: Quantity = .zero
    /// Gauge meters: the period's maximum or latest report; nil until the period's first report.
    var gaugeValue: Quantity?

    init(name: String, rule: Rule) {
        self.name = name
        self.rule = rule
    }

    /// The meter `name` of a plan, with nothing consumed.
    init(name: String, dimension: BillingDimension) {
        switch dimension {
        case .simple(let dimension, let included, let aggregation):
            let rule: Rule =
                aggregation == .sum
                ? .sum(dimension: dimension, included: included)
                : .gauge(dimension: dimension, included: included, aggregation: aggregation)
            self.init(name: name, rule: rule)
        case .waterfall(let tiers):
            self.init(name: name, rule: .waterfall(tiers: Self.tiers(tiers.map { ($0.dimension, $0.threshold) })))
        }
    }

    /// Tiers with their cumulative lower bounds.
    static func tiers(_ thresholds: [(dimension: String, threshold: Quantity)]) -> [Tier] {
        var bound = Quantity.zero
        return thresholds.map { tier in
            bound = bound.saturatingAdding(tier.threshold)
            return Tier(dimension: tier.dimension, threshold: tier.threshold, lowerBound: bound)
        }
    }

    /// Records `quantity` of usage and adds its overage to `hour`. Returns false, changing nothing,
    /// when a total would leave `Quantity`'s range.
    /// When `parts` is not nil, the event's split per dimension is appended to it.
    mutating func record(_ quantity: Quantity, into hour: inout OpenHour, parts: inout [UsagePart]?) -> Bool {
        switch rule {
        case .sum(let dimension, let included):
            guard let total = consumed.adding(quantity) else { return false }
            var billed = Quantity.zero
            if case .finite(let included) = included {
                // Overage is the part of [consumed, total) above the included quantity.
                let overage = total - max(included, consumed)
                if overage > .zero {
                    guard hour.add(dimension, overage) else { return false }
                    billed = overage
                }
            }
            consumed = total
            parts?.append(UsagePart(dimension: dimension, quantity: quantity, billed: billed))
            return true
        case .gauge(let dimension, _, let aggregation):
            gaugeValue = aggregation == .max ? max(gaugeValue ?? quantity, quantity) : quantity
            parts?.append(UsagePart(dimension: dimension, quantity: quantity, billed: .zero))
            return true
        case .waterfall(let tiers):
            guard let total = consumed.adding(quantity) else { return false }
            var updated = hour
            var split: [UsagePart] = []
            for (index, tier) in tiers.enumerated() {
                let from = max(consumed, tier.lowerBound)
                let to = index + 1 < tiers.count ? min(total, tiers[index + 1].lowerBound) : total
                if to > from {
                    guard updated.add(tier.dimension, to - from) else { return false }
                    if parts != nil { split.append(UsagePart(dimension: tier.dimension, quantity: to - from, billed: to - from)) }
                }
            }
            if parts != nil, let first = tiers.first {
                // The free band [0, c_0) counts on the first tier's dimension, unbilled.
                let free = max(.zero, min(total, first.lowerBound) - consumed)
                if free > .zero {
                    if let index = split.firstIndex(where: { $0.dimension == first.dimension }) {
                        split[index].quantity = split[index].quantity.saturatingAdding(free)
                    } else {
                        split.insert(UsagePart(dimension: first.dimension, quantity: free, billed: .zero), at: 0)
                    }
                }
                parts?.append(contentsOf: split)
            }
            hour = updated
            consumed = total
            return true
        }
    }

    /// A gauge meter's overage for the period so far (value − included), nil when there is none.
    var gaugeOverage: DimensionQuantity? {
        guard case .gauge(let dimension, let included, _) = rule, let value = gaugeValue,
            case .finite(let included) = included, value > included
        else { return nil }
        return DimensionQuantity(dimension: dimension, quantity: value - included)
    }

    /// Starts a new period: consumption resets, so the included quantity is whole again.
    mutating func renew() {
        consumed = .zero
        gaugeValue = nil
    }
}

/// A quantity of one marketplace dimension.
struct DimensionQuantity: Equatable, Sendable {
    var dimension: String
    var quantity: Quantity
}

/// The overage a subscription accumulates in its open hour, per marketplace dimension. It becomes
/// ready-to-report items when the hour closes.
struct OpenHour: Equatable, Sendable {
    /// The hour the overage will be reported for.
    var start: Timestamp
    /// Positive quantities, one per dimension, in the order they first appeared.
    var overage: [DimensionQuantity] = []

    init(start: Timestamp) { self.start = start }

    /// Adds `quantity` to `dimension`. Returns false, changing nothing, on overflow.
    mutating func add(_ dimension: String, _ quantity: Quantity) -> Bool {
        if let index = overage.firstIndex(where: { $0.dimension == dimension }) {
            guard let sum = overage[index].quantity.adding(quantity) else { return false }
            overage[index].quantity = sum
        } else {
            overage.append(DimensionQuantity(dimension: dimension, quantity: quantity))
        }
        return true
    }
}
