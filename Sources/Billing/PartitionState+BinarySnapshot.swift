package import Wire

/// The billing state in a compact binary form, for a restart that must be fast: what `snapshot()`
/// holds, with the same meaning and the same checks on reading, without a JSON tree to build.
///
/// Layout (`ByteWriter`): the magic `MBPS` and a version byte, the string table, then the partition,
/// its counters and clock, the attribution, the subscriptions by key, the pending items (their
/// number, then per subscription its key and its items), rejected items, conflicts, refunds and
/// the unprocessable ledger. Integers are LEB128 varints (zigzag when
/// signed), times 8 bytes of microseconds, quantities the 16 bytes of their units, all little-endian;
/// every string is an index into the table. A list is its count, then its elements; an optional
/// value a flag byte, then the value.
extension PartitionState {
    /// The first bytes of a binary snapshot: `MBPS` and the version of the layout.
    static let binaryMagic: [UInt8] = Array("MBPS".utf8) + [1]

    /// The whole state in the binary form, in a canonical order (the same state always gives the
    /// same bytes). `PartitionState(binarySnapshot:)` gives back a state `==` to this one, whose
    /// `snapshot()` is this one's.
    public func binarySnapshot() -> [UInt8] {
        var out = ByteWriter(capacity: subscriptions.count * 512 + pendingItems.count * 64)
        out.int(partition)
        out.optional(lastSequence) { $0.varint($1) }
        out.optional(time) { $0.timestamp($1) }
        switch attribution {
        case .enqueued: out.byte(0)
        case .event(let grace):
            out.byte(1)
            out.int(Int(grace / 1_000_000))
        }
        for counter in [accepted, expiredRebilled, lateUsage, voids] { out.int(counter) }
        out.list(subscriptions.sorted { $0.key < $1.key }) { out, entry in
            out.string(entry.key)
            entry.value.write(to: &out)
        }
        // Grouped by subscription: a restore looks each subscription up once, not once per item.
        var groups: [(key: String, items: [ReadyItem])] = []
        for (slot, pending) in pendingItems.entries.sorted(by: {
            ($0.key.subscription, $0.key.hour, $0.key.dimension) < ($1.key.subscription, $1.key.hour, $1.key.dimension)
        }) {
            let item = pending.ready(slot)
            if groups.last?.key == slot.subscription {
                groups[groups.count - 1].items.append(item)
            } else {
                groups.append((slot.subscription, [item]))
            }
        }
        out.count(pendingItems.count)
        out.list(groups) { out, group in
            out.string(group.key)
            out.list(group.items) { $0.item($1) }
        }
        out.list(rejected) { out, rejection in
            out.item(rejection.item)
            out.string(rejection.status)
            out.string(rejection.reason)
            out.timestamp(rejection.at)
        }
        out.list(conflicts) { out, conflict in
            out.item(conflict.item)
            out.quantity(conflict.acceptedQuantity)
            out.timestamp(conflict.at)
        }
        out.list(refunds) { out, refund in
            out.resource(refund.resource)
            out.string(refund.planId)
            out.string(refund.dimension)
            out.timestamp(refund.periodStart)
            out.timestamp(refund.periodEnd)
            out.quantity(refund.quantity)
            out.timestamp(refund.at)
        }
        unprocessable.write(to: &out)
        return out.finished(magic: Self.binaryMagic)
    }

    /// Restores a state from `binarySnapshot()`'s bytes, with every check `init(snapshot:)` makes
    /// (every name belongs to one subscription, every pending item to a held subscription and a
    /// distinct slot, ...). Bytes that are damaged, cut short or followed by more throw.
    public init(binarySnapshot bytes: [UInt8]) throws(SnapshotError) {
        try self.init(binarySnapshot: bytes[...])
    }

    /// Restores a state from `binarySnapshot()`'s bytes, found inside a larger buffer.
    public init(binarySnapshot bytes: ArraySlice<UInt8>) throws(SnapshotError) {
        var input = try ByteReader(bytes, magic: Self.binaryMagic)
        self.init(partition: try input.int())
        lastSequence = try input.optional { input throws(SnapshotError) in try input.varint() }
        time = try input.optional { input throws(SnapshotError) in try input.timestamp() }
        switch try input.byte() {
        case 0: attribution = .enqueued
        case 1: attribution = try Self.eventAttribution(lateGraceSeconds: try input.int())
        case let mode: throw input.failure("an unknown attribution \(mode)")
        }
        accepted = try input.int()
        expiredRebilled = try input.int()
        lateUsage = try input.int()
        voids = try input.int()

        let subscriptionCount = try input.count(minimumBytes: Subscription.minimumBinaryBytes)
        subscriptions.reserveCapacity(subscriptionCount)
        for index in 0..<subscriptionCount {
            let key = try input.name()
            try restore(try Subscription(binary: &input, "snapshot.subscriptions[\(index)]"), key: key, "snapshot.subscriptions[\(index)]")
        }
        let pendingCount = try input.count(minimumBytes: ReadyItem.minimumBinaryBytes)
        let groupCount = try input.count(minimumBytes: 2 + ReadyItem.minimumBinaryBytes)
        for group in 0..<groupCount {
            let key = try input.name()
            let items = try input.list(minimumBytes: ReadyItem.minimumBinaryBytes) { input, position throws(SnapshotError) in
                try input.item("snapshot.pending[\(group)][\(position)]")
            }
            try restore(pending: items, key: key) { "snapshot.pending[\(group)][\($0)]" }
        }
        guard pendingItems.count == pendingCount else {
            throw input.failure("\(pendingItems.count) pending items where \(pendingCount) were counted")
        }
        rejected = try input.list(minimumBytes: ReadyItem.minimumBinaryBytes + 10) { input, index throws(SnapshotError) in
            RejectedItem(
                item: try input.item("snapshot.rejected[\(index)].item"), status: try input.name(), reason: try input.string(),
                at: try input.timestamp())
        }
        conflicts = try input.list(minimumBytes: ReadyItem.minimumBinaryBytes + 24) { input, index throws(SnapshotError) in
            Conflict(
                item: try input.item("snapshot.conflicts[\(index)].item"), acceptedQuantity: try input.quantity(), at: try input.timestamp()
            )
        }
        refunds = try input.list(minimumBytes: 44) { input, index throws(SnapshotError) in
            Refund(
                resource: try input.resource("snapshot.refunds[\(index)]"), planId: try input.name(), dimension: try input.name(),
                periodStart: try input.timestamp(), periodEnd: try input.timestamp(), quantity: try input.quantity(),
                at: try input.timestamp())
        }
        unprocessable = try UnprocessableLedger(binary: &input)
        guard input.isAtEnd else { throw input.failure("more bytes after the state") }
    }
}

extension Subscription {
    /// The fewest bytes a subscription takes, with its key: what a count of them is checked against.
    static let minimumBinaryBytes = 25

    func write(to out: inout ByteWriter) {
        out.resource(resource)
        out.string(planId)
        out.byte(UInt8(RenewalInterval.allCases.firstIndex(of: interval) ?? 0))
        out.timestamp(subscriptionStart)
        out.int(period.index)
        out.flag(deleted)
        out.optional(deletedAt) { $0.timestamp($1) }
        out.optional(deletion) { out, mark in
            out.varint(mark.sequence)
            out.timestamp(mark.time)
        }
        out.varint(since)
        out.list(plans) { out, plan in
            out.string(plan.planId)
            out.timestamp(plan.from)
        }
        out.optional(firstUnusedHour) { $0.timestamp($1) }
        out.list(earlyReported) { out, slot in
            out.string(slot.dimension)
            out.timestamp(slot.hour)
        }
        out.list(meters) { $1.write(to: &$0) }
        out.list(openHours) { out, hour in
            out.timestamp(hour.start)
            out.quantities(hour.overage)
        }
        out.quantities(credits)
        out.optional(previous) { out, previous in
            out.int(previous.period.index)
            out.quantities(previous.credits)
            out.optional(previous.closes) { $0.timestamp($1) }
        }
    }

    /// Reads what `write(to:)` wrote, with the checks of `restore(_:path:)`.
    init(binary input: inout ByteReader, _ path: @autoclosure () -> String) throws(SnapshotError) {
        let resource = try input.resource(path())
        let planId = try input.name()
        let interval = try input.choice(RenewalInterval.allCases, "renewal interval")
        let start = try input.timestamp()
        let period = try Self.restoredPeriod(index: try input.int(), start: start, interval: interval, "\(path()).period")
        let deleted = try input.flag()
        let deletedAt = try input.optional { input throws(SnapshotError) in try input.timestamp() }
        let deletion = try input.optional { input throws(SnapshotError) in
            Deletion(sequence: try input.varint(), time: try input.timestamp())
        }
        let since = try input.varint()
        let plans = try input.list(minimumBytes: 9) { input, _ throws(SnapshotError) in
            PlanPeriod(planId: try input.name(), from: try input.timestamp())
        }
        guard !plans.isEmpty else { throw SnapshotError("\(path()).plans: expected a non-empty array") }
        let firstUnusedHour = try input.optional { input throws(SnapshotError) in try input.timestamp() }
        let earlyReported = try input.list(minimumBytes: 9) { input, _ throws(SnapshotError) in
            DimensionHour(dimension: try input.name(), hour: try input.timestamp())
        }
        let meters = try input.list(minimumBytes: Meter.minimumBinaryBytes) { input, position throws(SnapshotError) in
            try Meter(binary: &input, "\(path()).meters[\(position)]")
        }
        self.init(
            resource: resource, planId: planId, interval: interval, subscriptionStart: start, period: period, meters: meters, plans: plans)
        self.deleted = deleted
        self.deletedAt = deletedAt
        self.deletion = deletion
        self.since = since
        self.firstUnusedHour = firstUnusedHour
        self.earlyReported = earlyReported
        let hours = try input.count(minimumBytes: 9)
        openHours.reserveCapacity(hours)
        for position in 0..<hours {
            var hour = OpenHour(start: try input.timestamp())
            hour.overage = try input.quantities("\(path()).openHours[\(position)].overage")
            try appendRestored(hour, "\(path()).openHours[\(position)]")
        }
        credits = try input.quantities("\(path()).credits")
        previous = try input.optional { input throws(SnapshotError) in
            var restored = PreviousPeriod(
                period: try Self.restoredPeriod(index: try input.int(), start: start, interval: interval, "\(path()).previous.period"))
            restored.credits = try input.quantities("\(path()).previous.credits")
            restored.closes = try input.optional { input throws(SnapshotError) in try input.timestamp() }
            return restored
        }
    }
}

extension Meter {
    /// The fewest bytes a meter takes.
    static let minimumBinaryBytes = 24

    /// The rule, the consumption as `json(detailed: false)` holds it (a gauge's value, the others'
    /// consumption), the first sequence, and the period's and the previous period's usage.
    func write(to out: inout ByteWriter) {
        out.string(name)
        switch rule {
        case .sum(let dimension, let included):
            out.byte(0)
            out.string(dimension)
            out.included(included)
            out.quantity(consumed)
        case .gauge(let dimension, let included, let aggregation):
            out.byte(1)
            out.string(dimension)
            out.included(included)
            out.byte(aggregation == .max ? 0 : 1)
            out.optional(gaugeValue) { $0.quantity($1) }
        case .waterfall(let tiers):
            out.byte(2)
            out.list(tiers) { out, tier in
                out.string(tier.dimension)
                out.quantity(tier.threshold)
            }
            out.quantity(consumed)
        }
        out.varint(since)
        out.quantities(usage.billed)
        out.quantity(usage.voided)
        let gauge = isGauge
        out.optional(previous) { out, previous in
            if gauge {
                out.optional(previous.gaugeValue) { $0.quantity($1) }
            } else {
                out.quantity(previous.consumed)
            }
            out.quantities(previous.billed)
            out.quantity(previous.voided)
        }
    }

    /// Reads what `write(to:)` wrote, with the checks of `init(json:path:)`.
    init(binary input: inout ByteReader, _ path: @autoclosure () -> String) throws(SnapshotError) {
        let name = try input.name()
        switch try input.byte() {
        case 0:
            self.init(name: name, rule: .sum(dimension: try input.name(), included: try input.included()))
            consumed = try input.quantity()
        case 1:
            let dimension = try input.name()
            let included = try input.included()
            let aggregation = try input.choice([Aggregation.max, .last], "gauge aggregation")
            self.init(name: name, rule: .gauge(dimension: dimension, included: included, aggregation: aggregation))
            gaugeValue = try input.optional { input throws(SnapshotError) in try input.quantity() }
        case 2:
            let thresholds = try input.list(minimumBytes: 17) { input, _ throws(SnapshotError) in
                (dimension: try input.name(), threshold: try input.quantity())
            }
            self.init(name: name, rule: .waterfall(tiers: try Self.restoredTiers(thresholds, path())))
            consumed = try input.quantity()
        case let rule:
            throw input.failure("an unknown meter rule \(rule)")
        }
        since = try input.varint()
        usage.billed = try input.quantities("\(path()).billed")
        usage.voided = try input.quantity()
        let gauge = isGauge
        previous = try input.optional { input throws(SnapshotError) in
            var restored = MeterUsage()
            if gauge {
                restored.gaugeValue = try input.optional { input throws(SnapshotError) in try input.quantity() }
            } else {
                restored.consumed = try input.quantity()
            }
            restored.billed = try input.quantities("\(path()).previous.billed")
            restored.voided = try input.quantity()
            return restored
        }
    }
}

extension ReadyItem {
    /// The fewest bytes an item takes.
    static let minimumBinaryBytes = 52
}

extension UnprocessableLedger {
    func write(to out: inout ByteWriter) {
        out.int(count)
        out.varint(completeFrom)
        out.list(groups) { out, group in
            out.optional(group.subscription) { $0.string($1) }
            out.byte(UInt8(Reason.allCases.firstIndex(of: group.reason) ?? 0))
            out.int(group.count)
            out.varint(group.firstSequence)
            out.varint(group.lastSequence)
            out.string(group.latestReason)
        }
        out.list(examples) { out, record in
            out.varint(record.sequence)
            out.timestamp(record.enqueuedTime)
            out.string(record.reason)
            out.byte(UInt8(Reason.allCases.firstIndex(of: record.kind) ?? 0))
            out.optional(record.subscription) { $0.string($1) }
            out.optional(record.event) { $0.string(JSONWriter.string($1)) }
        }
    }

    /// Reads what `write(to:)` wrote, with the checks of `init(json:path:)`.
    init(binary input: inout ByteReader) throws(SnapshotError) {
        self.init()
        let total = try input.int()
        completeFrom = try input.varint()
        let groupCount = try input.count(minimumBytes: 6)
        for index in 0..<groupCount {
            let group = Group(
                subscription: try input.optional { input throws(SnapshotError) in try input.string() },
                reason: try input.choice(Reason.allCases, "unprocessable reason"), count: try input.int(),
                firstSequence: try input.varint(), lastSequence: try input.varint(), latestReason: try input.string())
            try restore(group, "snapshot.unprocessable.groups[\(index)]")
        }
        examples = try input.list(minimumBytes: 13) { input, index throws(SnapshotError) in
            let sequence = try input.varint()
            let enqueuedTime = try input.timestamp()
            let reason = try input.string()
            let kind = try input.choice(Reason.allCases, "unprocessable reason")
            let subscription = try input.optional { input throws(SnapshotError) in try input.string() }
            let event = try input.optional { input throws(SnapshotError) in
                do {
                    return try JSONParser.parse(try input.string(), maximumDepth: 512)
                } catch {
                    throw SnapshotError("snapshot.unprocessable.examples[\(index)].event: \(error)")
                }
            }
            return UnprocessableRecord(
                sequence: sequence, enqueuedTime: enqueuedTime, kind: kind, subscription: subscription, reason: reason, event: event)
        }
        try checkRestored(count: total, "snapshot.unprocessable")
    }
}

// MARK: - The billing types' pieces

extension ByteWriter {
    /// Which names are there (bit 0 `resourceId`, bit 1 `resourceUri`), then each.
    package mutating func resource(_ name: ResourceName) {
        byte((name.resourceId == nil ? 0 : 1) | (name.resourceUri == nil ? 0 : 2))
        if let id = name.resourceId { string(id) }
        if let uri = name.resourceUri { string(uri) }
    }

    /// 0 for infinite, or 1 and the quantity.
    mutating func included(_ included: IncludedQuantity) {
        switch included {
        case .infinite: byte(0)
        case .finite(let quantity):
            byte(1)
            self.quantity(quantity)
        }
    }

    mutating func quantities(_ list: [DimensionQuantity]) {
        self.list(list) { out, entry in
            out.string(entry.dimension)
            out.quantity(entry.quantity)
        }
    }

    mutating func item(_ item: ReadyItem) {
        resource(item.resource)
        string(item.planId)
        string(item.dimension)
        timestamp(item.effectiveStartTime)
        quantity(item.quantity)
        timestamp(item.readySince)
        quantity(item.withdrawn)
    }
}

extension ByteReader {
    package mutating func resource(_ path: @autoclosure () -> String) throws(SnapshotError) -> ResourceName {
        let names = try byte()
        guard names <= 3 else { throw failure("names marked \(names)", at: nil) }
        let id = names & 1 == 0 ? nil : try string()
        let uri = names & 2 == 0 ? nil : try string()
        return try SnapshotReader.named(ResourceName(resourceId: id, resourceUri: uri), path())
    }

    mutating func included() throws(SnapshotError) -> IncludedQuantity {
        try flag() ? .finite(try quantity()) : .infinite
    }

    /// Quantities of distinct dimensions, each positive.
    mutating func quantities(_ path: @autoclosure () -> String) throws(SnapshotError) -> [DimensionQuantity] {
        let count = try count(minimumBytes: 17)
        var list: [DimensionQuantity] = []
        list.reserveCapacity(count)
        for position in 0..<count {
            try DimensionQuantity.append(
                DimensionQuantity(dimension: try name(), quantity: try quantity()), to: &list, "\(path())[\(position)]")
        }
        return list
    }

    mutating func item(_ path: @autoclosure () -> String) throws(SnapshotError) -> ReadyItem {
        ReadyItem(
            resource: try resource(path()), planId: try name(), dimension: try name(), effectiveStartTime: try timestamp(),
            quantity: try quantity(), readySince: try timestamp(), withdrawn: try quantity())
    }
}
