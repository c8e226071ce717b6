import Wire

/// One subscription of a partition: its terms (plan, renewal interval, original start), the
/// current billing period with each meter's consumption, and the still-open hour's overage.
struct Subscription: Equatable, Sendable {
    /// The names it answers to. The first name it was bought under is its key in the partition.
    var resource: ResourceName
    var planId: String
    var interval: RenewalInterval
    var subscriptionStart: Timestamp
    var period: BillingPeriod
    var meters: [Meter]
    var openHour: OpenHour?
    /// The earliest hour whose `(resource, dimension, hour)` slots are still unused. Set when an
    /// hour is closed before it ended (deletion, new purchase): usage arriving later in that same
    /// hour must not create a second item for a slot that may already be at the marketplace, where
    /// the first write wins, so it goes to the next hour instead.
    var firstUnusedHour: Timestamp?
    /// Deleted subscriptions take no usage; they stay until their last items are settled.
    var deleted = false

    /// A new subscription bought with `purchase` under `resource`, at log time `now`.
    init(purchase: SubscriptionPurchased, resource: ResourceName, now: Timestamp) {
        self.resource = resource
        planId = purchase.plan.planId
        interval = purchase.renewalInterval
        subscriptionStart = purchase.subscriptionStart
        period = BillingPeriod(containing: now, subscriptionStart: purchase.subscriptionStart, interval: purchase.renewalInterval)
        meters = Self.meters(of: purchase.plan)
    }

    /// A subscription restored from a snapshot.
    init(
        resource: ResourceName, planId: String, interval: RenewalInterval, subscriptionStart: Timestamp, period: BillingPeriod,
        meters: [Meter], openHour: OpenHour?, firstUnusedHour: Timestamp?, deleted: Bool
    ) {
        self.resource = resource
        self.planId = planId
        self.interval = interval
        self.subscriptionStart = subscriptionStart
        self.period = period
        self.meters = meters
        self.openHour = openHour
        self.firstUnusedHour = firstUnusedHour
        self.deleted = deleted
    }

    static func meters(of plan: Plan) -> [Meter] {
        plan.billingDimensions.map { Meter(name: $0.meterName, dimension: $0.dimension) }
    }

    /// Starts over under the terms of `purchase`: new plan, interval and start, with every meter
    /// empty for the period containing `now`. The open hour and `firstUnusedHour` are kept: they
    /// belong to the resource's marketplace slots, not to the plan.
    mutating func restart(with purchase: SubscriptionPurchased, now: Timestamp) {
        let fresh = Subscription(purchase: purchase, resource: resource, now: now)
        planId = fresh.planId
        interval = fresh.interval
        subscriptionStart = fresh.subscriptionStart
        period = fresh.period
        meters = fresh.meters
        deleted = false
    }

    /// Whether `purchase` repeats this subscription's terms exactly (a resent purchase).
    func hasTerms(of purchase: SubscriptionPurchased) -> Bool {
        planId == purchase.plan.planId && interval == purchase.renewalInterval && subscriptionStart == purchase.subscriptionStart
            && meters.map(\.name) == purchase.plan.billingDimensions.map(\.meterName)
            && meters.map(\.rule) == Self.meters(of: purchase.plan).map(\.rule)
    }

    func meterIndex(named name: String) -> Int? {
        meters.firstIndex { $0.name == name }
    }

    /// The hour new overage goes to: the open hour, or else the current hour unless its slots were
    /// already used by an early close.
    func openHourStart(now: Timestamp) -> Timestamp {
        if let openHour { return openHour.start }
        let current = now.hourStart
        guard let firstUnusedHour else { return current }
        return max(current, firstUnusedHour)
    }

    /// The outcome of adding to the open hour.
    enum Addition {
        /// Added; `opened` tells that the open hour did not exist before.
        case added(opened: Bool)
        /// Nothing changed: a total would have left `Quantity`'s range.
        case overflow
    }

    /// Records usage of meter `index` at log time `now`.
    mutating func record(_ quantity: Quantity, meter index: Int, now: Timestamp, parts: inout [UsagePart]?) -> Addition {
        let opened = openHour == nil
        var hour = takeOpenHour(now: now)
        let recorded = meters[index].record(quantity, into: &hour, parts: &parts)
        // Usage that is all included (or a gauge report) leaves no overage and opens no hour.
        openHour = hour.overage.isEmpty ? nil : hour
        guard recorded else { return .overflow }
        return .added(opened: opened && openHour != nil)
    }

    /// Adds overage that bypasses the meters (an expired item billed again, a gauge's period value).
    mutating func addOverage(_ dimension: String, _ quantity: Quantity, now: Timestamp) -> Addition {
        let opened = openHour == nil
        var hour = takeOpenHour(now: now)
        let added = hour.add(dimension, quantity)
        openHour = hour.overage.isEmpty ? nil : hour
        guard added else { return .overflow }
        return .added(opened: opened)
    }

    /// The open hour moved out of the subscription (or a new one), so that changing it does not copy
    /// its storage: this runs for every usage event.
    private mutating func takeOpenHour(now: Timestamp) -> OpenHour {
        guard let hour = openHour else { return OpenHour(start: openHourStart(now: now)) }
        openHour = nil
        return hour
    }

    /// What closing the open hour found.
    enum HourClosing {
        /// There was no open hour.
        case none
        /// The open hour has not ended yet (it starts after an early close, in the future).
        case running
        /// The open hour ended; it was taken out of the subscription, whose names, plan and
        /// deletion come along for the items.
        case closed(OpenHour, resource: ResourceName, planId: String, deleted: Bool)
    }

    /// Takes the open hour out when it has ended by `now`.
    mutating func closeOpenHour(now: Timestamp) -> HourClosing {
        guard let hour = openHour else { return .none }
        guard now >= hour.start.adding(microseconds: Timestamp.microsecondsPerHour) else { return .running }
        openHour = nil
        return .closed(hour, resource: resource, planId: planId, deleted: deleted)
    }

    /// What a usage event did to the subscription.
    enum Usage {
        case recorded(openedHour: Bool)
        case deleted
        case unknownMeter
        case overflow
    }

    /// Records usage of meter `meterName` at log time `now`, checking everything in one place so
    /// the partition reaches the subscription only once per event.
    mutating func report(_ quantity: Quantity, meterName: String, now: Timestamp, parts: inout [UsagePart]?) -> Usage {
        guard !deleted else { return .deleted }
        guard let index = meterIndex(named: meterName) else { return .unknownMeter }
        switch record(quantity, meter: index, now: now, parts: &parts) {
        case .added(let opened): return .recorded(openedHour: opened)
        case .overflow: return .overflow
        }
    }

    /// The gauge meters' overage for the period so far.
    var gaugeOverages: [DimensionQuantity] { meters.compactMap(\.gaugeOverage) }

    /// What a renewal did: the ended period's gauge overages and the new period's end.
    struct Renewal {
        var gauges: [DimensionQuantity]
        var nextDeadline: Timestamp
    }

    /// Renews when `deadline` is still this live subscription's period end (the deadline queue
    /// keeps stale entries); nil otherwise.
    mutating func renew(due deadline: Timestamp, now: Timestamp) -> Renewal? {
        guard !deleted, period.end == deadline else { return nil }
        let gauges = gaugeOverages
        renew(now: now)
        return Renewal(gauges: gauges, nextDeadline: period.end)
    }

    /// Moves to the period containing `now` (skipping periods without records, always counted from
    /// the original start) with every meter empty, so the included quantities are whole again.
    mutating func renew(now: Timestamp) {
        period = BillingPeriod(containing: now, subscriptionStart: subscriptionStart, interval: interval)
        for index in meters.indices { meters[index].renew() }
    }
}
