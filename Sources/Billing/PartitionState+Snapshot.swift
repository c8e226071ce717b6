public import Wire

extension PartitionState {
    /// The `format` member of snapshots this version writes.
    public static let snapshotFormat = "metering-billing-partition/3"
    /// The format before plan changes, voids and event-time attribution: still read.
    static let singlePlanFormat = "metering-billing-partition/2"
    /// The format before unprocessable records were counted instead of listed: still read.
    static let listedUnprocessableFormat = "metering-billing-partition/1"

    /// One subscription's meters as JSON (for the aggregator's `state` op), found by either of its
    /// names; nil when the partition has no such subscription. Besides the snapshot members, each
    /// meter has its derived values (included consumed, remaining, overage, per-tier usage) and the
    /// subscription its number of pending items.
    public func subscriptionJSON(_ name: ResourceName) -> JSONValue? {
        guard let key = key(for: name), let subscription = subscriptions[key],
            case .object(var object) = subscription.json(key: key, detailed: true)
        else { return nil }
        object["pending"] = .number(String(pendingPerSubscription[key] ?? 0))
        return .object(object)
    }

    /// The whole state as JSON, in a canonical order (the same state always gives the same text).
    /// Quantities are exact decimal numbers and times ISO 8601 with microseconds, so
    /// `PartitionState(snapshot:)` gives back a state `==` to this one.
    public func snapshot() -> JSONValue {
        let subscriptionList = subscriptions.sorted { $0.key < $1.key }.map { $0.value.json(key: $0.key, detailed: false) }
        let pendingList = pendingItems.entries.sorted { lhs, rhs in
            (lhs.key.hour, lhs.key.subscription, lhs.key.dimension) < (rhs.key.hour, rhs.key.subscription, rhs.key.dimension)
        }.map { slot, pending -> JSONValue in
            let item = pending.ready(slot)
            guard case .object(var object) = item.json else { return item.json }
            object["subscription"] = .string(slot.subscription)
            return .object(object)
        }
        var attributionMembers = JSONObject(["mode": attribution == .enqueued ? "enqueued" : "event"])
        if case .event(let grace) = attribution { attributionMembers["lateGraceSeconds"] = .number(String(grace / 1_000_000)) }
        return [
            "format": .string(Self.snapshotFormat),
            "partition": .number(String(partition)),
            "lastSequence": lastSequence.map { .number(String($0)) } ?? .null,
            "time": time.map { .string($0.iso8601) } ?? .null,
            "attribution": .object(attributionMembers),
            "accepted": .number(String(accepted)),
            "expiredRebilled": .number(String(expiredRebilled)),
            "lateUsage": .number(String(lateUsage)),
            "voids": .number(String(voids)),
            "subscriptions": .array(subscriptionList),
            "pending": .array(pendingList),
            "rejected": .array(rejected.map(\.json)),
            "conflicts": .array(conflicts.map(\.json)),
            "refunds": .array(refunds.map(\.json)),
            "unprocessable": unprocessable.json,
        ]
    }

    /// Restores a state from `snapshot()`'s JSON, checking it is consistent (every name belongs to
    /// one subscription, every pending item to a held subscription and a distinct slot).
    public init(snapshot: JSONValue) throws(SnapshotError) {
        let root = try SnapshotReader.object(snapshot, "snapshot")
        let format = try SnapshotReader.string(root, "format", "snapshot")
        guard [Self.snapshotFormat, Self.singlePlanFormat, Self.listedUnprocessableFormat].contains(format) else {
            throw SnapshotError("snapshot.format: \"\(format)\" is not \"\(Self.snapshotFormat)\"")
        }
        self.init(partition: try SnapshotReader.int(root, "partition", "snapshot"))
        if let value = SnapshotReader.optional(root, "lastSequence") {
            lastSequence = try SnapshotReader.sequence(value, "snapshot.lastSequence")
        }
        if let value = SnapshotReader.optional(root, "time") {
            time = try SnapshotReader.timestamp(value, "snapshot.time")
        }
        accepted = try SnapshotReader.int(root, "accepted", "snapshot")
        expiredRebilled = try SnapshotReader.int(root, "expiredRebilled", "snapshot")
        if format == Self.snapshotFormat {
            let members = try SnapshotReader.object(try SnapshotReader.member(root, "attribution", "snapshot"), "snapshot.attribution")
            switch try SnapshotReader.string(members, "mode", "snapshot.attribution") {
            case "enqueued": attribution = .enqueued
            case "event":
                attribution = try Self.eventAttribution(
                    lateGraceSeconds: try SnapshotReader.int(members, "lateGraceSeconds", "snapshot.attribution"))
            case let mode: throw SnapshotError("snapshot.attribution.mode: unknown attribution \"\(mode)\"")
            }
            lateUsage = try SnapshotReader.int(root, "lateUsage", "snapshot")
            voids = try SnapshotReader.int(root, "voids", "snapshot")
            refunds = try SnapshotReader.array(root, "refunds", "snapshot").enumerated().map { index, value throws(SnapshotError) in
                try Refund(json: value, path: "snapshot.refunds[\(index)]")
            }
        }

        // Sized once: tables of 100,000s of entries grown one insert at a time are rehashed at
        // every doubling.
        let subscriptionList = try SnapshotReader.array(root, "subscriptions", "snapshot")
        subscriptions.reserveCapacity(subscriptionList.count)
        for (index, value) in subscriptionList.enumerated() {
            let path = "snapshot.subscriptions[\(index)]"
            let (key, subscription) = try Subscription.restore(value, path: path)
            try restore(subscription, key: key, path)
        }

        let pendingList = try SnapshotReader.array(root, "pending", "snapshot")
        for (index, value) in pendingList.enumerated() {
            let path = "snapshot.pending[\(index)]"
            let key = try SnapshotReader.string(try SnapshotReader.object(value, path), "subscription", path)
            try restore(pending: CollectionOfOne(try ReadyItem(json: value, path: path)), key: key) { _ in path }
        }

        rejected = try SnapshotReader.array(root, "rejected", "snapshot").enumerated().map { index, value throws(SnapshotError) in
            try RejectedItem(json: value, path: "snapshot.rejected[\(index)]")
        }
        conflicts = try SnapshotReader.array(root, "conflicts", "snapshot").enumerated().map { index, value throws(SnapshotError) in
            try Conflict(json: value, path: "snapshot.conflicts[\(index)]")
        }
        let ledger = try SnapshotReader.member(root, "unprocessable", "snapshot")
        if format == Self.listedUnprocessableFormat {
            unprocessable = try UnprocessableLedger(listed: ledger, path: "snapshot.unprocessable")
        } else {
            unprocessable = try UnprocessableLedger(json: ledger, path: "snapshot.unprocessable")
        }
    }
}

// MARK: - Restoring, whatever the encoding

extension PartitionState {
    /// Event-time attribution with a late grace of `seconds`, refusing a grace out of range.
    static func eventAttribution(lateGraceSeconds seconds: Int) throws(SnapshotError) -> Attribution {
        guard seconds >= 0, Int64(seconds) <= Attribution.maximumLateGrace / 1_000_000 else {
            throw SnapshotError("snapshot.attribution.lateGraceSeconds: out of range")
        }
        return .event(lateGrace: Int64(seconds) * 1_000_000)
    }

    /// Adds a restored subscription keyed `key` and rebuilds what folding keeps about it (its other
    /// names, deadlines, open hours), after the `attribution` is restored. Refuses a key that is not
    /// one of its names and a name another subscription has.
    mutating func restore(_ subscription: Subscription, key: String, _ path: @autoclosure () -> String) throws(SnapshotError) {
        guard subscription.resource.resourceId == key || subscription.resource.resourceUri == key else {
            throw SnapshotError("\(path()).key: \"\(key)\" is not one of the subscription's names")
        }
        for name in [subscription.resource.resourceId, subscription.resource.resourceUri] {
            guard let name else { continue }
            guard isUnclaimed(name) else { throw SnapshotError("\(path()): the name \"\(name)\" belongs to two subscriptions") }
            if name != key { aliases[name] = key }
        }
        var subscription = subscription
        shareWithSamePlan(&subscription)
        subscriptions[key] = subscription
        if !subscription.deleted { deadlines.push(subscription.period.end, key) }
        if let closes = subscription.previous?.closes { deadlines.push(closes, key) }
        if let deletedAt = subscription.deletedAt { deadlines.push(deletedAt.adding(microseconds: attribution.lateGrace), key) }
        if !subscription.openHours.isEmpty { openHours.insert(key) }
    }

    /// Adds restored pending items of the subscription keyed `key`, after the subscriptions;
    /// `path` names the item at a position of `items`. Refuses items of an unknown subscription, a
    /// second item for one slot, and an item of nothing that no void emptied.
    mutating func restore(pending items: some Collection<ReadyItem>, key: String, _ path: (Int) -> String) throws(SnapshotError) {
        guard !items.isEmpty else { return }
        guard let index = subscriptions.index(forKey: key) else {
            throw SnapshotError("\(path(0)).subscription: no subscription \"\(key)\"")
        }
        // Items share their subscription's box when they carry its names and plan; an item with
        // others (made ready under the plan before a change) shares the box of the item before it.
        let current = subscriptions.values[index].namesAndPlan
        var other: Boxed<Subscription.NamesAndPlan>?
        for (position, item) in items.enumerated() {
            let namesAndPlan = Subscription.NamesAndPlan(resource: item.resource, planId: item.planId)
            let terms: Boxed<Subscription.NamesAndPlan>
            if current.value == namesAndPlan {
                terms = current
            } else if let other, other.value == namesAndPlan {
                terms = other
            } else {
                terms = Boxed(namesAndPlan)
                other = terms
            }
            let slot = Slot(subscription: key, dimension: item.dimension, hour: item.effectiveStartTime)
            let pending = PendingItem(quantity: item.quantity, withdrawn: item.withdrawn, readySince: item.readySince, terms: terms)
            guard pendingItems.updateValue(pending, forKey: slot) == nil else {
                throw SnapshotError("\(path(position)): a second item for the same slot")
            }
            if item.quantity == .zero {
                guard item.withdrawn > .zero else { throw SnapshotError("\(path(position)).quantity: an item of nothing") }
                emptied.insert(slot)
            } else {
                countReportable(slot.hour, 1)
            }
        }
        pendingPerSubscription[key, default: 0] += items.count
    }
}
