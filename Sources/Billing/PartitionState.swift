public import Wire

/// The billing state of one partition: the result of folding its records in order (DESIGN.md §4).
///
/// Pure: no I/O and no clocks. The only time is the records' enqueued time, so folding the same
/// records always gives an equal state, and `snapshot()` / `init(snapshot:)` round-trip exactly.
///
/// Before any record is applied the partition clock advances to its enqueued time: every open hour
/// that has ended becomes ready-to-report items, then every subscription whose billing period has
/// ended renews (gauge meters report their period's value, included quantities refill). Both are
/// driven by indexes (the subscriptions with an open hour, a heap of renewal deadlines), so a record
/// costs the same with 100,000 subscriptions as with one.
///
/// Choices where the rules leave room:
/// - A purchase for a live subscription with the same terms (plan, interval, start) is a resend
///   and changes nothing (it may add a name). With different terms, the old terms end as if the
///   subscription were deleted (the open hour and the gauge values so far become ready now), then
///   the subscription starts over on the new terms with empty meters for the period containing the
///   record's time, counted from the new `subscriptionStart`. A purchase for a deleted subscription
///   that is still held (items outstanding) revives it the same way.
/// - A deleted subscription is removed once it has no pending item and no open hour; outcomes for
///   its items apply until then. Outcomes that match no pending item (already settled, a resend
///   after a crash, a removed subscription) change nothing.
/// - Usage closed early (deletion, new terms) uses its hour's slots; later overage of the same hour
///   for that subscription goes to the next hour, since the marketplace keeps the first write.
/// - Records whose sequence is not after `lastSequence` are ignored, so re-reading an overlap of
///   the log after a restart never counts twice. The clock never moves backwards.
public struct PartitionState: Sendable, Equatable {
    /// The partition whose records this state folds.
    public let partition: Int
    /// The sequence number of the last applied record.
    public internal(set) var lastSequence: UInt64?
    /// The partition clock: the enqueued time of the last applied record.
    public internal(set) var time: Timestamp?
    /// Items settled as `Accepted`, or as `Duplicate` with the same quantity.
    public internal(set) var accepted = 0
    /// Items the marketplace answered `Expired`, billed again in the open hour.
    public internal(set) var expiredRebilled = 0
    /// Items the marketplace refused for good, oldest first.
    public internal(set) var rejected: [RejectedItem] = []
    /// Items whose slot the marketplace holds with another quantity, oldest first.
    public internal(set) var conflicts: [Conflict] = []
    /// Records that could not be billed: counts per subscription and reason, the latest in full.
    public internal(set) var unprocessable = UnprocessableLedger()

    /// Subscriptions by key (the first name they were bought under).
    var subscriptions: [String: Subscription] = [:]
    /// Every other name of a subscription, to its key.
    var aliases: [String: String] = [:]
    /// Ready items not yet settled, one per slot.
    var pendingItems: [Slot: ReadyItem] = [:]
    /// Pending items per subscription key (no entry for none), so removal needs no scan.
    var pendingPerSubscription: [String: Int] = [:]

    /// When not nil, every fold appends what it did (`BillingEffect`) here, for read models; the
    /// reader empties it. Not part of the state: left out of `==` and of snapshots.
    public var effects: [BillingEffect]?

    // Derived indexes: rebuilt on restore, left out of `==` because their layout depends on history.
    /// The next renewal deadline of every live subscription (stale entries are skipped).
    var renewals = DeadlineQueue()
    /// Keys of subscriptions that may have an open hour.
    var openHours: Set<String> = []

    /// A marketplace slot of one subscription: the marketplace accepts one item per slot.
    struct Slot: Hashable, Sendable {
        var subscription: String
        var dimension: String
        var hour: Timestamp
    }

    /// An empty partition `partition`.
    public init(partition: Int) {
        self.partition = partition
    }

    /// Equal billing meaning: the derived indexes (renewal heap, open-hour set), whose layout
    /// depends on history, are left out.
    public static func == (lhs: PartitionState, rhs: PartitionState) -> Bool {
        lhs.partition == rhs.partition && lhs.lastSequence == rhs.lastSequence && lhs.time == rhs.time
            && lhs.accepted == rhs.accepted && lhs.expiredRebilled == rhs.expiredRebilled && lhs.rejected == rhs.rejected
            && lhs.conflicts == rhs.conflicts && lhs.unprocessable == rhs.unprocessable
            && lhs.subscriptions == rhs.subscriptions && lhs.aliases == rhs.aliases && lhs.pendingItems == rhs.pendingItems
            && lhs.pendingPerSubscription == rhs.pendingPerSubscription
    }

    /// Items ready to report and not yet settled, oldest first (by hour, then resource, then dimension).
    public var pending: [ReadyItem] {
        pendingItems.values.map { ($0, $0.resource.description) }.sorted(by: ReadyItem.reportingOrder).map(\.item)
    }

    /// The number of pending items, without sorting them.
    public var pendingCount: Int { pendingItems.count }

    /// Subscriptions held, including deleted ones whose items are not all settled yet.
    public var subscriptionCount: Int { subscriptions.count }

    /// Folds `record` into the state: advances the clock to its enqueued time, then applies its message.
    public mutating func apply(_ record: BillingRecord) {
        if let lastSequence, record.sequence <= lastSequence { return }
        let now = max(record.enqueuedTime, time ?? record.enqueuedTime)
        advance(to: now)
        switch record.message.body {
        case .subscriptionPurchased(let purchase):
            purchased(purchase, now: now)
        case .usageReported(let usage):
            reported(usage, record: record, now: now)
        case .subscriptionDeleted(let resource):
            deleted(resource, record: record, now: now)
        case .usageSubmittedToAPI(let outcome):
            submitted(outcome, now: now)
        case .removeUnprocessedMessages(let removal):
            remove(removal)
        case .ping:
            break
        }
        lastSequence = record.sequence
        time = now
    }

    // MARK: - Time

    /// Closes the open hours that ended before `now`, then renews the periods that ended.
    mutating func advance(to now: Timestamp) {
        if let time, now.hourStart > time.hourStart, !openHours.isEmpty {
            closeHours(now: now)
        }
        while let next = renewals.first, next.deadline <= now {
            renewals.removeFirst()
            renew(next.key, deadline: next.deadline, now: now)
        }
    }

    private mutating func closeHours(now: Timestamp) {
        var stillOpen: Set<String> = []
        for key in openHours {
            guard let index = subscriptions.index(forKey: key) else { continue }
            switch inPlace(index, { $0.closeOpenHour(now: now) }) {
            case .none:
                continue
            case .running:
                stillOpen.insert(key)
            case .closed(let hour, let resource, let planId, let deleted):
                for overage in hour.overage {
                    makeReady(
                        key: key, resource: resource, planId: planId, dimension: overage.dimension, hour: hour.start,
                        quantity: overage.quantity, now: now)
                }
                if deleted { removeIfFinished(key) }
            }
        }
        openHours = stillOpen
    }

    private mutating func renew(_ key: String, deadline: Timestamp, now: Timestamp) {
        guard let index = subscriptions.index(forKey: key),
            let renewal = inPlace(index, { $0.renew(due: deadline, now: now) })
        else { return }
        renewals.push(renewal.nextDeadline, key)
        effects?.append(.renewed(subscription: key))
        guard !renewal.gauges.isEmpty else { return }
        // Gauge meters report the ended period's value for its last hour. That hour closed in this
        // same step (the clock just passed the period's end), so merging into its items is safe;
        // unless an early close already used it, then the value goes to the open hour.
        let lastHour = deadline.adding(microseconds: -1).hourStart
        var subscription = subscriptions.values[index]
        for overage in renewal.gauges {
            if subscription.firstUnusedHour.map({ lastHour >= $0 }) ?? true {
                makeReady(
                    key: key, resource: subscription.resource, planId: subscription.planId, dimension: overage.dimension,
                    hour: lastHour, quantity: overage.quantity, now: now)
            } else {
                addOverage(overage.dimension, overage.quantity, to: &subscription, key: key, now: now)
            }
        }
        subscriptions.values[index] = subscription
    }

    /// Runs `body` on the subscription at `index` in place. Reading a subscription through the
    /// dictionary's getter copies all of it (retaining every string and array it holds): too slow
    /// for what runs on every record.
    mutating func inPlace<Result>(_ index: [String: Subscription].Index, _ body: (inout Subscription) -> Result) -> Result {
        body(&subscriptions.values[index])
    }

    // MARK: - Items

    /// Turns an hour's overage into ready items for that hour.
    mutating func makeReady(_ hour: OpenHour, of subscription: Subscription, key: String, now: Timestamp) {
        for overage in hour.overage {
            makeReady(
                key: key, resource: subscription.resource, planId: subscription.planId, dimension: overage.dimension,
                hour: hour.start, quantity: overage.quantity, now: now)
        }
    }

    /// Adds a ready item, merging into the slot's pending item when two sources (meters sharing a
    /// dimension, a gauge and an hour) produce the same slot in the same step.
    mutating func makeReady(
        key: String, resource: ResourceName, planId: String, dimension: String, hour: Timestamp, quantity: Quantity, now: Timestamp
    ) {
        guard quantity > .zero else { return }
        let slot = Slot(subscription: key, dimension: dimension, hour: hour)
        if let existing = pendingItems.index(forKey: slot) {
            guard let sum = pendingItems.values[existing].quantity.adding(quantity) else {
                let item = ReadyItem(
                    resource: resource, planId: planId, dimension: dimension, effectiveStartTime: hour, quantity: quantity, readySince: now)
                rejected.append(RejectedItem(item: item, status: "Overflow", reason: Self.overflowReason, at: now))
                return
            }
            pendingItems.values[existing].quantity = sum
            effects?.append(.ready(subscription: key, dimension: dimension, hour: hour, quantity: quantity))
        } else {
            pendingItems[slot] = ReadyItem(
                resource: resource, planId: planId, dimension: dimension, effectiveStartTime: hour, quantity: quantity, readySince: now)
            pendingPerSubscription[key, default: 0] += 1
            effects?.append(.ready(subscription: key, dimension: dimension, hour: hour, quantity: quantity))
        }
    }

    /// Adds overage that bypasses the meters to a subscription's open hour.
    mutating func addOverage(_ dimension: String, _ quantity: Quantity, to subscription: inout Subscription, key: String, now: Timestamp) {
        switch subscription.addOverage(dimension, quantity, now: now) {
        case .added(let opened):
            if opened { openHours.insert(key) }
        case .overflow:
            let item = ReadyItem(
                resource: subscription.resource, planId: subscription.planId, dimension: dimension,
                effectiveStartTime: subscription.openHourStart(now: now), quantity: quantity, readySince: now)
            rejected.append(RejectedItem(item: item, status: "Overflow", reason: Self.overflowReason, at: now))
        }
    }

    static let overflowReason = "the hour's total for this dimension would exceed the largest quantity (about 1.7e20); not billed"

    /// Removes a settled item from the pending list and returns it; nil when it was not pending.
    mutating func settle(_ slot: Slot) -> ReadyItem? {
        guard let item = pendingItems.removeValue(forKey: slot) else { return nil }
        let left = (pendingPerSubscription[slot.subscription] ?? 1) - 1
        pendingPerSubscription[slot.subscription] = left > 0 ? left : nil
        return item
    }

    /// Forgets a deleted subscription once nothing of it is outstanding.
    mutating func removeIfFinished(_ key: String) {
        guard pendingPerSubscription[key] == nil, let index = subscriptions.index(forKey: key),
            inPlace(index, { $0.deleted && $0.openHour == nil })
        else { return }
        let subscription = subscriptions.remove(at: index).value
        effects?.append(.removed(subscription: key))
        if let id = subscription.resource.resourceId, id != key { aliases[id] = nil }
        if let uri = subscription.resource.resourceUri, uri != key { aliases[uri] = nil }
    }

    // MARK: - Names

    /// The key of the subscription named by `name` (by `resourceId` first, then `resourceUri`).
    func key(for name: ResourceName) -> String? {
        index(for: name).map { subscriptions.keys[$0] }
    }

    /// The position of the subscription named by `name` (by `resourceId` first, then `resourceUri`),
    /// for changing it in place.
    func index(for name: ResourceName) -> [String: Subscription].Index? {
        if let id = name.resourceId, let index = index(forName: id) { return index }
        if let uri = name.resourceUri, let index = index(forName: uri) { return index }
        return nil
    }

    private func index(forName name: String) -> [String: Subscription].Index? {
        if let index = subscriptions.index(forKey: name) { return index }
        guard let key = aliases[name] else { return nil }
        return subscriptions.index(forKey: key)
    }

    /// Whether `name` is free to become a name of a subscription.
    func isUnclaimed(_ name: String) -> Bool {
        subscriptions.index(forKey: name) == nil && aliases[name] == nil
    }
}
