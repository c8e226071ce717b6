import Wire

/// One subscription of a partition: its terms (plan, renewal interval, original start), the
/// current billing period with each meter's consumption, its credits, and the open hours' overage.
struct Subscription: Equatable, Sendable {
    static func == (lhs: Subscription, rhs: Subscription) -> Bool {
        lhs.resource == rhs.resource && lhs.planId == rhs.planId && lhs.interval == rhs.interval
            && lhs.subscriptionStart == rhs.subscriptionStart && lhs.period == rhs.period && lhs.meters == rhs.meters
            && lhs.openHours == rhs.openHours
            && lhs.deleted == rhs.deleted && lhs.since == rhs.since && lhs.plans == rhs.plans && lhs.rare?.value == rhs.rare?.value
    }

    /// The names it answers to. The first name it was bought under is its key in the partition.
    var resource: ResourceName {
        get { namesAndPlan.value.resource }
        set { namesAndPlan = Boxed(NamesAndPlan(resource: newValue, planId: planId)) }
    }
    var planId: String {
        get { namesAndPlan.value.planId }
        set { namesAndPlan = Boxed(NamesAndPlan(resource: resource, planId: newValue)) }
    }
    /// `resource` and `planId`, boxed: the pending items made ready from the subscription keep this
    /// box (its names and plan as they were then) instead of a copy each, and a write replaces it.
    private(set) var namesAndPlan: Boxed<NamesAndPlan>

    /// A subscription's names and plan, as its pending items carry them.
    struct NamesAndPlan: Equatable, Sendable {
        var resource: ResourceName
        var planId: String
    }
    var interval: RenewalInterval
    var subscriptionStart: Timestamp
    var period: BillingPeriod
    var meters: [Meter]
    /// The meters' names, in their order: for finding a meter without reading every meter (each in
    /// its own cache line), and shared by the subscriptions whose meters have the same names
    /// (`PartitionState.shareWithSamePlan`), so that it stays in the caches. Derived: set wherever
    /// `meters` changes which meters it holds, left out of `==` and of snapshots; a lookup checks
    /// the name it finds against the meter (`meterIndex(named:)`).
    var meterNames: [String]
    /// Hours with overage not reported yet, oldest first. Under enqueued-time attribution at most
    /// the current one; under event-time attribution every hour still within its grace.
    var openHours: [OpenHour] = []
    /// Deleted subscriptions take no usage; they stay until their last items are settled.
    var deleted = false
    /// The sequence number of the record that started the current terms (the purchase).
    var since: UInt64 = 0
    /// The plans in force during the current period, oldest first (one unless the plan changed).
    var plans: [PlanPeriod]
    /// The members below that most subscriptions never set, boxed (`Boxed`): nil while all are
    /// empty. They change on deletions, plan changes, voids and renewals only, so the box a write
    /// replaces costs little, and the subscription stays half the size it would be with them inline.
    private var rare: Boxed<Rare>?

    /// The rarely set members, together.
    struct Rare: Equatable, Sendable {
        var firstUnusedHour: Timestamp?
        var earlyReported: [DimensionHour] = []
        var deletedAt: Timestamp?
        var deletion: Deletion?
        var credits: [DimensionQuantity] = []
        var previous: PreviousPeriod?
    }

    /// The record that deleted a subscription.
    struct Deletion: Equatable, Sendable {
        var sequence: UInt64
        var time: Timestamp
    }

    /// Changes the rarely set members, dropping the box when they are all empty again.
    private mutating func changeRare(_ change: (inout Rare) -> Void) {
        var value = rare?.value ?? Rare()
        change(&value)
        rare = value == Rare() ? nil : Boxed(value)
    }

    /// The earliest hour whose `(resource, dimension, hour)` slots are still unused. Set when an
    /// hour is closed before it ended (a deletion): usage arriving later in that same hour must not
    /// create a second item for a slot that may already be at the marketplace, where the first
    /// write wins, so it goes to the next hour instead.
    var firstUnusedHour: Timestamp? {
        get { rare?.value.firstUnusedHour }
        set { changeRare { $0.firstUnusedHour = newValue } }
    }
    /// Slots reported before their hour closed because a plan change dropped their dimension:
    /// should the dimension come back in the same hour, its overage goes to the next one.
    var earlyReported: [DimensionHour] {
        get { rare?.value.earlyReported ?? [] }
        set { changeRare { $0.earlyReported = newValue } }
    }
    /// Under event-time attribution: when the deletion was recorded, while its grace runs (usage
    /// from before it may still arrive); nil once the terms ended.
    var deletedAt: Timestamp? {
        get { rare?.value.deletedAt }
        set { changeRare { $0.deletedAt = newValue } }
    }
    /// The deletion record's sequence number and time, kept while a deleted subscription is held:
    /// usage recorded after it was refused (unless it came within the grace), so a void of it
    /// has nothing to take back.
    var deletion: Deletion? {
        get { rare?.value.deletion }
        set { changeRare { $0.deletion = newValue } }
    }
    /// Overage already accepted by the marketplace and then voided, per dimension, not yet netted
    /// against later overage of the current period.
    var credits: [DimensionQuantity] {
        get { rare?.value.credits ?? [] }
        set { changeRare { $0.credits = newValue } }
    }
    /// The period before the current one, while late usage and voids may still concern it.
    var previous: PreviousPeriod? {
        get { rare?.value.previous }
        set { changeRare { $0.previous = newValue } }
    }

    /// A plan and when it took effect.
    struct PlanPeriod: Equatable, Sendable {
        var planId: String
        var from: Timestamp
    }

    /// The period before the current one: its credits, and while it still takes late usage
    /// (event-time attribution), when that ends.
    struct PreviousPeriod: Equatable, Sendable {
        var period: BillingPeriod
        var credits: [DimensionQuantity] = []
        /// When the period's grace ends (its gauges are reported, its credits listed for refund);
        /// nil once it has.
        var closes: Timestamp?
    }

    /// A `(dimension, hour)` slot.
    struct DimensionHour: Equatable, Sendable {
        var dimension: String
        var hour: Timestamp
    }

    /// A new subscription bought with `purchase` under `resource`, at log time `now`, by record `sequence`.
    init(purchase: SubscriptionPurchased, resource: ResourceName, now: Timestamp, sequence: UInt64) {
        namesAndPlan = Boxed(NamesAndPlan(resource: resource, planId: purchase.plan.planId))
        interval = purchase.renewalInterval
        subscriptionStart = purchase.subscriptionStart
        period = BillingPeriod(containing: now, subscriptionStart: purchase.subscriptionStart, interval: purchase.renewalInterval)
        meters = Self.meters(of: purchase.plan, since: sequence)
        meterNames = meters.map(\.name)
        since = sequence
        plans = [PlanPeriod(planId: purchase.plan.planId, from: now)]
    }

    /// A subscription restored from a snapshot.
    init(
        resource: ResourceName, planId: String, interval: RenewalInterval, subscriptionStart: Timestamp, period: BillingPeriod,
        meters: [Meter], plans: [PlanPeriod]
    ) {
        namesAndPlan = Boxed(NamesAndPlan(resource: resource, planId: planId))
        self.interval = interval
        self.subscriptionStart = subscriptionStart
        self.period = period
        self.meters = meters
        meterNames = meters.map(\.name)
        self.plans = plans
    }

    static func meters(of plan: Plan, since: UInt64) -> [Meter] {
        plan.billingDimensions.map { Meter(name: $0.meterName, dimension: $0.dimension, since: since) }
    }

    /// Starts over under the terms of `purchase` (a deleted subscription bought again): new plan,
    /// interval and start, with every meter empty for the period containing `now`. The open hours
    /// and `firstUnusedHour` are kept: they belong to the resource's marketplace slots, not to the plan.
    mutating func restart(with purchase: SubscriptionPurchased, now: Timestamp, sequence: UInt64) {
        let fresh = Subscription(purchase: purchase, resource: resource, now: now, sequence: sequence)
        planId = fresh.planId
        interval = fresh.interval
        subscriptionStart = fresh.subscriptionStart
        period = fresh.period
        meters = fresh.meters
        meterNames = fresh.meterNames
        since = sequence
        plans = fresh.plans
        credits = []
        previous = nil
        deleted = false
        deletedAt = nil
        deletion = nil
    }

    /// Whether `purchase` repeats this subscription's terms exactly (a resent purchase).
    func hasTerms(of purchase: SubscriptionPurchased) -> Bool {
        hasSchedule(of: purchase) && has(purchase.plan)
    }

    /// Whether `purchase` has this subscription's start and renewal interval.
    func hasSchedule(of purchase: SubscriptionPurchased) -> Bool {
        interval == purchase.renewalInterval && subscriptionStart == purchase.subscriptionStart
    }

    /// Whether `plan` is the plan in force.
    func has(_ plan: Plan) -> Bool {
        planId == plan.planId && meters.map(\.name) == plan.billingDimensions.map(\.meterName)
            && meters.map(\.rule) == Self.meters(of: plan, since: 0).map(\.rule)
    }

    func meterIndex(named name: String) -> Int? {
        // The names' list is in the caches (shared); the meter it points to is read anyway.
        if meterNames.count == meters.count, let index = meterNames.firstIndex(of: name), meters[index].name == name { return index }
        return meters.firstIndex { $0.name == name }
    }

    // MARK: - Hours

    /// The hour overage of `dimension` goes to when its usage belongs to the hour `base`: `base`,
    /// unless that slot was used by an early report (then the next hour whose slot is free).
    func hour(for dimension: String, base: Timestamp) -> Timestamp {
        var hour = base
        if let firstUnusedHour, hour < firstUnusedHour { hour = firstUnusedHour }
        while earlyReported.contains(DimensionHour(dimension: dimension, hour: hour)) {
            hour = hour.adding(microseconds: Timestamp.microsecondsPerHour)
        }
        return hour
    }

    /// The hour new usage at `time` is recorded in (before per-dimension slot protection).
    func recordingHour(_ time: Timestamp) -> Timestamp {
        let hour = time.hourStart
        guard let firstUnusedHour else { return hour }
        return max(hour, firstUnusedHour)
    }

    /// Whether `quantity` more of `dimension` fits in the open hour starting at `hour`.
    func fits(_ dimension: String, _ quantity: Quantity, hour: Timestamp) -> Bool {
        guard let index = openHours.firstIndex(where: { $0.start == hour }) else { return true }
        return openHours[index].fits(dimension, quantity)
    }

    /// Adds overage to the open hour starting at `hour` (opened in order when new). False,
    /// changing nothing, on overflow.
    mutating func add(_ dimension: String, _ quantity: Quantity, hour: Timestamp) -> Bool {
        if let index = openHours.lastIndex(where: { $0.start <= hour }), openHours[index].start == hour {
            return openHours[index].add(dimension, quantity)
        }
        var open = OpenHour(start: hour)
        open.overage.append(DimensionQuantity(dimension: dimension, quantity: quantity))
        let position = openHours.firstIndex { $0.start > hour } ?? openHours.count
        openHours.insert(open, at: position)
        return true
    }

    /// The outcome of adding to an open hour.
    enum Addition {
        /// Added to the hour starting at `hour`; `opened` tells that there was no open hour before.
        case added(opened: Bool, hour: Timestamp)
        /// Nothing changed: a total would have left `Quantity`'s range.
        case overflow(hour: Timestamp)
    }

    /// Adds overage that bypasses the meters (an expired item billed again, a gauge's value) to
    /// the hour of `now`.
    mutating func addOverage(_ dimension: String, _ quantity: Quantity, now: Timestamp) -> Addition {
        addOverage(dimension, quantity, base: now.hourStart)
    }

    /// Adds overage that bypasses the meters to the hour `base` (or the next free one).
    mutating func addOverage(_ dimension: String, _ quantity: Quantity, base: Timestamp) -> Addition {
        let opened = openHours.isEmpty
        let hour = hour(for: dimension, base: base)
        guard add(dimension, quantity, hour: hour) else { return .overflow(hour: hour) }
        return .added(opened: opened, hour: hour)
    }

    /// Moves the open hours that have closed at `now` to the end of `closed`, oldest first. The
    /// subscription keeps its list's room for the next hour's overage: a list handed over with the
    /// hours was made again for every subscription with overage, each hour (an allocation and a
    /// free of memory in no cache each).
    mutating func closeHours(now: Timestamp, attribution: Attribution, into closed: inout [OpenHour]) {
        guard let first = openHours.first, attribution.closing(ofHour: first.start) <= now else { return }
        let count = openHours.firstIndex { attribution.closing(ofHour: $0.start) > now } ?? openHours.count
        if count == openHours.count {
            // All of them (nearly always).
            closed.append(contentsOf: openHours)
            openHours.removeAll(keepingCapacity: true)
        } else {
            closed.append(contentsOf: openHours[..<count])
            openHours.removeFirst(count)
        }
        if !earlyReported.isEmpty {
            // Kept two days: a gauge value reported for a closed hour must still see its slot used.
            let horizon = now.adding(microseconds: -2 * Timestamp.microsecondsPerDay)
            earlyReported.removeAll { $0.hour < horizon }
        }
    }

    // MARK: - Usage

    /// What a usage event did to the subscription.
    enum Usage {
        /// Counted; `hour` is where it was recorded, `previous` tells it counted for the period
        /// before the current one (late usage within the grace).
        case recorded(openedHour: Bool, hour: Timestamp, previous: Bool)
        case deleted
        case unknownMeter
        case overflow
    }

    /// Records `usage` placed at `placed` (its attribution time) at log time `now`, checking
    /// everything in one place so the partition reaches the subscription only once per event.
    mutating func report(_ usage: UsageReported, placed: Timestamp, now: Timestamp, parts: inout [UsagePart]?) -> Usage {
        if deleted {
            guard let deletedAt, placed < deletedAt else { return .deleted }
        }
        guard let index = meterIndex(named: usage.meterName) else { return .unknownMeter }
        let inPrevious = placed < period.start && previous.map { $0.closes != nil && $0.period.contains(placed) } ?? false
        let base = recordingHour(placed)
        // A meter the plan added after the renewal counts late usage of the period before from zero.
        if inPrevious && meters[index].previous == nil { meters[index].previous = MeterUsage() }
        // The rule is read once: reading it (or a computed property) per check would copy the meter.
        switch meters[index].rule {
        case .gauge:
            if inPrevious {
                var meter = meters[index]
                let current = meter.usage
                meter.usage = meter.previous!
                meter.report(gauge: usage.quantity)
                meter.previous = meter.usage
                meter.usage = current
                meters[index] = meter
            } else {
                meters[index].report(gauge: usage.quantity)
            }
            if parts != nil {
                meter(index) { $0.appendParts(of: usage.quantity, after: .zero, overage: [], netted: [], to: &parts!) }
            }
            return .recorded(openedHour: false, hour: base, previous: inPrevious)
        case .sum(let dimension, let included) where !inPrevious && credits.isEmpty:
            return reportSum(usage.quantity, meter: index, dimension: dimension, included: included, base: base, parts: &parts)
        case .waterfall(let tiers) where !inPrevious && credits.isEmpty:
            if let usage = reportWaterfall(usage.quantity, meter: index, tiers: tiers, base: base, parts: &parts) { return usage }
        default:
            break
        }
        let consumed = inPrevious ? meters[index].previous!.consumed : meters[index].usage.consumed
        guard let (total, overage) = meter(index, { $0.overage(of: usage.quantity, after: consumed) }) else { return .overflow }
        let opened = openHours.isEmpty
        if !overage.isEmpty {
            // Credits absorb overage first; the rest goes to its hour, all of it or nothing.
            var credits = inPrevious ? previous!.credits : self.credits
            var netted: [DimensionQuantity] = []
            var reported: [(hour: Timestamp, overage: DimensionQuantity)] = []
            for piece in overage {
                let absorbed = credits.isEmpty ? .zero : credits.take(piece.dimension, upTo: piece.quantity)
                netted.add(piece.dimension, absorbed)
                let rest = piece.quantity - absorbed
                guard rest > .zero else { continue }
                let hour = hour(for: piece.dimension, base: base)
                if let same = reported.firstIndex(where: { $0.hour == hour && $0.overage.dimension == piece.dimension }) {
                    guard let sum = reported[same].overage.quantity.adding(rest) else { return .overflow }
                    reported[same].overage.quantity = sum
                } else {
                    reported.append((hour, DimensionQuantity(dimension: piece.dimension, quantity: rest)))
                }
            }
            for entry in reported where !fits(entry.overage.dimension, entry.overage.quantity, hour: entry.hour) { return .overflow }
            for entry in reported { _ = add(entry.overage.dimension, entry.overage.quantity, hour: entry.hour) }
            if inPrevious { previous!.credits = credits } else { self.credits = credits }
            if parts != nil {
                meter(index) { $0.appendParts(of: usage.quantity, after: consumed, overage: overage, netted: netted, to: &parts!) }
            }
        } else if parts != nil {
            meter(index) { $0.appendParts(of: usage.quantity, after: consumed, overage: [], netted: [], to: &parts!) }
        }
        if inPrevious {
            meters[index].previous!.consumed = total
            for piece in overage { meters[index].previous!.billed.add(piece.dimension, piece.quantity) }
        } else {
            meters[index].usage.consumed = total
            for piece in overage { meters[index].usage.billed.add(piece.dimension, piece.quantity) }
        }
        return .recorded(openedHour: opened && !openHours.isEmpty, hour: base, previous: inPrevious)
    }

    /// `body` with the meter at `index` in place, to read it: a method called on `meters[index]`
    /// (or on the element of a buffer pointer) copied the whole meter first, retaining every string
    /// and array it holds, on every usage report. `inout` reaches the element where it is.
    private mutating func meter<Result>(_ index: Int, _ body: (inout Meter) -> Result) -> Result {
        body(&meters[index])
    }

    /// The common case of `report` without allocating: a summed meter of the current period, no
    /// credit to net. The same rule as the general path.
    private mutating func reportSum(
        _ quantity: Quantity, meter index: Int, dimension: String, included: IncludedQuantity, base: Timestamp, parts: inout [UsagePart]?
    ) -> Usage {
        let consumed = meters[index].usage.consumed
        guard let total = consumed.adding(quantity) else { return .overflow }
        var overage = Quantity.zero
        if case .finite(let included) = included {
            // The part of [consumed, total) above the included quantity.
            overage = max(.zero, total - max(included, consumed))
        }
        let opened = openHours.isEmpty
        if overage > .zero {
            guard add(dimension, overage, hour: hour(for: dimension, base: base)) else { return .overflow }
            meters[index].usage.billed.add(dimension, overage)
        }
        meters[index].usage.consumed = total
        if parts != nil { parts?.append(UsagePart(dimension: dimension, quantity: quantity, billed: overage)) }
        return .recorded(openedHour: opened && !openHours.isEmpty, hour: base, previous: false)
    }

    /// The common case of `report` for a waterfall meter without allocating: the current period,
    /// no credit to net, the usage falling within one tier (or the free band). The same rule as the
    /// general path; nil, changing nothing, when the usage spans several tiers.
    private mutating func reportWaterfall(
        _ quantity: Quantity, meter index: Int, tiers: [Meter.Tier], base: Timestamp, parts: inout [UsagePart]?
    ) -> Usage? {
        let consumed = meters[index].usage.consumed
        guard let total = consumed.adding(quantity) else { return .overflow }
        // The one tier band the consumption reaches, cut as `Meter.overage(of:after:)` cuts it.
        var piece: (tier: Int, quantity: Quantity)?
        for position in tiers.indices {
            guard let quantity = Meter.piece(ofTier: position, in: tiers, from: consumed, to: total) else { continue }
            if piece != nil { return nil }
            piece = (position, quantity)
        }
        let opened = openHours.isEmpty
        if let piece {
            let dimension = tiers[piece.tier].dimension
            guard add(dimension, piece.quantity, hour: hour(for: dimension, base: base)) else { return .overflow }
            meters[index].usage.billed.add(dimension, piece.quantity)
            if parts != nil {
                let overage = CollectionOfOne(DimensionQuantity(dimension: dimension, quantity: piece.quantity))
                meter(index) { $0.appendParts(of: quantity, after: consumed, overage: overage, netted: [], to: &parts!) }
            }
        } else if parts != nil {
            meter(index) { $0.appendParts(of: quantity, after: consumed, overage: [], netted: [], to: &parts!) }
        }
        meters[index].usage.consumed = total
        return .recorded(openedHour: opened && !openHours.isEmpty, hour: base, previous: false)
    }

    /// The gauge meters' overage for the period so far.
    var gaugeOverages: [DimensionQuantity] { meters.compactMap(\.gaugeOverage) }

    /// The gauge meters' overage for the previous period.
    var previousGaugeOverages: [DimensionQuantity] { meters.compactMap { $0.previous.flatMap($0.gaugeOverage(of:)) } }

    // MARK: - Periods

    /// What came due at a deadline: gauge values to report for an hour, and credits of an ended
    /// period to list for refund.
    struct Due {
        var gauges: [(hour: Timestamp, overage: DimensionQuantity)] = []
        var refunds: [(period: BillingPeriod, credit: DimensionQuantity)] = []
        /// The next deadlines to watch.
        var deadlines: [Timestamp] = []
        var renewed = false
    }

    /// The last hour of `period`, where its gauge values are reported.
    static func lastHour(of period: BillingPeriod) -> Timestamp { period.end.adding(microseconds: -1).hourStart }

    /// Handles `deadline` (the deadline queue keeps stale entries: what no longer matches is
    /// ignored): the period's end (renewal), the previous period's end of grace, or the end of a
    /// deletion's grace.
    mutating func due(_ deadline: Timestamp, now: Timestamp, attribution: Attribution) -> Due {
        var due = Due()
        if !deleted, period.end == deadline { renew(now: now, attribution: attribution, into: &due) }
        if let previous, previous.closes == deadline { closePrevious(into: &due) }
        if let deletedAt, deletedAt.adding(microseconds: attribution.lateGrace) <= deadline {
            due.gauges += gaugeOverages.map { (deletedAt.hourStart, $0) }
            due.refunds += credits.map { (period, $0) }
            credits = []
            self.deletedAt = nil
        }
        return due
    }

    /// Moves to the period containing `now` (skipping periods without records, always counted from
    /// the original start) with every meter empty, so the included quantities are whole again.
    private mutating func renew(now: Timestamp, attribution: Attribution, into due: inout Due) {
        // A previous period still in its grace ends now: a newer one takes its place.
        if previous?.closes != nil { closePrevious(into: &due) }
        let ended = period
        period = BillingPeriod(containing: now, subscriptionStart: subscriptionStart, interval: interval)
        let adjacent = period.index == ended.index + 1
        let gauges = gaugeOverages
        for index in meters.indices { meters[index].renew(adjacent: adjacent) }
        let endedCredits = credits
        credits = []
        plans = [PlanPeriod(planId: planId, from: period.start)]
        due.renewed = true
        due.deadlines.append(period.end)
        // The period just before the new one (the ended one, or an empty one when periods without
        // records were skipped) takes late usage until its grace ends.
        let before = adjacent ? ended : BillingPeriod(index: period.index - 1, subscriptionStart: subscriptionStart, interval: interval)
        let closes = period.start.adding(microseconds: attribution.lateGrace)
        let open = closes > now
        if !adjacent || !open {
            due.gauges += gauges.map { (Self.lastHour(of: ended), $0) }
            due.refunds += endedCredits.map { (ended, $0) }
        }
        previous = PreviousPeriod(period: before, credits: adjacent && open ? endedCredits : [], closes: open ? closes : nil)
        if open { due.deadlines.append(closes) }
    }

    /// Ends the previous period's grace: its gauge values are reported, its credits listed.
    private mutating func closePrevious(into due: inout Due) {
        guard var previous, previous.closes != nil else { return }
        due.gauges += previousGaugeOverages.map { (Self.lastHour(of: previous.period), $0) }
        due.refunds += previous.credits.map { (previous.period, $0) }
        previous.credits = []
        previous.closes = nil
        self.previous = previous
    }
}
