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
    /// Per subscription key: what the read model keeps of it (settled slots, marketplace totals,
    /// breakdown, series, prices, open usage), one entry holding all of it.
    var subscriptionViews = DenseTable<String, SubscriptionView>()
    /// The keys of the subscriptions with open usage, for closing hours without visiting the others.
    var openKeys: [String] = []
    /// Settled slots in the order they settled (log time never goes back), for forgetting them.
    var settledOrder: [(at: Timestamp, key: String, slot: Slot)] = []
    var settledHead = 0
    /// How many entries of open usage the last hour's close took (sizes the next one's list; not
    /// kept in snapshots).
    var lastClosedCount = 0
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

        /// A table read back from a snapshot: `groups` in their order, each with its quantity.
        init(periodStart: Timestamp, truncated: Bool, groups: [BreakdownGroup], quantities: [Quantity]) {
            self.periodStart = periodStart
            self.truncated = truncated
            self.groups = groups
            self.quantities = quantities
        }

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
    public var nextSequence: UInt64 { state.nextSequence }

    /// Folds `record`, adding what it produced to `output`.
    public mutating func apply(_ record: BillingRecord, into output: inout Output) {
        let before = state.time
        state.apply(record)
        guard let now = state.time else { return }
        if let before, now.hourStart > before.hourStart {
            if !openKeys.isEmpty { closeHours(before: now, into: &output) }
            forgetSettled(before: now.adding(microseconds: -Self.slotRetentionMicroseconds))
        }
        // Taken out and given back emptied, so the fold appends the next record's effects into the
        // same storage: emptying it while this copy still held it made new storage every record.
        var effects = state.effects.take() ?? []
        // Emptied by taking each effect out, first to last (moved: iterating copied each effect's
        // names and parts, released again when the array was emptied, 5% of this fold's samples).
        effects.reverse()
        defer {
            // Empty already, unless the loop below is ever left early: no effect is handed on twice.
            effects.removeAll(keepingCapacity: true)
            state.effects = effects
        }
        // What a marketplace outcome settled, for its line of the ledger.
        var settled: (quantity: Quantity, status: String, accepted: Quantity?)?
        // An hour's items come one subscription after another: what `count` looked up for the
        // last one serves its next items. Forgotten when an entry is removed (positions move).
        var counted: Counted?
        while let effect = effects.popLast() {
            if output.collectsTouched { output.touched.insert(effect.subscription) }
            switch consume effect {
            case .usage(let key, let meterName, let hour, let parts, let previousPeriod, _, let period):
                recordUsage(
                    key: key, meterName: meterName, hour: hour, parts: parts, previousPeriod: previousPeriod, period: period,
                    record: record)
                state.recycle(parts)
            case .voided(let key, let meterName, let hour, let parts, let previousPeriod):
                recordVoid(key: key, meterName: meterName, hour: hour, parts: parts, previousPeriod: previousPeriod, record: record)
            case .withdrawn(let key, let dimension, let hour, let quantity):
                count(key, dimension: dimension, hour: hour, last: &counted) { $0.pending = $0.pending.figureSubtracting(quantity) }
            case .credited(let key, let dimension, let quantity):
                ledgerLine(key: key, status: "Credited", dimension: dimension, quantity: quantity, record: record, into: &output)
            case .refund(let key, let dimension, let quantity, let periodStart):
                ledgerLine(
                    key: key, status: "Refund", dimension: dimension, quantity: quantity, periodStart: periodStart, record: record,
                    into: &output)
            case .planChanged(let key, _):
                counted = nil
                setPrices(Self.plan(of: record)?.prices, key: key)
            case .ready(let key, let dimension, let hour, let quantity):
                count(key, dimension: dimension, hour: hour, last: &counted) { $0.pending = $0.pending.figureAdding(quantity) }
            case .settled(let key, let dimension, let hour, let quantity, let status, let acceptedQuantity):
                settled = (quantity, status, acceptedQuantity)
                let slot = Slot(dimension: dimension, hour: hour)
                let outcome = Self.marketplaceStatus(status)
                count(key, dimension: dimension, hour: hour, last: &counted) { totals in
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
                subscriptionViews[key, default: SubscriptionView()].ledger[slot] = SlotStatus(status: outcome, settledAt: now)
                settledOrder.append((now, key, slot))
            case .renewed(let key):
                counted = nil
                forgetPeriodViews(of: key)
            case .purchased(let key):
                counted = nil
                forgetPeriodViews(of: key)
                setPrices(Self.plan(of: record)?.prices, key: key)
            case .deleted:
                break
            case .removed(let key):
                counted = nil
                // Its open usage stays until its hours close: the usage records still come.
                if let index = subscriptionViews.index(forKey: key) {
                    let open = subscriptionViews.values[index].open
                    if open.isEmpty {
                        subscriptionViews.remove(at: index)
                    } else {
                        subscriptionViews.values[index] = SubscriptionView(open: open)
                    }
                }
            }
        }
        // A plan change to the plan in force (billing sees no change) may still bring new display
        // prices: a catalog plan redefined with other prices, changed to again.
        if case .planChanged(let change) = record.message.body, let key = state.key(for: change.resource),
            let terms = state.termsInPlace(ofKey: key), !terms.deleted, terms.planId == change.plan.planId
        {
            setPrices(change.plan.prices, key: key)
        }
        if case .usageSubmittedToAPI(let outcome) = record.message.body {
            let reason = outcome.status == "Accepted" ? nil : PartitionState.reason(outcome.value, status: outcome.status)
            output.submissions.append(
                SubmissionRecord(
                    partition: partition, ordinal: submissionOrdinal, sequence: record.sequence, recordedAt: record.enqueuedTime,
                    outcome: outcome, settled: settled?.status, quantity: settled?.quantity, acceptedQuantity: settled?.accepted,
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

    /// `period`: the subscription's current period, as the effect carries it: the subscription's
    /// names and plan are looked up in the billing state only for a new hour's first usage of a
    /// dimension (every lookup of a random one of many subscriptions is a trip to memory).
    private mutating func recordUsage(
        key: String, meterName: String, hour: Timestamp, parts: [UsagePart], previousPeriod: Bool, period: BillingPeriod,
        record: BillingRecord
    ) {
        // The series and the breakdown are views of the current period.
        var properties: [String: String] = [:]
        var reported = Quantity.zero
        if !previousPeriod, case .usageReported(let usage) = record.message.body {
            properties = usage.properties
            reported = usage.quantity
        }
        var seriesQuantity = Quantity.zero
        // A waterfall meter splits one usage over its tiers; a gauge report is one part.
        for part in parts { seriesQuantity = seriesQuantity.figureAdding(part.quantity) }
        let step = UsageSeries.index(of: hour, in: period)
        // One lookup reaches all of the subscription's figures, changed in place.
        let (opened, seriesRecorded) = Self.recordUsage(
            in: &subscriptionViews[key, hint: record.nameHint, default: SubscriptionView()], key: key, hint: record.nameHint,
            state: &state, period: period, meterName: meterName,
            hour: hour, parts: parts, series: previousPeriod ? nil : (seriesQuantity, step), properties: properties, reported: reported)
        if opened { openKeys.append(key) }
        guard !previousPeriod, !seriesRecorded else { return }
        // The meter's first usage of the period: its kind is looked up in the billing state.
        let kind = state.meterKind(ofKey: key, meterName: meterName, hint: record.nameHint) ?? .sum
        Self.record(
            seriesQuantity, meterName: meterName, kind: kind, step: step,
            in: &subscriptionViews[key, hint: record.nameHint, default: SubscriptionView()].series,
            period: period)
    }

    /// `recordUsage`'s changes to the subscription's entry: the open usage of the hour per
    /// dimension, and (`series` given: usage of the current period) the series when the meter is in
    /// it already and the breakdown of `properties`. Returns whether the subscription's first open
    /// usage was added, and whether the series was changed. `state` (the subscription `key`'s
    /// names and plan) is read only for a new entry of open usage.
    private static func recordUsage(
        in view: inout SubscriptionView, key: String, hint: Int?, state: inout PartitionState, period: BillingPeriod, meterName: String,
        hour: Timestamp, parts: [UsagePart], series: (quantity: Quantity, step: Int)?, properties: [String: String], reported: Quantity
    ) -> (opened: Bool, seriesRecorded: Bool) {
        var opened = false
        for part in parts {
            let first = view.addUsage(
                meterName: meterName, dimension: part.dimension, hour: hour,
                terms: {
                    let terms = state.termsInPlace(ofKey: key, hint: hint)
                    return (terms?.resource ?? ResourceName(), terms?.planId ?? "")
                }, UsageChange(quantity: part.quantity, billed: part.billed, netted: part.netted))
            opened = opened || first
        }
        guard let series else { return (opened, false) }
        let recorded =
            view.series?.recordIfKnown(series.quantity, meterName: meterName, periodStart: period.start, step: series.step) ?? false
        if !properties.isEmpty {
            update(&view.breakdown, period: period, meterName: meterName, properties: properties, creating: true) { total in
                total.figureAdding(reported)
            }
        }
        return (opened, recorded)
    }

    /// A void: usage taken out in the hour of the void record, and out of the breakdown of the
    /// current period. The series keeps usage as it was recorded (a day's figure is not changed
    /// after the day): `voided` in the run-rate says how much of it was taken out since.
    private mutating func recordVoid(
        key: String, meterName: String, hour: Timestamp, parts: [UsagePart], previousPeriod: Bool, record: BillingRecord
    ) {
        guard let terms = state.termsInPlace(ofKey: key) else { return }
        var opened = false
        for part in parts {
            let first = subscriptionViews[key, default: SubscriptionView()].addUsage(
                meterName: meterName, dimension: part.dimension, hour: hour,
                terms: { (terms.resource, terms.planId) },
                UsageChange(voided: part.quantity, reversed: part.billed))
            opened = opened || first
        }
        if opened { openKeys.append(key) }
        guard !previousPeriod, case .usageVoided(let void) = record.message.body, let usage = void.voided?.usage,
            !usage.properties.isEmpty
        else { return }
        Self.update(
            &subscriptionViews[key, default: SubscriptionView()].breakdown, period: terms.period, meterName: meterName,
            properties: usage.properties,
            creating: false
        ) { total in
            total.figureSubtracting(usage.quantity)
        }
    }

    /// Drops the breakdown and series of the subscription's period (a new period, or a new purchase).
    private mutating func forgetPeriodViews(of key: String) {
        guard let index = subscriptionViews.index(forKey: key) else { return }
        changeView(at: index) {
            $0.breakdown = nil
            $0.series = nil
        }
    }

    /// Changes the entry at `index` in place, then removes it when it keeps nothing. In place:
    /// reading an entry through the table's values, even only `isEmpty`, copied it whole and
    /// retained all it holds (as closing hours did for every subscription, 0.95% of the read
    /// model fold's samples, before `takeClosed` answered it).
    private mutating func changeView(at index: Int, _ body: (inout SubscriptionView) -> Void) {
        func change(_ view: inout SubscriptionView) -> Bool {
            body(&view)
            return view.isEmpty
        }
        if change(&subscriptionViews.values[index]) { subscriptionViews.remove(at: index) }
    }

    /// Sets the display prices of the subscription's plan in force (nil: it has none).
    private mutating func setPrices(_ prices: DisplayPrices?, key: String) {
        if let prices {
            subscriptionViews[key, default: SubscriptionView()].prices = prices
        } else if let index = subscriptionViews.index(forKey: key) {
            changeView(at: index) { $0.prices = nil }
        }
    }

    /// A line of the marketplace ledger that no outcome made: a credit (overage the marketplace
    /// holds that a void took back) or a refund (a credit left when its period ended).
    private mutating func ledgerLine(
        key: String, status: String, dimension: String, quantity: Quantity, periodStart: Timestamp? = nil, record: BillingRecord,
        into output: inout Output
    ) {
        guard let terms = state.termsInPlace(ofKey: key) else { return }
        output.submissions.append(
            SubmissionRecord(
                partition: partition, ordinal: submissionOrdinal, sequence: record.sequence, recordedAt: record.enqueuedTime,
                resource: terms.resource, planId: terms.planId, dimension: dimension, quantity: quantity, status: status,
                periodStart: periodStart))
        submissionOrdinal += 1
    }

    /// Changes the period's breakdown groups of the usage's properties (a breakdown of another
    /// period starts again; groups are only changed, not added, when not `creating`).
    private static func update(
        _ breakdown: inout Breakdown?, period: BillingPeriod, meterName: String, properties: [String: String], creating: Bool,
        _ change: (Quantity) -> Quantity
    ) {
        if breakdown == nil || breakdown?.periodStart != period.start { breakdown = Breakdown(periodStart: period.start) }
        for (property, value) in properties {
            let group = BreakdownGroup(meterName: meterName, property: property, value: value)
            let (found, index) = breakdown!.position(of: group)
            if found {
                breakdown!.change(at: index, change)
            } else if !creating {
                continue
            } else if breakdown!.count < Self.maximumBreakdownGroups {
                breakdown!.insert(group, change(.zero), at: index)
            } else {
                breakdown!.truncated = true
            }
        }
    }

    private static func record(
        _ quantity: Quantity, meterName: String, kind: MeterRunRate.Kind, step: Int, in usage: inout UsageSeries?, period: BillingPeriod
    ) {
        if usage == nil || usage?.periodStart != period.start { usage = UsageSeries(periodStart: period.start) }
        let index = usage!.meterIndex(named: meterName) ?? usage!.addMeter(meterName, kind: kind)
        usage!.record(quantity, meter: index, step: step)
    }

    /// Turns the usage of every hour that ended before `now` into records, in a fixed order: hour,
    /// subscription, meter, dimension.
    private mutating func closeHours(before now: Timestamp, into output: inout Output) {
        // Visited in key order, each subscription's few entries sorted among themselves: sorting
        // the whole of an hour's usage (every subscription's) moved large entries many times over.
        openKeys.sort()
        // Sized as the last close was: grown by doubling from empty, an hour of a large partition
        // was copied over a dozen times into freshly mapped memory (2.15% of the fold's samples).
        var closed: [KeyedUsage] = []
        closed.reserveCapacity(max(lastClosedCount, openKeys.count))
        var stillOpen: [String] = []
        var firstHour: Timestamp?
        var severalHours = false
        // Every subscription with usage in the hour, each in no cache: read ahead, as records are.
        let hashes = openKeys.map { DenseTable<String, SubscriptionView>.hash($0) }
        let readsAhead = state.readsAhead
        for (position, key) in openKeys.enumerated() {
            if readsAhead {
                for (element, step) in PartitionState.stepsAhead(before: position, of: hashes.count) {
                    prefetchView(hash: hashes[element], step: step)
                }
            }
            guard let index = subscriptionViews.index(forKey: key, hash: hashes[position]) else { continue }
            let first = closed.count
            switch subscriptionViews.values[index].takeClosed(key: key, before: now, into: &closed) {
            case .open: stillOpen.append(key)
            case .closed: break
            // A removed subscription, kept for its open usage.
            case .empty: subscriptionViews.remove(at: index)
            }
            if closed.count - first > 1 { closed[first...].sort { Self.order($0, $1) } }
            for position in first..<closed.count where closed[position].usage.hour != firstHour {
                if firstHour == nil { firstHour = closed[position].usage.hour } else { severalHours = true }
            }
        }
        openKeys = stillOpen
        lastClosedCount = closed.count
        guard !closed.isEmpty else { return }
        // Several hours closing at once (a quiet partition, a clock moved on): hour first.
        if severalHours {
            closed = closed.indices.sorted { (closed[$0].usage.hour, $0) < (closed[$1].usage.hour, $1) }.map { closed[$0] }
        }
        output.usage.reserveCapacity(output.usage.count + closed.count)
        // Each entry moved out in turn (first to last), not copied and released again.
        closed.reverse()
        while let entry = closed.popLast() {
            let key = entry.key
            let usage = entry.usage
            let total = usage.total
            var record = UsageRecord(
                partition: partition, ordinal: usageOrdinal, subscription: key, resource: total.resource, planId: total.planId,
                meterName: usage.meterName, dimension: usage.dimension, hour: usage.hour, quantity: total.quantity, billed: total.billed)
            record.netted = total.netted
            record.voided = total.voided
            record.reversed = total.reversed
            output.usage.append(record)
            usageOrdinal += 1
        }
    }

    /// The order usage records of closing hours are numbered in: hour, subscription, meter, dimension.
    static func order(_ lhs: KeyedUsage, _ rhs: KeyedUsage) -> Bool {
        (lhs.usage.hour, lhs.key, lhs.usage.meterName, lhs.usage.dimension)
            < (rhs.usage.hour, rhs.key, rhs.usage.meterName, rhs.usage.dimension)
    }

    /// What `count` found for a subscription: its current period (nil: none) and its entry's
    /// position once it was reached.
    struct Counted {
        var key: String
        var hash: Int
        var period: BillingPeriod?
        var position: Int?
    }

    /// Adds to the current period's totals of the subscription's `dimension`, when `hour` is in
    /// it. `last`: what the previous call found, reused when it was for the same subscription.
    private mutating func count(
        _ key: String, dimension: String, hour: Timestamp, last: inout Counted?, _ change: (inout DimensionTotals) -> Void
    ) {
        if last?.key != key {
            // Both tables hash keys alike: one hash for the two lookups.
            let hash = DenseTable<String, SubscriptionView>.hash(key)
            last = Counted(key: key, hash: hash, period: state.periodInPlace(ofKey: key, hint: hash))
        }
        guard let period = last?.period, period.contains(hour) else { return }
        let position = last?.position ?? subscriptionViews.position(of: key, hint: last?.hash) { SubscriptionView() }
        last?.position = position
        Self.update(&subscriptionViews.values[position].market, period: period, dimension: dimension, change)
    }

    private static func update(
        _ totals: inout MarketTotals?, period: BillingPeriod, dimension: String, _ change: (inout DimensionTotals) -> Void
    ) {
        if totals == nil || totals?.periodStart != period.start { totals = MarketTotals(periodStart: period.start) }
        totals!.update(dimension, change)
    }

    /// Forgets the slots settled before `horizon`.
    mutating func forgetSettled(before horizon: Timestamp) {
        while settledHead < settledOrder.count, settledOrder[settledHead].at < horizon {
            let (_, key, slot) = settledOrder[settledHead]
            settledHead += 1
            guard let index = subscriptionViews.index(forKey: key) else { continue }
            // Settled again since (a later outcome of the slot): kept for its own time.
            changeView(at: index) { view in
                if let entry = view.ledger[slot], entry.settledAt < horizon { view.ledger[slot] = nil }
            }
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
