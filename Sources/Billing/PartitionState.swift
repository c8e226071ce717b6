public import Wire

/// The billing state of one partition: the result of folding its records in order (DESIGN.md §4,
/// docs/BILLING.md).
///
/// Pure: no I/O and no clocks. The only time is the records' enqueued time, so folding the same
/// records always gives an equal state, and `snapshot()` / `init(snapshot:)` round-trip exactly.
///
/// Before any record is applied the partition clock advances to its enqueued time: every open hour
/// that has closed (its end, plus the late grace under event-time attribution) becomes
/// ready-to-report items, then every deadline that has passed is handled (a billing period's end:
/// gauge meters report, included quantities refill; the end of a grace). Both are driven by indexes
/// (the subscriptions with an open hour, a heap of deadlines), so a record costs the same with
/// 100,000 subscriptions as with one.
///
/// Choices where the rules leave room (docs/BILLING.md has them all, with examples):
/// - A purchase for a live subscription with the same terms is a resend and changes nothing (it may
///   add a name); with the same start and interval and another plan it is a plan change; with
///   another start or interval it is refused as unprocessable. A purchase for a deleted
///   subscription that is still held (items outstanding) starts it over on the new terms.
/// - A plan change keeps the consumption of meters present in both plans; what only the old plan
///   billed is reported at once, under the old plan.
/// - A void takes the voided quantity out of the period's consumption; the overage that no longer
///   follows leaves the unreported slots, and what the marketplace already accepted becomes a
///   credit netted against later overage of the period, or listed for refund when it ends.
/// - A deleted subscription is removed once it has no pending item and no open hour; outcomes for
///   its items apply until then. Outcomes that match no pending item (already settled, a resend
///   after a crash, a removed subscription) change nothing.
/// - Usage closed early (a deletion) uses its hour's slots; later overage of the same hour for that
///   subscription goes to the next hour, since the marketplace keeps the first write.
/// - Records whose sequence is not after `lastSequence` are ignored, so re-reading an overlap of
///   the log after a restart never counts twice. The clock never moves backwards.
public struct PartitionState: Sendable, Equatable {
    /// The partition whose records this state folds.
    public let partition: Int
    /// The sequence number of the last applied record.
    public internal(set) var lastSequence: UInt64?
    /// The sequence number of the next record the state needs (0 for an empty state).
    public var nextSequence: UInt64 { lastSequence.map { $0 + 1 } ?? 0 }
    /// The partition clock: the enqueued time of the last applied record.
    public internal(set) var time: Timestamp?
    /// How usage is attributed to hours, as the log's ticks last said.
    public internal(set) var attribution = Attribution.enqueued
    /// Items settled as `Accepted`, or as `Duplicate` with the same quantity.
    public internal(set) var accepted = 0
    /// Items the marketplace answered `Expired`, billed again in the open hour.
    public internal(set) var expiredRebilled = 0
    /// Usage that came after its hour had closed and went to the oldest open hour.
    public internal(set) var lateUsage = 0
    /// Usage reports voided.
    public internal(set) var voids = 0
    /// Items the marketplace refused for good, oldest first.
    public internal(set) var rejected: [RejectedItem] = []
    /// Items whose slot the marketplace holds with another quantity, oldest first.
    public internal(set) var conflicts: [Conflict] = []
    /// Credits left unused when their billing period ended: for the ISV to refund by hand.
    public internal(set) var refunds: [Refund] = []
    /// Records that could not be billed: counts per subscription and reason, the latest in full.
    public internal(set) var unprocessable = UnprocessableLedger()

    /// Subscriptions by key (the first name they were bought under).
    var subscriptions = DenseTable<String, Subscription>()
    /// Every other name of a subscription, to its key.
    var aliases: [String: String] = [:]
    /// Ready items not yet settled, one per slot. Items a void emptied stay (quantity zero, kept
    /// out of `pending`) until their hour is past the marketplace's window, so that the outcome of
    /// a call made before the void is still understood.
    var pendingItems = PendingTable()
    /// Pending items per subscription key (no entry for none), so removal needs no scan.
    var pendingPerSubscription: [String: Int] = [:]

    /// When not nil, every fold appends what it did (`BillingEffect`) here, for read models; the
    /// reader empties it. Not part of the state: left out of `==` and of snapshots.
    public var effects: [BillingEffect]?
    /// Emptied lists of usage parts a reader of `effects` gave back (`recycle`), for the next usage
    /// effects to fill: a list made for every usage event and freed again by the reader was an
    /// allocation and a free per record of a read model's fold. Not part of the state either.
    var spareParts: [[UsagePart]] = []
    /// How many subscriptions the partition holds before its folds read ahead (`prefetch`): about
    /// 1 KiB each with their meters, 4,096 of them are 4 MiB, past what the caches of a small
    /// machine keep for one partition of several. With 250 (the catch-up benchmark's log) reading
    /// ahead only cost: 1,856,315-1,947,105 records/s against 1,892,448-2,355,641 without
    /// (docs/BENCHMARKS.md). Not part of the state either; tests lower it.
    public var readAheadFrom = 4_096

    // Derived indexes: rebuilt on restore, left out of `==` because their layout depends on history.
    /// Deadlines of live subscriptions: period ends and ends of graces (stale entries are skipped).
    var deadlines = DeadlineQueue()
    /// Keys of subscriptions that may have an open hour.
    var openHours: Set<String> = []
    /// Slots of pending items a void emptied.
    var emptied: Set<Slot> = []
    /// How many pending items with something to report (not emptied) each hour has, for a status
    /// that counts the items at risk without visiting them all (`pendingCount(startedAtLeast:)`).
    var reportableByHour: [Timestamp: Int] = [:]
    /// The lists of meter names subscriptions share (`Subscription.meterNames`), and the waterfall
    /// tiers: one of each per plan, as a rule. At most `sharedListsLimit` of each, so that hostile
    /// plans cannot make them grow without bound: a subscription whose lists are not among them
    /// keeps its own.
    var sharedMeterNames: Set<[String]> = []
    var sharedTiers: Set<[Meter.Tier]> = []
    static let sharedListsLimit = 1_024

    /// A marketplace slot of one subscription: the marketplace accepts one item per slot.
    struct Slot: Hashable, Sendable {
        let subscription: String
        let dimension: String
        let hour: Timestamp
        /// The three hashed once, when the slot is made: a table of pending items hashes every key
        /// again each time it grows, and hashing two strings each time was 2.62% of a catch-up's
        /// samples (docs/BENCHMARKS.md). Seeded per process as any hash, so no easier to collide.
        private let digest: Int

        init(subscription: String, dimension: String, hour: Timestamp) {
            self.subscription = subscription
            self.dimension = dimension
            self.hour = hour
            var hasher = Hasher()
            hasher.combine(subscription)
            hasher.combine(dimension)
            hasher.combine(hour)
            digest = hasher.finalize()
        }

        static func == (lhs: Slot, rhs: Slot) -> Bool {
            lhs.digest == rhs.digest && lhs.subscription == rhs.subscription && lhs.dimension == rhs.dimension && lhs.hour == rhs.hour
        }

        func hash(into hasher: inout Hasher) { hasher.combine(digest) }
    }

    /// Gives `subscription` the shared copies (adding its own when there is room) of the lists that
    /// subscriptions of one plan hold alike: its meters' names, and its waterfall meters' tiers. A
    /// shared list stays in the caches; a copy per subscription was read (and retained, to read a
    /// rule's tiers) from memory at every usage event of the meter (a retain was 3.16% of
    /// meter-aggregator's samples in the query case, nearly all on a waterfall meter's tiers).
    mutating func shareWithSamePlan(_ subscription: inout Subscription) {
        if let shared = sharedMeterNames.firstIndex(of: subscription.meterNames) {
            subscription.meterNames = sharedMeterNames[shared]
        } else if sharedMeterNames.count < Self.sharedListsLimit {
            sharedMeterNames.insert(subscription.meterNames)
        }
        for index in subscription.meters.indices {
            guard case .waterfall(let tiers) = subscription.meters[index].rule else { continue }
            if let shared = sharedTiers.firstIndex(of: tiers) {
                subscription.meters[index].rule = .waterfall(tiers: sharedTiers[shared])
            } else if sharedTiers.count < Self.sharedListsLimit {
                sharedTiers.insert(tiers)
            }
        }
    }

    /// An empty partition `partition`.
    public init(partition: Int) {
        self.partition = partition
    }

    /// Equal billing meaning: the derived indexes (deadline heap, open-hour set), whose layout
    /// depends on history, are left out.
    public static func == (lhs: PartitionState, rhs: PartitionState) -> Bool {
        lhs.partition == rhs.partition && lhs.lastSequence == rhs.lastSequence && lhs.time == rhs.time
            && lhs.attribution == rhs.attribution && lhs.accepted == rhs.accepted && lhs.expiredRebilled == rhs.expiredRebilled
            && lhs.lateUsage == rhs.lateUsage && lhs.voids == rhs.voids && lhs.rejected == rhs.rejected
            && lhs.conflicts == rhs.conflicts && lhs.refunds == rhs.refunds && lhs.unprocessable == rhs.unprocessable
            && lhs.subscriptions == rhs.subscriptions && lhs.aliases == rhs.aliases && lhs.pendingItems == rhs.pendingItems
            && lhs.pendingPerSubscription == rhs.pendingPerSubscription
    }

    /// Items ready to report and not yet settled, oldest first (by hour, then resource, then
    /// dimension). Items a void emptied are not among them: there is nothing left to report.
    public var pending: [ReadyItem] {
        pendingItems.entries.filter { $0.value.quantity > .zero }.map { slot, item in
            let ready = item.ready(slot)
            return (ready, ready.resource.description)
        }.sorted(by: ReadyItem.reportingOrder).map(\.item)
    }

    /// The number of pending items, without sorting them.
    public var pendingCount: Int { pendingItems.count - emptied.count }

    /// The number of pending items (as `pending` lists them) whose hour started `age` microseconds
    /// or more before `now`, without listing or sorting them: for a status answered often.
    /// Visits the hours that hold items, not the items (half a million of them in a catch-up over
    /// 100,000 subscriptions, under the lock the partition's fold waits for).
    public func pendingCount(startedAtLeast age: Int64, before now: Timestamp) -> Int {
        var count = 0
        for (hour, items) in reportableByHour where now.microseconds - hour.microseconds >= age { count += items }
        return count
    }

    /// Counts an item of `hour` that now has something to report (`change` 1) or no longer has
    /// (`change` -1: emptied or settled).
    mutating func countReportable(_ hour: Timestamp, _ change: Int) {
        // Changed in place: one lookup (and one hash) where reading then writing took two.
        func changed(_ count: inout Int) -> Bool {
            count += change
            return count == 0
        }
        if changed(&reportableByHour[hour, default: 0]) { reportableByHour[hour] = nil }
    }

    /// Whether the slot `(dimension, hour)` of the subscription keyed `key` holds an item not yet
    /// settled (one a void emptied included: its outcome may still come).
    public func hasPendingItem(key: String, dimension: String, hour: Timestamp) -> Bool {
        pendingItems.contains(Slot(subscription: key, dimension: dimension, hour: hour))
    }

    /// Subscriptions held, including deleted ones whose items are not all settled yet.
    public var subscriptionCount: Int { subscriptions.count }

    /// Folds `record` into the state: advances the clock to its enqueued time, then applies its message.
    public mutating func apply(_ record: BillingRecord) {
        if let lastSequence, record.sequence <= lastSequence { return }
        let now = max(record.enqueuedTime, time ?? record.enqueuedTime)
        advance(to: now)
        switch record.message.body {
        case .subscriptionPurchased(let purchase):
            purchased(purchase, record: record, now: now)
        case .usageReported(let usage):
            reported(usage, record: record, now: now)
        case .subscriptionDeleted(let resource):
            deleted(resource, record: record, now: now)
        case .usageSubmittedToAPI(let outcome):
            submitted(outcome, now: now)
        case .removeUnprocessedMessages(let removal):
            remove(removal)
        case .ping(let ping):
            if let attribution = ping.attribution, attribution != self.attribution { change(to: attribution, now: now) }
        case .planChanged(let change):
            changed(change, record: record, now: now)
        case .usageVoided(let void):
            voided(void, record: record, now: now)
        case .planDefined:
            // The catalog: ingest already put its plans into the purchases that name them.
            break
        }
        lastSequence = record.sequence
        time = now
    }

    /// Gives back the parts of a usage or void effect once read, emptied, for the next effects to
    /// fill (at most a few are kept).
    public mutating func recycle(_ parts: consuming [UsagePart]) {
        guard spareParts.count < 4, parts.capacity > 0 else { return }
        parts.removeAll(keepingCapacity: true)
        spareParts.append(parts)
    }

    // MARK: - Time

    /// Closes the open hours that closed by `now`, then handles the deadlines that passed.
    mutating func advance(to now: Timestamp) {
        if let time, attribution.oldestOpenHour(at: now) > attribution.oldestOpenHour(at: time) {
            if !openHours.isEmpty { closeHours(now: now) }
            if !emptied.isEmpty { forgetEmptied(now: now) }
        }
        while let next = deadlines.first, next.deadline <= now {
            deadlines.removeFirst()
            handle(next.key, deadline: next.deadline, now: now)
        }
    }

    private mutating func closeHours(now: Timestamp) {
        // Sized at once: the set would otherwise grow (rehashing all it holds) several times over
        // while an hour of a large partition closes.
        var stillOpen = Set<String>(minimumCapacity: openHours.count)
        let attribution = self.attribution
        // Every subscription with usage in the hour, each in no cache: read ahead, as records are.
        let keys = Array(openHours)
        let hashes = keys.map { DenseTable<String, Subscription>.hash($0) }
        // The closing hours' new items, counted once per hour (nearly always one) instead of once
        // per item: each count is a hash and a lookup.
        var tally = ReadyTally()
        // Each subscription's closed hours, in one list emptied for the next.
        var closed: [OpenHour] = []
        for position in keys.indices {
            prefetchSubscriptions(hashes: hashes, before: position)
            let key = keys[position]
            guard let index = subscriptions.index(forKey: key, hash: hashes[position]) else { continue }
            closed.removeAll(keepingCapacity: true)
            inPlace(index) { $0.closeHours(now: now, attribution: attribution, into: &closed) }
            // What follows reads the subscription in place: a copy would retain all it holds.
            if !closed.isEmpty {
                let terms = subscriptions.values[index].namesAndPlan
                for hour in closed { makeReady(hour, terms: terms, key: key, now: now, tally: &tally) }
                countNewItems(&tally, of: key)
            }
            if !subscriptions.values[index].openHours.isEmpty {
                stillOpen.insert(key)
            } else if subscriptions.values[index].deleted {
                removeIfFinished(key)
            }
        }
        tally.countReportable(into: &self)
        openHours = stillOpen
    }

    /// Emptied items whose hour the marketplace no longer takes (24 hours, plus an hour for an
    /// outcome in flight) cannot be settled any more: forgotten.
    private mutating func forgetEmptied(now: Timestamp) {
        let horizon = now.adding(microseconds: -25 * Timestamp.microsecondsPerHour)
        for slot in emptied where slot.hour < horizon {
            emptied.remove(slot)
            _ = settle(slot)
            removeIfFinished(slot.subscription)
        }
    }

    private mutating func handle(_ key: String, deadline: Timestamp, now: Timestamp) {
        guard let index = subscriptions.index(forKey: key) else { return }
        let attribution = self.attribution
        let due = inPlace(index) { $0.due(deadline, now: now, attribution: attribution) }
        for next in due.deadlines { deadlines.push(next, key) }
        if due.renewed { effects?.append(.renewed(subscription: key)) }
        for gauge in due.gauges { report(gauge.overage, forHour: gauge.hour, key: key, now: now) }
        for refund in due.refunds { listRefund(refund.credit, period: refund.period, key: key, now: now) }
        if subscriptions.values[index].deleted { removeIfFinished(key) }
    }

    /// Switches to another attribution at `now`: graces in course end by the new one, and what it
    /// closes closes at once.
    private mutating func change(to attribution: Attribution, now: Timestamp) {
        self.attribution = attribution
        for (key, subscription) in subscriptions {
            if let previous = subscription.previous, previous.closes != nil {
                let closes = previous.period.end.adding(microseconds: attribution.lateGrace)
                subscriptions[key]?.previous?.closes = closes
                deadlines.push(closes, key)
            }
            if let deletedAt = subscription.deletedAt { deadlines.push(deletedAt.adding(microseconds: attribution.lateGrace), key) }
        }
        if !openHours.isEmpty { closeHours(now: now) }
        advance(to: now)
    }

    /// Reports a gauge value (or any overage owed for a given hour) for the hour `hour`: into the
    /// hour while it is open; as an item of the hour once it has closed (in this same step: its
    /// items are still pending, so merging is safe), unless its slot was used early, when it goes
    /// to the current hour.
    mutating func report(_ overage: DimensionQuantity, forHour hour: Timestamp, key: String, now: Timestamp) {
        guard let index = subscriptions.index(forKey: key) else { return }
        var subscription = subscriptions.values[index]
        let target = subscription.hour(for: overage.dimension, base: hour)
        if attribution.closing(ofHour: target) <= now && target == hour {
            makeReady(
                key: key, terms: subscription.namesAndPlan, dimension: overage.dimension, hour: hour, quantity: overage.quantity,
                now: now)
        } else {
            let base = attribution.closing(ofHour: target) <= now ? now.hourStart : hour
            addOverage(overage.dimension, overage.quantity, to: &subscription, key: key, base: base, now: now)
        }
        subscriptions.values[index] = subscription
    }

    /// Runs `body` on the subscription at `index` in place. Reading a subscription through the
    /// dictionary's getter copies all of it (retaining every string and array it holds): too slow
    /// for what runs on every record.
    mutating func inPlace<Result>(_ index: Int, _ body: (inout Subscription) -> Result) -> Result {
        body(&subscriptions.values[index])
    }

    // MARK: - Items

    /// Turns an hour's overage into ready items for that hour, for a subscription of `terms`.
    mutating func makeReady(_ hour: OpenHour, terms: Boxed<Subscription.NamesAndPlan>, key: String, now: Timestamp) {
        var tally = ReadyTally()
        makeReady(hour, terms: terms, key: key, now: now, tally: &tally)
        count(&tally, of: key)
    }

    /// `makeReady(_:terms:key:now:)` leaving the counts to `tally`.
    mutating func makeReady(
        _ hour: OpenHour, terms: Boxed<Subscription.NamesAndPlan>, key: String, now: Timestamp, tally: inout ReadyTally
    ) {
        for overage in hour.overage {
            makeReady(
                key: key, terms: terms, dimension: overage.dimension, hour: hour.start, quantity: overage.quantity, now: now,
                tally: &tally)
        }
    }

    /// Adds a ready item, merging into the slot's pending item when two sources (meters sharing a
    /// dimension, a gauge and an hour) produce the same slot in the same step.
    mutating func makeReady(
        key: String, terms: Boxed<Subscription.NamesAndPlan>, dimension: String, hour: Timestamp, quantity: Quantity, now: Timestamp
    ) {
        var tally = ReadyTally()
        makeReady(key: key, terms: terms, dimension: dimension, hour: hour, quantity: quantity, now: now, tally: &tally)
        count(&tally, of: key)
    }

    /// Adds what `tally` counted, all of it made ready for subscription `key`.
    private mutating func count(_ tally: inout ReadyTally, of key: String) {
        countNewItems(&tally, of: key)
        tally.countReportable(into: &self)
    }

    /// Adds `tally`'s new items to the pending items of `key`, whose they are, and forgets them.
    private mutating func countNewItems(_ tally: inout ReadyTally, of key: String) {
        if tally.newItems > 0 { pendingPerSubscription[key, default: 0] += tally.newItems }
        tally.newItems = 0
    }

    /// Items made ready and not counted yet: the items each hour now has with something to report
    /// (`reportableByHour`), and the new items of one subscription (`pendingPerSubscription`).
    struct ReadyTally {
        var hour: Timestamp?
        var reportable = 0
        var newItems = 0
        /// Hours other than `hour`'s, rarely any.
        var others: [Timestamp: Int] = [:]

        mutating func count(_ slotHour: Timestamp) {
            if hour == nil { hour = slotHour }
            if slotHour == hour { reportable += 1 } else { others[slotHour, default: 0] += 1 }
        }

        /// Adds the counted items to `state.reportableByHour`, and forgets them.
        mutating func countReportable(into state: inout PartitionState) {
            if let hour, reportable > 0 { state.countReportable(hour, reportable) }
            for (other, count) in others { state.countReportable(other, count) }
            hour = nil
            reportable = 0
            others = [:]
        }
    }

    /// `makeReady(key:terms:dimension:hour:quantity:now:)` leaving the counts to `tally`. A new
    /// slot's item is added with the one hash and lookup that found it missing.
    mutating func makeReady(
        key: String, terms: Boxed<Subscription.NamesAndPlan>, dimension: String, hour: Timestamp, quantity: Quantity, now: Timestamp,
        tally: inout ReadyTally
    ) {
        guard quantity > .zero else { return }
        let slot = Slot(subscription: key, dimension: dimension, hour: hour)
        var added = false
        // The slot's item, given `quantity` more: nil when it cannot take it, else whether it held
        // nothing to report before. Reads `added`, which the dictionary's default sets before.
        func merge(_ item: inout PendingItem) -> Bool? {
            if added { return true }
            guard let sum = item.quantity.adding(quantity) else { return nil }
            let wasEmpty = item.quantity == .zero
            item.quantity = sum
            return wasEmpty
        }
        func newItem() -> PendingItem {
            added = true
            return PendingItem(quantity: quantity, withdrawn: .zero, readySince: now, terms: terms)
        }
        let merged = pendingItems.update(slot, orAdd: newItem, merge)
        guard let becameReportable = merged else {
            let item = ReadyItem(
                resource: terms.value.resource, planId: terms.value.planId, dimension: dimension, effectiveStartTime: hour,
                quantity: quantity, readySince: now)
            rejected.append(RejectedItem(item: item, status: "Overflow", reason: Self.overflowReason, at: now))
            return
        }
        if becameReportable { tally.count(hour) }
        if added {
            tally.newItems += 1
        } else {
            emptied.remove(slot)
        }
        effects?.append(.ready(subscription: key, dimension: dimension, hour: hour, quantity: quantity))
    }

    /// Adds overage that bypasses the meters to a subscription's hour of `now`.
    mutating func addOverage(_ dimension: String, _ quantity: Quantity, to subscription: inout Subscription, key: String, now: Timestamp) {
        addOverage(dimension, quantity, to: &subscription, key: key, base: now.hourStart, now: now)
    }

    /// Adds overage that bypasses the meters to a subscription's hour `base` (or the next free one).
    mutating func addOverage(
        _ dimension: String, _ quantity: Quantity, to subscription: inout Subscription, key: String, base: Timestamp, now: Timestamp
    ) {
        switch subscription.addOverage(dimension, quantity, base: base) {
        case .added(let opened, _):
            if opened { openHours.insert(key) }
        case .overflow(let hour):
            let item = ReadyItem(
                resource: subscription.resource, planId: subscription.planId, dimension: dimension, effectiveStartTime: hour,
                quantity: quantity, readySince: now)
            rejected.append(RejectedItem(item: item, status: "Overflow", reason: Self.overflowReason, at: now))
        }
    }

    static let overflowReason = "the hour's total for this dimension would exceed the largest quantity (about 1.7e20); not billed"

    /// Lists a credit left unused at the end of `period` for refund.
    mutating func listRefund(_ credit: DimensionQuantity, period: BillingPeriod, key: String, now: Timestamp) {
        guard credit.quantity > .zero, let subscription = subscriptions[key] else { return }
        refunds.append(
            Refund(
                resource: subscription.resource, planId: subscription.planId, dimension: credit.dimension, periodStart: period.start,
                periodEnd: period.end, quantity: credit.quantity, at: now))
        effects?.append(.refund(subscription: key, dimension: credit.dimension, quantity: credit.quantity, periodStart: period.start))
    }

    /// Removes a settled item from the pending list and returns it; nil when it was not pending.
    mutating func settle(_ slot: Slot) -> ReadyItem? {
        guard let item = pendingItems.removeValue(forKey: slot)?.ready(slot) else { return nil }
        if item.quantity > .zero { countReportable(slot.hour, -1) }
        emptied.remove(slot)
        let left = (pendingPerSubscription[slot.subscription] ?? 1) - 1
        pendingPerSubscription[slot.subscription] = left > 0 ? left : nil
        return item
    }

    /// Forgets a deleted subscription once nothing of it is outstanding.
    mutating func removeIfFinished(_ key: String) {
        guard pendingPerSubscription[key] == nil, let index = subscriptions.index(forKey: key),
            inPlace(index, { $0.deleted && $0.openHours.isEmpty && $0.deletedAt == nil && $0.previous?.closes == nil })
        else { return }
        let subscription = subscriptions.remove(at: index).value
        effects?.append(.removed(subscription: key))
        if let id = subscription.resource.resourceId, id != key { aliases[id] = nil }
        if let uri = subscription.resource.resourceUri, uri != key { aliases[uri] = nil }
    }

    // MARK: - Names

    /// The key of the subscription named by `name` (by `resourceId` first, then `resourceUri`).
    public func key(for name: ResourceName) -> String? {
        index(for: name).map { subscriptions.keys[$0] }
    }

    /// The position of the subscription named by `name` (by `resourceId` first, then `resourceUri`),
    /// for changing it in place.
    func index(for name: ResourceName, hash: Int? = nil) -> Int? {
        if let id = name.resourceId, let index = index(forName: id, hash: hash) { return index }
        if let uri = name.resourceUri, let index = index(forName: uri) { return index }
        return nil
    }

    /// `hash`: the name's hash when known (a record's `nameHash`).
    /// A lookup with `hash` that finds nothing is made again with the name's own hash: a hint is
    /// never trusted to say a subscription is unknown.
    private func index(forName name: String, hash: Int? = nil) -> Int? {
        if let index = subscriptions.index(forKey: name, hint: hash) { return index }
        guard let key = aliases[name] else { return nil }
        return subscriptions.index(forKey: key)
    }

    /// Whether `name` is free to become a name of a subscription.
    func isUnclaimed(_ name: String) -> Bool {
        subscriptions.index(forKey: name) == nil && aliases[name] == nil
    }
}
