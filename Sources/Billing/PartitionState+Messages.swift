public import Wire

extension PartitionState {
    // MARK: - Purchases and deletions

    mutating func purchased(_ purchase: SubscriptionPurchased, now: Timestamp) {
        guard let key = key(for: purchase.resource), var subscription = subscriptions[key] else {
            guard let key = purchase.resource.resourceId ?? purchase.resource.resourceUri else { return }
            let subscription = Subscription(purchase: purchase, resource: purchase.resource, now: now)
            subscriptions[key] = subscription
            if let uri = purchase.resource.resourceUri, uri != key { aliases[uri] = key }
            renewals.push(subscription.period.end, key)
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
        if !subscription.deleted && subscription.hasTerms(of: purchase) {
            subscriptions[key] = subscription
            return
        }
        if !subscription.deleted { endTerms(of: &subscription, key: key, now: now) }
        subscription.restart(with: purchase, now: now)
        subscriptions[key] = subscription
        renewals.push(subscription.period.end, key)
        effects?.append(.purchased(subscription: key))
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
        endTerms(of: &subscription, key: key, now: now)
        subscription.deleted = true
        subscriptions[key] = subscription
        effects?.append(.deleted(subscription: key))
        removeIfFinished(key)
    }

    /// Ends a subscription's current terms at `now`: the gauge values so far join the open hour,
    /// which closes at once (when it is the current hour) so its items are ready without waiting.
    private mutating func endTerms(of subscription: inout Subscription, key: String, now: Timestamp) {
        for overage in subscription.gaugeOverages {
            addOverage(overage.dimension, overage.quantity, to: &subscription, key: key, now: now)
        }
        guard let hour = subscription.openHour, hour.start <= now.hourStart else { return }
        subscription.openHour = nil
        subscription.firstUnusedHour = hour.start.adding(microseconds: Timestamp.microsecondsPerHour)
        makeReady(hour, of: subscription, key: key, now: now)
    }

    // MARK: - Usage

    mutating func reported(_ usage: UsageReported, record: BillingRecord, now: Timestamp) {
        guard let index = index(for: usage.resource) else {
            refuse(
                record, .unknownSubscription, usage.resource,
                "no subscription \(usage.resource) in partition \(partition): usage needs its SubscriptionPurchased first")
            return
        }
        var parts: [UsagePart]? = effects == nil ? nil : []
        switch inPlace(index, { $0.report(usage.quantity, meterName: usage.meterName, now: now, parts: &parts) }) {
        case .recorded(let openedHour):
            if openedHour { openHours.insert(subscriptions.keys[index]) }
            if let parts {
                let subscription = subscriptions.values[index]
                let hour = subscription.openHour?.start ?? subscription.openHourStart(now: now)
                effects?.append(.usage(subscription: subscriptions.keys[index], meterName: usage.meterName, hour: hour, parts: parts))
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

    private mutating func refuse(_ record: BillingRecord, _ kind: UnprocessableLedger.Reason, _ resource: ResourceName, _ reason: String) {
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
        var conflicting: Quantity?
        switch status {
        case "Accepted":
            accepted += 1
        case "Duplicate":
            if let acceptedQuantity = Self.acceptedQuantity(outcome.value), acceptedQuantity != item.quantity {
                conflicts.append(Conflict(item: item, acceptedQuantity: acceptedQuantity, at: now))
                settledAs = "Conflict"
                conflicting = acceptedQuantity
            } else {
                // Same quantity (or none given): an earlier try got through.
                accepted += 1
                settledAs = "Accepted"
            }
        case "Expired":
            if var subscription = subscriptions[key] {
                // Straight into the open hour: a period's fresh included quantity must not absorb it.
                addOverage(dimension, item.quantity, to: &subscription, key: key, now: now)
                subscriptions[key] = subscription
            }
            expiredRebilled += 1
        default:
            rejected.append(RejectedItem(item: item, status: status, reason: Self.reason(outcome.value, status: status), at: now))
        }
        effects?.append(
            .settled(
                subscription: key, dimension: dimension, hour: hour, quantity: item.quantity, status: settledAs,
                acceptedQuantity: conflicting))
        removeIfFinished(key)
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
