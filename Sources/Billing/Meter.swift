import Wire

/// One meter of a subscription: how an application's meter name maps to marketplace dimensions
/// (DESIGN.md §4.3, §4.4) and what the current billing period (and the one before) consumed.
struct Meter: Equatable, Sendable {
    /// The billing rule of the meter, from the plan.
    enum Rule: Equatable, Sendable {
        /// Usage consumes the included quantity first; the rest is overage of the open hour.
        case sum(dimension: String, included: IncludedQuantity)
        /// The period's maximum or latest report, billed once after the period (`max`, `last`).
        case gauge(dimension: String, included: IncludedQuantity, aggregation: Aggregation)
        /// Usage is billed on the tier whose band the period's running total is in.
        case waterfall(tiers: [Tier])

        /// Whether two rules count usage the same way (a plan change keeps a meter's consumption
        /// only then): summed, the same kind of gauge, or tiers.
        func countsLike(_ other: Rule) -> Bool {
            switch (self, other) {
            case (.sum, .sum), (.waterfall, .waterfall): return true
            case (.gauge(_, _, let lhs), .gauge(_, _, let rhs)): return lhs == rhs
            default: return false
            }
        }

        /// Every marketplace dimension the rule may bill.
        var dimensions: [String] {
            switch self {
            case .sum(let dimension, _), .gauge(let dimension, _, _): return [dimension]
            case .waterfall(let tiers): return tiers.map(\.dimension)
            }
        }
    }

    /// One waterfall tier. Thresholds are band sizes (the reference's semantics): with cumulative
    /// bounds c_k = t_0 + … + t_k, the running total's range [0, c_0) is free, tier k's dimension is
    /// billed for [c_k, c_{k+1}), and the last tier's for everything from c_{n−1} on.
    struct Tier: Hashable, Sendable {
        var dimension: String
        var threshold: Quantity
        /// c_k: where this tier's billed band starts.
        var lowerBound: Quantity
    }

    var name: String
    var rule: Rule
    /// The sequence number of the record from which the meter counts (the purchase, or the plan
    /// change that added it): usage recorded before it was not counted by this meter.
    var since: UInt64 = 0
    /// The current period's usage.
    var usage = MeterUsage()
    /// The period before the current one, kept for late usage within the grace and for voids.
    var previous: MeterUsage? {
        get { previousUsage?.value }
        set { previousUsage = newValue.map(Boxed.init) }
    }
    /// `previous`, boxed: it is set once per renewal and read only by late usage and voids, so
    /// inline it would cost every meter its whole size for the rare times it is consulted.
    private var previousUsage: Boxed<MeterUsage>?

    static func == (lhs: Meter, rhs: Meter) -> Bool {
        lhs.name == rhs.name && lhs.rule == rhs.rule && lhs.since == rhs.since && lhs.usage == rhs.usage
            && lhs.previous == rhs.previous
    }

    init(name: String, rule: Rule, since: UInt64 = 0) {
        self.name = name
        self.rule = rule
        self.since = since
    }

    /// The meter `name` of a plan, with nothing consumed, counting from record `since`.
    init(name: String, dimension: BillingDimension, since: UInt64) {
        switch dimension {
        case .simple(let dimension, let included, let aggregation):
            let rule: Rule =
                aggregation == .sum
                ? .sum(dimension: dimension, included: included)
                : .gauge(dimension: dimension, included: included, aggregation: aggregation)
            self.init(name: name, rule: rule, since: since)
        case .waterfall(let tiers):
            self.init(name: name, rule: .waterfall(tiers: Self.tiers(tiers.map { ($0.dimension, $0.threshold) })), since: since)
        }
    }

    /// Sum and waterfall meters: the usage recorded in the current period.
    var consumed: Quantity {
        get { usage.consumed }
        set { usage.consumed = newValue }
    }

    /// Gauge meters: the period's maximum or latest report; nil until the period's first report.
    var gaugeValue: Quantity? {
        get { usage.gaugeValue }
        set { usage.gaugeValue = newValue }
    }

    /// Tiers with their cumulative lower bounds.
    static func tiers(_ thresholds: [(dimension: String, threshold: Quantity)]) -> [Tier] {
        var bound = Quantity.zero
        return thresholds.map { tier in
            bound = bound.saturatingAdding(tier.threshold)
            return Tier(dimension: tier.dimension, threshold: tier.threshold, lowerBound: bound)
        }
    }

    // MARK: - Charging usage

    /// The overage `quantity` more usage makes, per dimension, given `consumed` so far: for a sum
    /// meter the part of [consumed, consumed + quantity) above the included quantity, for tiers
    /// each tier's share of it. Nil when the running total would leave `Quantity`'s range.
    func overage(of quantity: Quantity, after consumed: Quantity) -> (total: Quantity, pieces: [DimensionQuantity])? {
        guard let total = consumed.adding(quantity) else { return nil }
        switch rule {
        case .sum(let dimension, let included):
            guard case .finite(let included) = included else { return (total, []) }
            let overage = total - max(included, consumed)
            return (total, overage > .zero ? [DimensionQuantity(dimension: dimension, quantity: overage)] : [])
        case .gauge:
            return (consumed, [])
        case .waterfall(let tiers):
            var pieces: [DimensionQuantity] = []
            for index in tiers.indices {
                if let piece = Self.piece(ofTier: index, in: tiers, from: consumed, to: total) {
                    pieces.append(DimensionQuantity(dimension: tiers[index].dimension, quantity: piece))
                }
            }
            return (total, pieces)
        }
    }

    /// The part of consumption going from `consumed` to `total` that falls in tier `index`'s band
    /// (from its lower bound to the next tier's), or nil when none does.
    static func piece(ofTier index: Int, in tiers: [Tier], from consumed: Quantity, to total: Quantity) -> Quantity? {
        let from = max(consumed, tiers[index].lowerBound)
        let to = index + 1 < tiers.count ? min(total, tiers[index + 1].lowerBound) : total
        return to > from ? to - from : nil
    }

    /// The overage per dimension that a period's consumption `consumed` calls for under the rule
    /// (for a void: what the meter still owes once the voided quantity is taken out).
    func owed(at consumed: Quantity) -> [DimensionQuantity] {
        overage(of: consumed, after: .zero)?.pieces ?? []
    }

    /// How one usage event falls on dimensions for read models: all of it per dimension, the
    /// overage reported, and the overage a credit absorbed. A waterfall meter's free band counts
    /// on its first tier's dimension, unbilled.
    func parts(of quantity: Quantity, after consumed: Quantity, overage: [DimensionQuantity], netted: [DimensionQuantity]) -> [UsagePart] {
        var parts: [UsagePart] = []
        appendParts(of: quantity, after: consumed, overage: overage, netted: netted, to: &parts)
        return parts
    }

    /// `parts(of:after:overage:netted:)`, appended to `parts`: a fold fills a list it reuses, with
    /// no list made per event (`overage` may be a `CollectionOfOne`, which allocates nothing).
    func appendParts(
        of quantity: Quantity, after consumed: Quantity, overage: some Collection<DimensionQuantity>, netted: [DimensionQuantity],
        to parts: inout [UsagePart]
    ) {
        func part(_ dimension: String, _ used: Quantity) -> UsagePart {
            let gross = overage.quantity(of: dimension)
            let absorbed = netted.quantity(of: dimension)
            return UsagePart(dimension: dimension, quantity: used, billed: gross - absorbed, netted: absorbed)
        }
        switch rule {
        case .sum(let dimension, _), .gauge(let dimension, _, _):
            parts.append(part(dimension, quantity))
        case .waterfall(let tiers):
            // The free band counts on the first tier's dimension: added to that dimension's part
            // (the first, should there be several), or a part of its own ahead of the others.
            var free = Quantity.zero
            if let first = tiers.first {
                let total = consumed.saturatingAdding(quantity)
                free = max(.zero, min(total, first.lowerBound) - consumed)
                if free > .zero && !overage.contains(where: { $0.dimension == first.dimension }) {
                    parts.append(UsagePart(dimension: first.dimension, quantity: free, billed: .zero, netted: .zero))
                    free = .zero
                }
            }
            for piece in overage {
                var split = part(piece.dimension, piece.quantity)
                if free > .zero && piece.dimension == tiers.first?.dimension {
                    split.quantity = split.quantity.saturatingAdding(free)
                    free = .zero
                }
                parts.append(split)
            }
        }
    }

    /// A gauge report: the period's value becomes the maximum or the latest report.
    mutating func report(gauge quantity: Quantity) {
        guard case .gauge(_, _, let aggregation) = rule else { return }
        gaugeValue = aggregation == .max ? max(gaugeValue ?? quantity, quantity) : quantity
    }

    /// A gauge meter's overage for the usage `usage` (value − included), nil when there is none.
    func gaugeOverage(of usage: MeterUsage) -> DimensionQuantity? {
        guard case .gauge(let dimension, let included, _) = rule, let value = usage.gaugeValue,
            case .finite(let included) = included, value > included
        else { return nil }
        return DimensionQuantity(dimension: dimension, quantity: value - included)
    }

    /// The gauge overage of the current period so far.
    var gaugeOverage: DimensionQuantity? { gaugeOverage(of: usage) }

    /// Whether the meter is a gauge (`max`, `last`).
    var isGauge: Bool {
        if case .gauge = rule { return true }
        return false
    }

    /// Starts a new period: the ended one becomes `previous` when it is the period just before
    /// (`adjacent`), and consumption resets so the included quantity is whole again.
    mutating func renew(adjacent: Bool) {
        previous = adjacent ? usage : MeterUsage()
        usage = MeterUsage()
    }
}

/// What a meter used in one billing period.
struct MeterUsage: Equatable, Sendable {
    /// Sum and waterfall meters: the usage recorded in the period, voided usage taken out.
    var consumed: Quantity = .zero
    /// Gauge meters: the period's maximum or latest report; nil until the period's first report.
    var gaugeValue: Quantity?
    /// The overage this usage made, per dimension, before credits absorbed any: what the meter has
    /// billed for the period. A void takes back only what this exceeds the consumption left.
    var billed: [DimensionQuantity] = []
    /// Usage voided in the period.
    var voided: Quantity = .zero
}

/// A quantity of one marketplace dimension.
struct DimensionQuantity: Equatable, Sendable {
    var dimension: String
    var quantity: Quantity
}

extension Collection<DimensionQuantity> {
    /// The quantity of `dimension` (zero when absent).
    func quantity(of dimension: String) -> Quantity {
        for entry in self where entry.dimension == dimension { return entry.quantity }
        return .zero
    }
}

extension [DimensionQuantity] {
    /// Adds `quantity` to `dimension`'s entry (appended when new); saturates, as these are totals
    /// bounded by quantities that fit (consumption, credits of billed overage).
    mutating func add(_ dimension: String, _ quantity: Quantity) {
        guard quantity > .zero else { return }
        if let index = firstIndex(where: { $0.dimension == dimension }) {
            self[index].quantity = self[index].quantity.saturatingAdding(quantity)
        } else {
            append(DimensionQuantity(dimension: dimension, quantity: quantity))
        }
    }

    /// Takes up to `quantity` from `dimension`'s entry (removed when it reaches zero); returns what
    /// was taken.
    @discardableResult
    mutating func take(_ dimension: String, upTo quantity: Quantity) -> Quantity {
        guard quantity > .zero, let index = firstIndex(where: { $0.dimension == dimension }) else { return .zero }
        let taken = Swift.min(self[index].quantity, quantity)
        self[index].quantity = self[index].quantity - taken
        if self[index].quantity == .zero { remove(at: index) }
        return taken
    }
}

/// The overage a subscription accumulates in one open hour, per marketplace dimension. It becomes
/// ready-to-report items when the hour closes.
struct OpenHour: Equatable, Sendable {
    /// The hour the overage will be reported for.
    var start: Timestamp
    /// Positive quantities, one per dimension, in the order they first appeared.
    var overage: [DimensionQuantity] = []

    init(start: Timestamp) { self.start = start }

    /// Whether `quantity` more of `dimension` fits in `Quantity`'s range.
    func fits(_ dimension: String, _ quantity: Quantity) -> Bool {
        overage.quantity(of: dimension).adding(quantity) != nil
    }

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
