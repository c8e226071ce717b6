public import Wire

extension PartitionState {
    // MARK: - Purchases and deletions

    mutating func purchased(_ purchase: SubscriptionPurchased, record: BillingRecord, now: Timestamp) {
        guard let key = key(for: purchase.resource), var subscription = subscriptions[key] else {
            guard let key = purchase.resource.resourceId ?? purchase.resource.resourceUri else { return }
            var subscription = Subscription(purchase: purchase, resource: purchase.resource, now: now, sequence: record.sequence)
            shareWithSamePlan(&subscription)
            subscriptions[key] = subscription
            if let uri = purchase.resource.resourceUri, uri != key { aliases[uri] = key }
            deadlines.push(subscription.period.end, key)
            effects?.append(.purchased(subscription: key))
            return
        }
        // A name the subscription did not have yet joins it, unless another subscription has it.
        if subscription.resource.resourceId == nil, let id = purchase.resource.resourceId, isUnclaimed(id) {
            subscription.resource.resourceId = id
            aliases[id] = key
        }
        if subscription.resource.resourceUri == nil, let uri = purchase.resource.resourceUri, isUnclaimed(uri) {
            subscription.resource.resourceUri = uri
            aliases[uri] = key
        }
        if subscription.deleted {
            // Bought again after a deletion: its old terms ended with the deletion (or end now, when
            // its grace still ran).
            if subscription.deletedAt != nil { endTerms(of: &subscription, key: key, now: now, early: false) }
            subscription.restart(with: purchase, now: now, sequence: record.sequence)
            shareWithSamePlan(&subscription)
            subscriptions[key] = subscription
            deadlines.push(subscription.period.end, key)
            effects?.append(.purchased(subscription: key))
            return
        }
        subscriptions[key] = subscription
        if subscription.hasTerms(of: purchase) { return }
        guard subscription.hasSchedule(of: purchase) else {
            // Starting over would wipe the period's consumption without anyone asking for it.
            refuse(
                record, .conflictingPurchase, purchase.resource,
                "subscription \(purchase.resource) is live with start \(subscription.subscriptionStart.iso8601) and renewal \(subscription.interval.rawValue); a purchase with start \(purchase.subscriptionStart.iso8601) and renewal \(purchase.renewalInterval.rawValue) is refused. Send PlanChanged to change its plan, or SubscriptionDeleted and then the new purchase to start over"
            )
            return
        }
        changePlan(key: key, to: purchase.plan, record: record, now: now)
    }

    mutating func deleted(_ resource: ResourceName, record: BillingRecord, now: Timestamp) {
        guard let key = key(for: resource), var subscription = subscriptions[key] else {
            refuse(
                record, .unknownDeletion, resource,
                "SubscriptionDeleted for \(resource), which partition \(partition) has no subscription for")
            return
        }
        // Deleting twice is a resend: the first deletion already did everything.
        guard !subscription.deleted else { return }
        subscription.deleted = true
        subscription.deletion = Subscription.Deletion(sequence: record.sequence, time: now)
        if attribution.lateGrace > 0 {
            // Usage from before the deletion may still arrive within the grace: the terms end then.
            subscription.deletedAt = now
            deadlines.push(now.adding(microseconds: attribution.lateGrace), key)
        } else {
            endTerms(of: &subscription, key: key, now: now, early: true)
        }
        subscriptions[key] = subscription
        effects?.append(.deleted(subscription: key))
        removeIfFinished(key)
    }

    /// Ends a subscription's current terms at `now`: the gauge values so far join the hour of the
    /// deletion, unused credits are listed for refund, and with `early` the hours that have begun
    /// close at once, so their items are ready without waiting.
    private mutating func endTerms(of subscription: inout Subscription, key: String, now: Timestamp, early: Bool) {
        let final = subscription.deletedAt ?? now
        subscription.deletedAt = nil
        let gauges = subscription.gaugeOverages
        let credits = subscription.credits
        subscription.credits = []
        let period = subscription.period
        subscriptions[key] = subscription
        for gauge in gauges { report(gauge, forHour: final.hourStart, key: key, now: now) }
        for credit in credits { listRefund(credit, period: period, key: key, now: now) }
        subscription = subscriptions[key]!
        guard early else { return }
        let begun = subscription.openHours.prefix { $0.start <= now.hourStart }
        guard let last = begun.last else { return }
        let closing = Array(begun)
        subscription.openHours.removeFirst(closing.count)
        subscription.firstUnusedHour = last.start.adding(microseconds: Timestamp.microsecondsPerHour)
        let terms = subscription.namesAndPlan
        for hour in closing { makeReady(hour, terms: terms, key: key, now: now) }
    }

    // MARK: - Plan changes

    mutating func changed(_ change: PlanChanged, record: BillingRecord, now: Timestamp) {
        guard let key = key(for: change.resource), let subscription = subscriptions[key] else {
            refuse(
                record, .unknownSubscription, change.resource,
                "PlanChanged for \(change.resource), which partition \(partition) has no subscription for: it needs its SubscriptionPurchased first"
            )
            return
        }
        guard !subscription.deleted else {
            refuse(record, .deletedSubscription, change.resource, "PlanChanged for subscription \(change.resource), which was deleted")
            return
        }
        guard !subscription.has(change.plan) else { return }
        changePlan(key: key, to: change.plan, record: record, now: now)
    }

    /// Puts `plan` in force for the subscription `key` at `now` (docs/BILLING.md, "Plan changes"):
    /// meters in both plans (counting the same way) keep the period's consumption under the new
    /// rule; a meter only in the old plan stops, its gauge value so far joining the hour; a meter
    /// only in the new plan starts empty; the open hours' overage of dimensions the new plan does not
    /// bill is reported at once, under the old plan.
    mutating func changePlan(key: String, to plan: Plan, record: BillingRecord, now: Timestamp) {
        guard let index = subscriptions.index(forKey: key) else { return }
        var subscription = subscriptions.values[index]
        let oldPlanId = subscription.planId
        var stopped: [DimensionQuantity] = []
        let newMeters = Subscription.meters(of: plan, since: record.sequence).map { fresh -> Meter in
            guard let old = subscription.meters.first(where: { $0.name == fresh.name }), old.rule.countsLike(fresh.rule) else {
                return fresh
            }
            var kept = old
            kept.rule = fresh.rule
            return kept
        }
        for old in subscription.meters where !newMeters.contains(where: { $0.name == old.name && $0.since == old.since }) {
            if let gauge = old.gaugeOverage { stopped.append(gauge) }
        }
        subscription.meters = newMeters
        subscription.meterNames = newMeters.map(\.name)
        shareWithSamePlan(&subscription)
        for gauge in stopped {
            if case .added(let opened, _) = subscription.addOverage(gauge.dimension, gauge.quantity, now: now), opened {
                openHours.insert(key)
            }
        }
        let billed = Set(newMeters.flatMap(\.rule.dimensions))
        var early: [(hour: Timestamp, overage: DimensionQuantity)] = []
        for position in subscription.openHours.indices {
            let hour = subscription.openHours[position].start
            for overage in subscription.openHours[position].overage where !billed.contains(overage.dimension) {
                early.append((hour, overage))
                subscription.earlyReported.append(Subscription.DimensionHour(dimension: overage.dimension, hour: hour))
            }
            subscription.openHours[position].overage.removeAll { !billed.contains($0.dimension) }
        }
        subscription.openHours.removeAll { $0.overage.isEmpty }
        subscription.planId = plan.planId
        subscription.plans.append(Subscription.PlanPeriod(planId: plan.planId, from: now))
        subscriptions.values[index] = subscription
        // The early items were metered under the plan before the change.
        let terms = Boxed(Subscription.NamesAndPlan(resource: subscription.resource, planId: oldPlanId))
        for (hour, overage) in early {
            makeReady(
                key: key, terms: terms, dimension: overage.dimension, hour: hour, quantity: overage.quantity, now: now)
        }
        effects?.append(.planChanged(subscription: key, planId: plan.planId))
    }

    // MARK: - Usage

    mutating func reported(_ usage: UsageReported, record: BillingRecord, now: Timestamp) {
        guard let index = index(for: usage.resource, hash: record.nameHint) else {
            refuse(
                record, .unknownSubscription, usage.resource,
                "no subscription \(usage.resource) in partition \(partition): usage needs its SubscriptionPurchased first")
            return
        }
        var parts: [UsagePart]? = effects == nil ? nil : (spareParts.popLast() ?? [])
        let placed = attribution.place(timestamp: usage.timestamp, enqueued: now)
        switch inPlace(index, { $0.report(usage, placed: placed.time, now: now, parts: &parts) }) {
        case .recorded(let openedHour, let hour, let previous):
            if openedHour { openHours.insert(subscriptions.keys[index]) }
            if placed.late { lateUsage += 1 }
            if let parts {
                // Read in place: `subscriptions.values[index].period` would copy the subscription.
                let period = inPlace(index) { $0.period }
                effects?.append(
                    .usage(
                        subscription: subscriptions.keys[index], meterName: usage.meterName, hour: hour, parts: parts,
                        previousPeriod: previous, late: placed.late, period: period))
            }
        case .deleted:
            refuse(record, .deletedSubscription, usage.resource, "subscription \(usage.resource) was deleted")
        case .unknownMeter:
            let subscription = subscriptions.values[index]
            let known = subscription.meters.map { "\"\($0.name)\"" }.joined(separator: ", ")
            refuse(
                record, .unknownMeter, usage.resource,
                "subscription \(usage.resource) has no meter \"\(usage.meterName)\"; plan \(subscription.planId) has \(known)")
        case .overflow:
            refuse(
                record, .overflow, usage.resource,
                "quantity \(usage.quantity) would take the totals of meter \"\(usage.meterName)\" beyond the largest quantity (about 1.7e20)"
            )
        }
    }

    mutating func refuse(_ record: BillingRecord, _ kind: UnprocessableLedger.Reason, _ resource: ResourceName, _ reason: String) {
        unprocessable.add(
            UnprocessableRecord(
                sequence: record.sequence, enqueuedTime: record.enqueuedTime, kind: kind,
                subscription: resource.resourceId ?? resource.resourceUri, reason: reason, event: record.message.billingJSON))
    }

    // MARK: - Marketplace outcomes

    /// Statuses that settle an item as refused for good (DESIGN.md §4.5).
    static let rejectingStatuses: Set<String> = [
        "ResourceNotFound", "ResourceNotActive", "ResourceNotAuthorized", "InvalidDimension", "InvalidQuantity", "BadArgument",
    ]

    /// Statuses that take an item out of the pending list; any other (throttling, a status this
    /// version does not know) leaves it pending, to be tried again.
    static let settlingStatuses = rejectingStatuses.union(["Accepted", "Duplicate", "Expired"])

    mutating func submitted(_ outcome: UsageSubmittedToAPI, now: Timestamp) {
        let status = outcome.status
        guard Self.settlingStatuses.contains(status), let dimension = outcome.dimension, let hour = outcome.effectiveStartTime?.hourStart,
            let key = key(for: outcome.resource)
        else { return }
        // No pending item: already settled (a resend after a crash) or never ours. Nothing to do,
        // which is what makes outcomes idempotent.
        guard let item = settle(Slot(subscription: key, dimension: dimension, hour: hour)) else { return }
        var settledAs = status
        var held: Quantity?
        switch status {
        case "Accepted":
            // A void may have taken part of the item back after it was sent: what the marketplace
            // took of it becomes a credit.
            let taken = item.withdrawn > .zero ? Self.withdrawnPart(outcome.quantity, of: item) : nil
            if let taken {
                held = item.quantity + taken
                credit(DimensionQuantity(dimension: dimension, quantity: taken), hour: hour, key: key, now: now)
            }
            accepted += 1
        case "Duplicate":
            let acceptedQuantity = Self.acceptedQuantity(outcome.value)
            if let acceptedQuantity, acceptedQuantity != item.quantity,
                let taken = Self.withdrawnPart(acceptedQuantity, of: item)
            {
                // An earlier call, made before a void, got through with the quantity before the void.
                held = acceptedQuantity
                credit(DimensionQuantity(dimension: dimension, quantity: taken), hour: hour, key: key, now: now)
                accepted += 1
                settledAs = "Accepted"
            } else if let acceptedQuantity, acceptedQuantity != item.quantity {
                conflicts.append(Conflict(item: item, acceptedQuantity: acceptedQuantity, at: now))
                settledAs = "Conflict"
                held = acceptedQuantity
            } else {
                // Same quantity (or none given): an earlier try got through.
                accepted += 1
                settledAs = "Accepted"
            }
        case "Expired":
            if item.quantity > .zero, var subscription = subscriptions[key] {
                // Straight into the open hour: a period's fresh included quantity must not absorb it.
                addOverage(dimension, item.quantity, to: &subscription, key: key, now: now)
                subscriptions[key] = subscription
                expiredRebilled += 1
            }
        default:
            if item.quantity > .zero {
                rejected.append(RejectedItem(item: item, status: status, reason: Self.reason(outcome.value, status: status), at: now))
            }
        }
        effects?.append(
            .settled(
                subscription: key, dimension: dimension, hour: hour, quantity: item.quantity, status: settledAs, acceptedQuantity: held))
        removeIfFinished(key)
    }

    /// How much of what a void withdrew from `item` the marketplace holds, when it says it holds
    /// `quantity` (more than the item's quantity, and at most what the item had before the void).
    static func withdrawnPart(_ quantity: Quantity?, of item: ReadyItem) -> Quantity? {
        guard let quantity, quantity > item.quantity, let before = item.quantity.adding(item.withdrawn), quantity <= before else {
            return nil
        }
        return quantity - item.quantity
    }

    /// `result.error.additionalInfo.acceptedMessage.quantity` of a `Duplicate` outcome.
    static func acceptedQuantity(_ value: JSONObject) -> Quantity? {
        let quantity = value["result"]?["error"]?["additionalInfo"]?["acceptedMessage"]?["quantity"]
        switch quantity {
        case .number(let text)?, .string(let text)?:
            // A negative quantity is no quantity the marketplace can hold: read as none given.
            return Quantity(exactly: text).flatMap { $0.isNegative ? nil : $0 }
        default: return nil
        }
    }

    /// The marketplace's explanation: `result.error.message` and each detail's `target: message`.
    public static func reason(_ value: JSONObject, status: String) -> String {
        guard let error = value["result"]?["error"] else { return status }
        var parts: [String] = []
        if let message = error["message"]?.stringValue { parts.append(message) }
        for detail in error["details"]?.arrayValue ?? [] {
            guard let message = detail["message"]?.stringValue else { continue }
            parts.append(detail["target"]?.stringValue.map { "\($0): \(message)" } ?? message)
        }
        return parts.isEmpty ? status : parts.joined(separator: " ")
    }

    // MARK: - Operator commands

    mutating func remove(_ removal: RemoveUnprocessedMessages) {
        guard removal.partition == partition else { return }
        unprocessable.remove(removal.selection)
    }
}
