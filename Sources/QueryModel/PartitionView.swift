public import Billing
import Wire

/// The query service's read model of one partition: the billing state (the same fold as the
/// aggregator's, so the same numbers) plus what only the read side keeps: the marketplace status of
/// every recent slot, the usage of the still-open hours per meter and dimension, and each meter's
/// usage of the period per property value and per day.
///
/// Pure: `apply` returns the usage records of the hours that closed and the marketplace outcomes
/// the record carried, numbered per partition (`ordinal`), so that the caller can journal them and,
/// after a restart from an older snapshot, skip the ones already journaled.
public struct PartitionView: Sendable {
    public internal(set) var state: PartitionState
    /// Settled marketplace slots per subscription key, for a while. Pending slots are not kept
    /// here: the billing state holds every pending item, and a second copy of each would cost the
    /// read model more than anything else it keeps while many items wait for the submitter.
    var ledger: [String: [Slot: SlotStatus]] = [:]
    /// Settled slots in the order they settled (log time never goes back), for forgetting them.
    var settledOrder: [(at: Timestamp, key: String, slot: Slot)] = []
    var settledHead = 0
    /// Per subscription key: the current period's items by marketplace status and dimension,
    /// kept as running totals so a run-rate never scans the period's slots.
    var market: [String: MarketTotals] = [:]
    /// Usage of hours not closed yet.
    var openUsage: [UsageKey: UsageTotal] = [:]
    /// Per subscription key: the period's usage per meter, property key and value.
    var breakdowns: [String: Breakdown] = [:]
    /// Per subscription key: the period's usage per meter and day (or month), for charts.
    var series: [String: UsageSeries] = [:]
    /// Per subscription key: the display prices of the plan in force (docs/BILLING.md, "The plan
    /// catalog"), for the run-rate's money; only subscriptions whose plan has prices.
    var prices: [String: DisplayPrices] = [:]
    /// Usage records produced so far; the next one gets this ordinal.
    public internal(set) var usageOrdinal: UInt64 = 0
    /// Submission records produced so far; the next one gets this ordinal.
    public internal(set) var submissionOrdinal: UInt64 = 0

    /// Slots settled longer ago than this (log time) are forgotten; the submissions journal keeps
    /// their outcomes. Memory then follows the traffic of two days, not the whole history.
    public static let slotRetentionMicroseconds: Int64 = 2 * Timestamp.microsecondsPerDay
    /// Per subscription, at most this many (meter, property, value) groups are told apart, so a
    /// sender cannot grow the model without bound; usage of groups beyond them is shown as
    /// unattributed (and the breakdown as truncated), never lost from the meter's totals.
    public static let maximumBreakdownGroups = 256

    struct Slot: Hashable, Sendable {
        var dimension: String
        var hour: Timestamp
    }

    /// Where an item of a slot stands at the marketplace.
    public enum MarketplaceStatus: String, Sendable {
        case pending, accepted, rejected, conflict, expired
    }

    /// How a slot was settled at the marketplace, and since when (for forgetting it).
    struct SlotStatus: Equatable, Sendable {
        var status: MarketplaceStatus
        var settledAt: Timestamp
    }

    /// One dimension's items of the current period, by where they stand at the marketplace.
    struct DimensionTotals: Equatable, Sendable {
        var dimension: String
        var pending = Quantity.zero
        var accepted = Quantity.zero
        var rejected = Quantity.zero
        var expired = Quantity.zero
        var conflicts = 0
    }

    struct MarketTotals: Equatable, Sendable {
        var periodStart: Timestamp
        var dimensions: [DimensionTotals] = []

        /// Changes the totals of `dimension` (added when new).
        mutating func update(_ dimension: String, _ change: (inout DimensionTotals) -> Void) {
            if let index = dimensions.firstIndex(where: { $0.dimension == dimension }) {
                change(&dimensions[index])
            } else {
                var totals = DimensionTotals(dimension: dimension)
                change(&totals)
                dimensions.append(totals)
            }
        }
    }

    struct UsageKey: Hashable, Sendable {
        var subscription: String
        var meterName: String
        var dimension: String
        var hour: Timestamp
    }

    struct UsageTotal: Equatable, Sendable {
        var resource: ResourceName
        var planId: String
        var quantity: Quantity
        var billed: Quantity
        /// Overage a credit absorbed instead of being reported.
        var netted = Quantity.zero
        /// Usage voided by voids recorded in the hour, and the overage they took back.
        var voided = Quantity.zero
        var reversed = Quantity.zero
    }

    struct BreakdownGroup: Hashable, Sendable {
        var meterName: String
        var property: String
        var value: String
    }

    /// One flat table per subscription, as two arrays in group order (meter, property, value)
    /// grown one entry at a time: nested dictionaries per meter and property would cost more than
    /// the figures they hold, and even one hash table per subscription kept a third of its room
    /// empty and grew by doubling — with every subscription holding a breakdown, that was the read
    /// model's largest part after the billing state. A group is found by binary search.
    struct Breakdown: Equatable, Sendable {
        var periodStart: Timestamp
        private(set) var groups: [BreakdownGroup] = []
        private(set) var quantities: [Quantity] = []
        var truncated = false

        init(periodStart: Timestamp) { self.periodStart = periodStart }

        var count: Int { groups.count }

        /// The index of `group`, or where it would be inserted.
        func position(of group: BreakdownGroup) -> (found: Bool, index: Int) {
            var low = 0
            var high = groups.count
            while low < high {
                let middle = (low + high) / 2
                if Self.precedes(groups[middle], group) { low = middle + 1 } else { high = middle }
            }
            return (low < groups.count && groups[low] == group, low)
        }

        static func precedes(_ lhs: BreakdownGroup, _ rhs: BreakdownGroup) -> Bool {
            (lhs.meterName, lhs.property, lhs.value) < (rhs.meterName, rhs.property, rhs.value)
        }

        /// Changes the quantity of the group at `index`.
        mutating func change(at index: Int, _ change: (Quantity) -> Quantity) { quantities[index] = change(quantities[index]) }

        /// Adds `group` with `quantity` at `index` (from `position(of:)`).
        mutating func insert(_ group: BreakdownGroup, _ quantity: Quantity, at index: Int) {
            // Room for exactly one more: doubling would leave up to half of it empty, for good.
            groups.reserveCapacity(groups.count + 1)
            quantities.reserveCapacity(quantities.count + 1)
            groups.insert(group, at: index)
            quantities.insert(quantity, at: index)
        }

        /// Heap bytes the table's arrays hold (without the allocator's rounding, and without the
        /// view's dictionary entry for it), for measuring the read model's memory.
        var heapBytes: Int {
            let header = 32
            return (groups.capacity > 0 ? header + groups.capacity * MemoryLayout<BreakdownGroup>.stride : 0)
                + (quantities.capacity > 0 ? header + quantities.capacity * MemoryLayout<Quantity>.stride : 0)
        }

        /// Sets the quantity of `group`, adding it when new.
        mutating func set(_ group: BreakdownGroup, _ quantity: Quantity) {
            let (found, index) = position(of: group)
            if found { quantities[index] = quantity } else { insert(group, quantity, at: index) }
        }
    }

    /// What one record produced.
    public struct Output: Sendable {
        public var usage: [UsageRecord] = []
        public var submissions: [SubmissionRecord] = []
        /// Keys of the subscriptions whose run-rate may have changed, when collected.
        public var touched: Set<String> = []
        /// Whether to collect `touched`: it costs a hash per effect, wasted with nobody watching.
        public let collectsTouched: Bool
        public init(collectingTouched: Bool = true) { collectsTouched = collectingTouched }
    }

    /// An empty view of `partition`.
    public init(partition: Int) {
        state = PartitionState(partition: partition)
        state.effects = []
    }

    public var partition: Int { state.partition }

    /// The sequence number of the next record the view needs.
    public var nextSequence: UInt64 { state.lastSequence.map { $0 + 1 } ?? 0 }

    /// Folds `record`, adding what it produced to `output`.
    public mutating func apply(_ record: BillingRecord, into output: inout Output) {
        let before = state.time
        state.apply(record)
        guard let now = state.time else { return }
        if let before, now.hourStart > before.hourStart {
            if !openUsage.isEmpty { closeHours(before: now, into: &output) }
            forgetSettled(before: now.adding(microseconds: -Self.slotRetentionMicroseconds))
        }
        let effects = state.effects ?? []
        state.effects?.removeAll(keepingCapacity: true)
        var settled: BillingEffect?
        for effect in effects {
            if output.collectsTouched { output.touched.insert(effect.subscription) }
            switch effect {
            case .usage(let key, let meterName, let hour, let parts, let previousPeriod, _):
                recordUsage(key: key, meterName: meterName, hour: hour, parts: parts, previousPeriod: previousPeriod, record: record)
            case .voided(let key, let meterName, let hour, let parts, let previousPeriod):
                recordVoid(key: key, meterName: meterName, hour: hour, parts: parts, previousPeriod: previousPeriod, record: record)
            case .withdrawn(let key, let dimension, let hour, let quantity):
                count(key, dimension: dimension, hour: hour) { $0.pending = $0.pending.figureSubtracting(quantity) }
            case .credited(let key, let dimension, let quantity):
                ledgerLine(key: key, status: "Credited", dimension: dimension, quantity: quantity, record: record, into: &output)
            case .refund(let key, let dimension, let quantity, let periodStart):
                ledgerLine(
                    key: key, status: "Refund", dimension: dimension, quantity: quantity, periodStart: periodStart, record: record,
                    into: &output)
            case .planChanged(let key, _):
                prices[key] = Self.plan(of: record)?.prices
            case .ready(let key, let dimension, let hour, let quantity):
                count(key, dimension: dimension, hour: hour) { $0.pending = $0.pending.figureAdding(quantity) }
            case .settled(let key, let dimension, let hour, let quantity, let status, let acceptedQuantity):
                settled = effect
                let slot = Slot(dimension: dimension, hour: hour)
                let outcome = Self.marketplaceStatus(status)
                count(key, dimension: dimension, hour: hour) { totals in
                    totals.pending = totals.pending.figureSubtracting(quantity)
                    switch outcome {
                    case .accepted: totals.accepted = totals.accepted.figureAdding(acceptedQuantity ?? quantity)
                    case .conflict:
                        totals.conflicts += 1
                        totals.accepted = totals.accepted.figureAdding(acceptedQuantity ?? .zero)
                    case .rejected: totals.rejected = totals.rejected.figureAdding(quantity)
                    case .expired: totals.expired = totals.expired.figureAdding(quantity)
                    case .pending: break
                    }
                }
                ledger[key, default: [:]][slot] = SlotStatus(status: outcome, settledAt: now)
                settledOrder.append((now, key, slot))
            case .renewed(let key), .purchased(let key):
                breakdowns[key] = nil
                series[key] = nil
                if case .purchased = effect { prices[key] = Self.plan(of: record)?.prices }
            case .deleted:
                break
            case .removed(let key):
                ledger[key] = nil
                breakdowns[key] = nil
                market[key] = nil
                series[key] = nil
                prices[key] = nil
            }
        }
        // A plan change to the plan in force (billing sees no change) may still bring new display
        // prices: a catalog plan redefined with other prices, changed to again.
        if case .planChanged(let change) = record.message.body, let key = state.key(for: change.resource),
            let terms = state.terms(ofKey: key), !terms.deleted, terms.planId == change.plan.planId
        {
            prices[key] = change.plan.prices
        }
        if case .usageSubmittedToAPI(let outcome) = record.message.body {
            var quantity: Quantity?
            var status: String?
            var acceptedQuantity: Quantity?
            if case .settled(_, _, _, let itemQuantity, let settledAs, let accepted)? = settled {
                quantity = itemQuantity
                status = settledAs
                acceptedQuantity = accepted
            }
            let reason = outcome.status == "Accepted" ? nil : PartitionState.reason(outcome.value, status: outcome.status)
            output.submissions.append(
                SubmissionRecord(
                    partition: partition, ordinal: submissionOrdinal, sequence: record.sequence, recordedAt: record.enqueuedTime,
                    outcome: outcome, settled: status, quantity: quantity, acceptedQuantity: acceptedQuantity,
                    reason: reason == outcome.status ? nil : reason))
            submissionOrdinal += 1
        }
    }

    /// The plan a purchase or plan change puts in force.
    static func plan(of record: BillingRecord) -> Plan? {
        switch record.message.body {
        case .subscriptionPurchased(let purchase): return purchase.plan
        case .planChanged(let change): return change.plan
        default: return nil
        }
    }

    static func marketplaceStatus(_ settled: String) -> MarketplaceStatus {
        switch settled {
        case "Accepted": return .accepted
        case "Conflict": return .conflict
        case "Expired": return .expired
        default: return .rejected
        }
    }

    private mutating func recordUsage(
        key: String, meterName: String, hour: Timestamp, parts: [UsagePart], previousPeriod: Bool, record: BillingRecord
    ) {
        guard let terms = state.terms(ofKey: key) else { return }
        for part in parts {
            addUsage(key: key, terms: terms, meterName: meterName, dimension: part.dimension, hour: hour) { total in
                total.quantity = total.quantity.figureAdding(part.quantity)
                total.billed = total.billed.figureAdding(part.billed)
                total.netted = total.netted.figureAdding(part.netted)
            }
        }
        // The series and the breakdown are views of the current period.
        guard !previousPeriod else { return }
        recordSeries(key: key, meterName: meterName, parts: parts, period: terms.period, hour: hour)
        guard case .usageReported(let usage) = record.message.body, !usage.properties.isEmpty else { return }
        updateBreakdown(key: key, period: terms.period, meterName: meterName, properties: usage.properties) { total in
            total.figureAdding(usage.quantity)
        }
    }

    /// A void: usage taken out in the hour of the void record, and out of the breakdown of the
    /// current period. The series keeps usage as it was recorded (a day's figure is not changed
    /// after the day): `voided` in the run-rate says how much of it was taken out since.
    private mutating func recordVoid(
        key: String, meterName: String, hour: Timestamp, parts: [UsagePart], previousPeriod: Bool, record: BillingRecord
    ) {
        guard let terms = state.terms(ofKey: key) else { return }
        for part in parts {
            addUsage(key: key, terms: terms, meterName: meterName, dimension: part.dimension, hour: hour) { total in
                total.voided = total.voided.figureAdding(part.quantity)
                total.reversed = total.reversed.figureAdding(part.billed)
            }
        }
        guard !previousPeriod, case .usageVoided(let void) = record.message.body, let usage = void.voided?.usage,
            !usage.properties.isEmpty
        else { return }
        updateBreakdown(key: key, period: terms.period, meterName: meterName, properties: usage.properties, creating: false) { total in
            total.figureSubtracting(usage.quantity)
        }
    }

    /// Changes the open usage of `(key, meterName, dimension, hour)`, made when new.
    private mutating func addUsage(
        key: String, terms: (resource: ResourceName, planId: String, period: BillingPeriod, deleted: Bool), meterName: String,
        dimension: String, hour: Timestamp, _ change: (inout UsageTotal) -> Void
    ) {
        let usageKey = UsageKey(subscription: key, meterName: meterName, dimension: dimension, hour: hour)
        if let index = openUsage.index(forKey: usageKey) {
            change(&openUsage.values[index])
        } else {
            var total = UsageTotal(resource: terms.resource, planId: terms.planId, quantity: .zero, billed: .zero)
            change(&total)
            openUsage[usageKey] = total
        }
    }

    /// A line of the marketplace ledger that no outcome made: a credit (overage the marketplace
    /// holds that a void took back) or a refund (a credit left when its period ended).
    private mutating func ledgerLine(
        key: String, status: String, dimension: String, quantity: Quantity, periodStart: Timestamp? = nil, record: BillingRecord,
        into output: inout Output
    ) {
        guard let terms = state.terms(ofKey: key) else { return }
        output.submissions.append(
            SubmissionRecord(
                partition: partition, ordinal: submissionOrdinal, sequence: record.sequence, recordedAt: record.enqueuedTime,
                resource: terms.resource, planId: terms.planId, dimension: dimension, quantity: quantity, status: status,
                periodStart: periodStart))
        submissionOrdinal += 1
    }

    /// Changes the period's breakdown groups of the usage's properties.
    private mutating func updateBreakdown(
        key: String, period: BillingPeriod, meterName: String, properties: [String: String], creating: Bool = true,
        _ change: (Quantity) -> Quantity
    ) {
        // Changed in place: taking the entry out and putting it back hashed the key twice and
        // moved entries of the table each time.
        Self.update(
            &breakdowns[key, default: Breakdown(periodStart: period.start)], period: period, meterName: meterName, properties: properties,
            creating: creating, change)
    }

    private static func update(
        _ breakdown: inout Breakdown, period: BillingPeriod, meterName: String, properties: [String: String], creating: Bool,
        _ change: (Quantity) -> Quantity
    ) {
        if breakdown.periodStart != period.start { breakdown = Breakdown(periodStart: period.start) }
        for (property, value) in properties {
            let group = BreakdownGroup(meterName: meterName, property: property, value: value)
            let (found, index) = breakdown.position(of: group)
            if found {
                breakdown.change(at: index, change)
            } else if !creating {
                continue
            } else if breakdown.count < Self.maximumBreakdownGroups {
                breakdown.insert(group, change(.zero), at: index)
            } else {
                breakdown.truncated = true
            }
        }
    }

    /// Adds the usage to the subscription's series, in the step of the period its hour falls in.
    private mutating func recordSeries(
        key: String, meterName: String, parts: [UsagePart], period: BillingPeriod, hour: Timestamp
    ) {
        // A waterfall meter splits one usage over its tiers; a gauge report is one part.
        var quantity = Quantity.zero
        for part in parts { quantity = quantity.figureAdding(part.quantity) }
        let step = UsageSeries.index(of: hour, in: period)
        // Changed in place (no taking out and putting back); the meter's kind is looked up in
        // the billing state only the first time the meter has usage in the period.
        if let index = series.index(forKey: key),
            series.values[index].recordIfKnown(quantity, meterName: meterName, periodStart: period.start, step: step)
        {
            return
        }
        let kind = state.meterKind(ofKey: key, meterName: meterName) ?? .sum
        Self.record(
            quantity, meterName: meterName, kind: kind, step: step, in: &series[key, default: UsageSeries(periodStart: period.start)],
            period: period)
    }

    private static func record(
        _ quantity: Quantity, meterName: String, kind: MeterRunRate.Kind, step: Int, in usage: inout UsageSeries, period: BillingPeriod
    ) {
        if usage.periodStart != period.start { usage = UsageSeries(periodStart: period.start) }
        let index = usage.meterIndex(named: meterName) ?? usage.addMeter(meterName, kind: kind)
        usage.record(quantity, meter: index, step: step)
    }

    /// Turns the usage of every hour that ended before `now` into records, in a fixed order.
    private mutating func closeHours(before now: Timestamp, into output: inout Output) {
        let closed = openUsage.filter { $0.key.hour.adding(microseconds: Timestamp.microsecondsPerHour) <= now }
        guard !closed.isEmpty else { return }
        for (key, total) in closed.sorted(by: { Self.order($0.key, $1.key) }) {
            openUsage[key] = nil
            var record = UsageRecord(
                partition: partition, ordinal: usageOrdinal, subscription: key.subscription, resource: total.resource,
                planId: total.planId, meterName: key.meterName, dimension: key.dimension, hour: key.hour, quantity: total.quantity,
                billed: total.billed)
            record.netted = total.netted
            record.voided = total.voided
            record.reversed = total.reversed
            output.usage.append(record)
            usageOrdinal += 1
        }
        // Every open hour closed: the table an hour's usage grew to is given back while no usage
        // is open, and grows again with the next hour's.
        if openUsage.isEmpty { openUsage = [:] }
    }

    static func order(_ lhs: UsageKey, _ rhs: UsageKey) -> Bool {
        (lhs.hour, lhs.subscription, lhs.meterName, lhs.dimension) < (rhs.hour, rhs.subscription, rhs.meterName, rhs.dimension)
    }

    /// Adds to the current period's totals of the subscription's `dimension`, when `hour` is in it.
    private mutating func count(_ key: String, dimension: String, hour: Timestamp, _ change: (inout DimensionTotals) -> Void) {
        guard let period = state.terms(ofKey: key)?.period, period.contains(hour) else { return }
        Self.update(&market[key, default: MarketTotals(periodStart: period.start)], period: period, dimension: dimension, change)
    }

    private static func update(
        _ totals: inout MarketTotals, period: BillingPeriod, dimension: String, _ change: (inout DimensionTotals) -> Void
    ) {
        if totals.periodStart != period.start { totals = MarketTotals(periodStart: period.start) }
        totals.update(dimension, change)
    }

    /// Forgets the slots settled before `horizon`.
    mutating func forgetSettled(before horizon: Timestamp) {
        while settledHead < settledOrder.count, settledOrder[settledHead].at < horizon {
            let (_, key, slot) = settledOrder[settledHead]
            settledHead += 1
            guard let entry = ledger[key]?[slot], entry.settledAt < horizon else { continue }
            ledger[key]?[slot] = nil
            if ledger[key]?.isEmpty == true { ledger[key] = nil }
        }
        if settledHead > 1024 && settledHead * 2 > settledOrder.count {
            settledOrder.removeFirst(settledHead)
            settledHead = 0
        }
    }
}

extension Quantity {
    // The read model's totals (marketplace figures, hourly usage, breakdowns) are shown, never
    // billed, so they saturate instead of refusing the record that the fold accepted. A total at
    // `Quantity.largest` stays there: it is no longer exact, and answers name it as saturated.

    /// Whether this total reached the largest quantity and so is no longer exact.
    var isSaturated: Bool { self == .largest }

    /// The total plus `other`, saturating; a saturated total stays saturated.
    func figureAdding(_ other: Quantity) -> Quantity {
        isSaturated ? self : saturatingAdding(other)
    }

    /// The total less `other`, never below zero; a saturated total stays saturated (how much of
    /// it was beyond the range is not known).
    func figureSubtracting(_ other: Quantity) -> Quantity {
        isSaturated ? self : max(.zero, subtracting(other) ?? .zero)
    }
}
