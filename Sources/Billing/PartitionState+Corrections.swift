import Wire

extension PartitionState {
    // MARK: - Voids

    /// Takes a voided usage report out of the accounting (docs/BILLING.md, "Corrections"): its
    /// quantity leaves the consumption of the period it counted for; the overage that no longer
    /// follows leaves the unreported slots (the usage's own hour first, then the newest), and what
    /// the marketplace may already hold becomes a credit of the period (a refund once it ended).
    mutating func voided(_ void: UsageVoided, record: BillingRecord, now: Timestamp) {
        guard let voided = void.voided else {
            refuse(
                record, .unvoidable, ResourceName(resourceId: void.ids.first),
                "a UsageVoided record without the usage it voids (ingest attaches it); nothing was voided")
            return
        }
        let usage = voided.usage
        guard let index = index(for: usage.resource) else {
            refuse(
                record, .unknownSubscription, usage.resource,
                "void of \"\(void.ids[0])\": partition \(partition) has no subscription \(usage.resource) any more; refund by hand if its usage was billed"
            )
            return
        }
        let key = subscriptions.keys[index]
        var subscription = subscriptions.values[index]
        func unvoidable(_ why: String) {
            refuse(
                record, .unvoidable, usage.resource,
                "void of \"\(void.ids[0])\" (\(usage.quantity) of meter \"\(usage.meterName)\"): \(why)")
        }
        guard let position = subscription.meterIndex(named: usage.meterName) else {
            unvoidable(
                "plan \(subscription.planId) has no meter \"\(usage.meterName)\" (the usage was refused, or the plan changed since); refund by hand if it was billed"
            )
            return
        }
        var meter = subscription.meters[position]
        guard voided.sequence >= meter.since else {
            unvoidable(
                "the usage came before the meter counted (before the purchase or the plan change that added it), so it was not counted")
            return
        }
        guard !meter.isGauge else {
            unvoidable("a gauge report is a value, not an amount: report the right value instead (a max gauge keeps its largest)")
            return
        }
        let placed = attribution.place(timestamp: usage.timestamp, enqueued: voided.enqueuedTime).time
        if let deletion = subscription.deletion, voided.sequence > deletion.sequence,
            placed >= deletion.time || voided.enqueuedTime >= deletion.time.adding(microseconds: attribution.lateGrace)
        {
            unvoidable("the usage came after the subscription was deleted and was refused")
            return
        }
        let counted = BillingPeriod(containing: placed, subscriptionStart: subscription.subscriptionStart, interval: subscription.interval)
        let inPrevious: Bool
        if counted.index >= subscription.period.index || subscription.previous == nil {
            // Usage before the subscription's first period counted against its first period.
            inPrevious = false
        } else if counted.index == subscription.period.index - 1, meter.previous != nil {
            inPrevious = true
        } else {
            unvoidable("its billing period \(counted) ended before the last renewal; refund by hand if it was billed")
            return
        }
        var figures = inPrevious ? meter.previous! : meter.usage
        guard figures.consumed >= usage.quantity else {
            unvoidable("the period's consumption (\(figures.consumed)) is less than the quantity, so the usage was not counted")
            return
        }
        let after = figures.consumed - usage.quantity
        // What the meter billed beyond what the consumption left still calls for, highest tier
        // first, never more than the voided quantity.
        let owed = meter.owed(at: after)
        var takeBack: [DimensionQuantity] = []
        var left = usage.quantity
        for entry in figures.billed.reversed() where left > .zero {
            let excess = entry.quantity - min(entry.quantity, owed.quantity(of: entry.dimension))
            let taken = min(left, excess)
            guard taken > .zero else { continue }
            takeBack.append(DimensionQuantity(dimension: entry.dimension, quantity: taken))
            left = left - taken
        }
        var parts: [UsagePart]? = nil
        if effects != nil {
            let split = meter.parts(of: usage.quantity, after: after, overage: [], netted: [])
            parts = split.map { UsagePart(dimension: $0.dimension, quantity: $0.quantity, billed: .zero, netted: .zero) }
        }
        figures.consumed = after
        figures.voided = figures.voided.saturatingAdding(usage.quantity)
        for entry in takeBack { figures.billed.take(entry.dimension, upTo: entry.quantity) }
        if inPrevious { meter.previous = figures } else { meter.usage = figures }
        subscription.meters[position] = meter
        subscriptions.values[index] = subscription
        voids += 1

        let period = inPrevious ? subscription.previous!.period : subscription.period
        let ownHour = subscription.recordingHour(max(placed, period.start))
        for entry in takeBack {
            let withdrawn = withdraw(entry, key: key, period: period, ownHour: ownHour, now: now)
            let rest = entry.quantity - withdrawn
            if rest > .zero { credit(DimensionQuantity(dimension: entry.dimension, quantity: rest), period: period, key: key, now: now) }
            if parts != nil {
                if let at = parts!.firstIndex(where: { $0.dimension == entry.dimension }) {
                    parts![at].billed = entry.quantity
                    parts![at].netted = rest
                } else {
                    parts!.append(UsagePart(dimension: entry.dimension, quantity: .zero, billed: entry.quantity, netted: rest))
                }
            }
        }
        if let parts {
            effects?.append(
                .voided(subscription: key, meterName: usage.meterName, hour: now.hourStart, parts: parts, previousPeriod: inPrevious))
        }
    }

    /// Takes up to `overage` of its dimension out of what is not reported yet in `period`: the
    /// open hour `ownHour` first, then the other open hours and the pending items, newest first.
    /// Returns how much was taken. A pending item keeps what was taken as `withdrawn`, so that an
    /// outcome of a call made before the void is still understood.
    private mutating func withdraw(_ overage: DimensionQuantity, key: String, period: BillingPeriod, ownHour: Timestamp, now: Timestamp)
        -> Quantity
    {
        var left = overage.quantity
        let dimension = overage.dimension
        if let index = subscriptions.index(forKey: key) {
            var hours = subscriptions.values[index].openHours
            let order =
                hours.indices.filter { hours[$0].start == ownHour }
                + hours.indices.reversed().filter { hours[$0].start != ownHour && period.contains(hours[$0].start) }
            for position in order where left > .zero {
                left = left - hours[position].overage.take(dimension, upTo: left)
            }
            hours.removeAll { $0.overage.isEmpty }
            subscriptions.values[index].openHours = hours
        }
        guard left > .zero else { return overage.quantity }
        let slots = pendingItems.entries.filter {
            $0.key.subscription == key && $0.key.dimension == dimension && period.contains($0.key.hour) && $0.value.quantity > .zero
        }.map(\.key).sorted { ($0.hour == ownHour ? 1 : 0, $0.hour) > ($1.hour == ownHour ? 1 : 0, $1.hour) }
        for slot in slots where left > .zero {
            let wanted = left
            let change = pendingItems.modify(slot) { item -> (taken: Quantity, nothingLeft: Bool) in
                let taken = min(wanted, item.quantity)
                item.quantity = item.quantity - taken
                item.withdrawn = item.withdrawn.saturatingAdding(taken)
                return (taken, item.quantity == .zero)
            }
            guard let (taken, nothingLeft) = change else { continue }
            if nothingLeft {
                emptied.insert(slot)
                countReportable(slot.hour, -1)
            }
            left = left - taken
            effects?.append(.withdrawn(subscription: key, dimension: dimension, hour: slot.hour, quantity: taken))
        }
        return overage.quantity - left
    }

    /// Credits `overage` the marketplace holds to the subscription's `period`: netted against
    /// later overage while the period takes usage, listed for refund once it ended.
    mutating func credit(_ overage: DimensionQuantity, period: BillingPeriod, key: String, now: Timestamp) {
        guard overage.quantity > .zero, let index = subscriptions.index(forKey: key) else { return }
        let subscription = subscriptions.values[index]
        if period == subscription.period && (!subscription.deleted || subscription.deletedAt != nil) {
            subscriptions.values[index].credits.add(overage.dimension, overage.quantity)
        } else if let previous = subscription.previous, previous.period == period, previous.closes != nil {
            subscriptions.values[index].previous?.credits.add(overage.dimension, overage.quantity)
        } else {
            listRefund(overage, period: period, key: key, now: now)
            return
        }
        effects?.append(.credited(subscription: key, dimension: overage.dimension, quantity: overage.quantity))
    }

    /// Credits `overage` of the slot at `hour` (an outcome showing the marketplace took what a
    /// void had withdrawn) to the period the hour belongs to.
    mutating func credit(_ overage: DimensionQuantity, hour: Timestamp, key: String, now: Timestamp) {
        guard let subscription = subscriptions[key] else { return }
        let period: BillingPeriod
        if subscription.period.contains(hour) || hour >= subscription.period.end {
            period = subscription.period
        } else if let previous = subscription.previous, previous.period.contains(hour) {
            period = previous.period
        } else {
            period = BillingPeriod(containing: hour, subscriptionStart: subscription.subscriptionStart, interval: subscription.interval)
        }
        credit(overage, period: period, key: key, now: now)
    }
}
