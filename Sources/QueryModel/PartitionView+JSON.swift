import Billing
public import Wire

extension PartitionView {
    // MARK: - Answers

    /// The run-rate of the subscription named by `name` as DESIGN.md §3.4 shapes it, or nil when
    /// this partition has no such subscription.
    public func runRateJSON(_ name: ResourceName) -> JSONObject? {
        guard let runRate = state.runRate(name) else { return nil }
        var members: [JSONObject.Member] = [.init("ok", true)]
        members += runRate.resource.members
        members += [
            .init("planId", .string(runRate.planId)), .init("partition", .number(String(partition))),
            .init("asOf", .string(runRate.asOf.iso8601)),
            .init(
                "period",
                .object(
                    JSONObject([
                        .init("start", .string(runRate.period.start.iso8601)), .init("end", .string(runRate.period.end.iso8601)),
                        .init("index", .number(String(runRate.period.index))),
                    ]))),
            .init("deleted", .bool(runRate.deleted)),
        ]
        let slots = ledger[runRate.key] ?? [:]
        members.append(.init("meters", .array(runRate.meters.map { .object(meterJSON($0, slots: slots, period: runRate.period)) })))
        return JSONObject(members)
    }

    private func meterJSON(_ meter: MeterRunRate, slots: [Slot: SlotStatus], period: BillingPeriod) -> JSONObject {
        var members: [JSONObject.Member] = [
            .init("meterName", .string(meter.meterName)), .init("kind", .string(meter.kind.rawValue)),
            .init("dimension", .string(meter.dimension)), .init("included", meter.included.json), .init("consumed", meter.consumed.json),
            .init("remaining", meter.remaining.json), .init("overage", meter.overage.json),
            .init("openHourOverage", meter.openHourOverage.json), .init("projected", meter.projected.json),
        ]
        if meter.kind == .waterfall {
            members.append(
                .init(
                    "tiers",
                    .array(
                        meter.tiers.map { tier in
                            .object(
                                JSONObject([
                                    .init("dimension", .string(tier.dimension)), .init("threshold", tier.threshold.json),
                                    .init("from", tier.from.json), .init("consumed", tier.consumed.json),
                                ]))
                        })))
        }
        members.append(.init("marketplace", .object(Self.marketplace(slots, dimensions: meter.dimensions, period: period))))
        return JSONObject(members)
    }

    /// This period's items of `dimensions` by marketplace status: quantities, and the number of conflicts.
    static func marketplace(_ slots: [Slot: SlotStatus], dimensions: [String], period: BillingPeriod) -> JSONObject {
        var pending = Quantity.zero
        var accepted = Quantity.zero
        var rejected = Quantity.zero
        var expired = Quantity.zero
        var conflicts = 0
        for (slot, status) in slots where period.contains(slot.hour) && dimensions.contains(slot.dimension) {
            switch status.status {
            case .pending: pending = pending.saturatingAdding(status.quantity)
            case .accepted: accepted = accepted.saturatingAdding(status.quantity)
            case .rejected: rejected = rejected.saturatingAdding(status.quantity)
            case .expired: expired = expired.saturatingAdding(status.quantity)
            case .conflict:
                conflicts += 1
                accepted = accepted.saturatingAdding(status.acceptedQuantity ?? .zero)
            }
        }
        return JSONObject([
            .init("pending", pending.json), .init("accepted", accepted.json), .init("rejected", rejected.json),
            .init("expiredRebilled", expired.json), .init("conflicts", .number(String(conflicts))),
        ])
    }

    /// Where the slot `(subscription, dimension, hour)` stands at the marketplace: nil when nothing
    /// was billed for it, `settled` when it was settled before the retention horizon.
    public func marketplaceStatus(subscription: String, dimension: String, hour: Timestamp) -> String? {
        ledger[subscription]?[Slot(dimension: dimension, hour: hour)]?.status.rawValue
    }

    /// The period's usage of meter `meterName` of the subscription named by `name`, per value of
    /// the property `property`; nil when there is no such subscription.
    public func breakdownJSON(_ name: ResourceName, meterName: String, property: String) -> JSONObject? {
        guard let key = state.key(named: name), let terms = state.terms(ofKey: key) else { return nil }
        let breakdown = breakdowns[key]?[meterName]
        let current = breakdown?.periodStart == terms.period.start ? breakdown : nil
        let values = current?.values[property] ?? [:]
        var total = Quantity.zero
        let groups = values.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { value, quantity -> JSONValue in
            total = total.saturatingAdding(quantity)
            return .object(JSONObject([.init("value", .string(value)), .init("quantity", quantity.json)]))
        }
        var members: [JSONObject.Member] = [.init("ok", true)]
        members += terms.resource.members
        members += [
            .init("meterName", .string(meterName)), .init("property", .string(property)),
            .init(
                "period",
                .object(JSONObject([.init("start", .string(terms.period.start.iso8601)), .init("end", .string(terms.period.end.iso8601))]))),
            .init("groups", .array(groups)), .init("total", total.json),
            .init("asOf", state.time.map { .string($0.iso8601) } ?? .null),
        ]
        return JSONObject(members)
    }

    /// One line per subscription held: key, names, plan, period, deleted.
    public func subscriptionEntries() -> [(key: String, json: JSONObject)] {
        state.subscriptionKeys.compactMap { key in
            guard let runRate = state.runRate(ResourceName(resourceId: key)) else { return nil }
            var members: [JSONObject.Member] = [.init("key", .string(key))]
            members += runRate.resource.members
            members += [
                .init("planId", .string(runRate.planId)), .init("partition", .number(String(partition))),
                .init("periodStart", .string(runRate.period.start.iso8601)), .init("periodEnd", .string(runRate.period.end.iso8601)),
                .init("deleted", .bool(runRate.deleted)),
            ]
            return (key, JSONObject(members))
        }
    }

    // MARK: - Snapshots

    static let snapshotFormat = "query-view-1"

    /// The whole view as JSON, in a canonical order.
    public func snapshot() -> JSONValue {
        var slots: [JSONValue] = []
        for (key, entries) in ledger.sorted(by: { $0.key < $1.key }) {
            for (slot, status) in entries.sorted(by: { ($0.key.hour, $0.key.dimension) < ($1.key.hour, $1.key.dimension) }) {
                var members: [JSONObject.Member] = [
                    .init("subscription", .string(key)), .init("dimension", .string(slot.dimension)),
                    .init("hour", .string(slot.hour.iso8601)),
                    .init("quantity", status.quantity.json), .init("status", .string(status.status.rawValue)),
                ]
                if let accepted = status.acceptedQuantity { members.append(.init("acceptedQuantity", accepted.json)) }
                if let settledAt = status.settledAt { members.append(.init("settledAt", .string(settledAt.iso8601))) }
                slots.append(.object(JSONObject(members)))
            }
        }
        let usage = openUsage.sorted { Self.order($0.key, $1.key) }.map { key, total -> JSONValue in
            var members: [JSONObject.Member] = [.init("subscription", .string(key.subscription))]
            members += total.resource.members
            members += [
                .init("planId", .string(total.planId)), .init("meterName", .string(key.meterName)),
                .init("dimension", .string(key.dimension)),
                .init("hour", .string(key.hour.iso8601)), .init("quantity", total.quantity.json), .init("billed", total.billed.json),
            ]
            return .object(JSONObject(members))
        }
        var groups: [JSONValue] = []
        for (key, meters) in breakdowns.sorted(by: { $0.key < $1.key }) {
            for (meterName, breakdown) in meters.sorted(by: { $0.key < $1.key }) {
                for (property, values) in breakdown.values.sorted(by: { $0.key < $1.key }) {
                    for (value, quantity) in values.sorted(by: { $0.key < $1.key }) {
                        groups.append(
                            .object(
                                JSONObject([
                                    .init("subscription", .string(key)), .init("meterName", .string(meterName)),
                                    .init("periodStart", .string(breakdown.periodStart.iso8601)), .init("property", .string(property)),
                                    .init("value", .string(value)), .init("quantity", quantity.json),
                                ])))
                    }
                }
            }
        }
        return .object(
            JSONObject([
                .init("format", .string(Self.snapshotFormat)), .init("state", state.snapshot()),
                .init("usageOrdinal", .number(String(usageOrdinal))), .init("submissionOrdinal", .number(String(submissionOrdinal))),
                .init("slots", .array(slots)), .init("openUsage", .array(usage)), .init("breakdowns", .array(groups)),
            ]))
    }

    /// Restores a view from `snapshot()`'s JSON.
    public init(snapshot: JSONValue) throws(ModelError) {
        let object = try ModelReader.object(snapshot, "snapshot")
        guard object["format"]?.stringValue == Self.snapshotFormat else {
            throw ModelError("snapshot format is not \(Self.snapshotFormat)")
        }
        do {
            state = try PartitionState(snapshot: object["state"] ?? .null)
        } catch {
            throw ModelError("state: \(error)")
        }
        state.effects = []
        usageOrdinal = UInt64(try ModelReader.int(object, "usageOrdinal"))
        submissionOrdinal = UInt64(try ModelReader.int(object, "submissionOrdinal"))
        for entry in object["slots"]?.arrayValue ?? [] {
            let slot = try ModelReader.object(entry, "slot")
            guard let status = MarketplaceStatus(rawValue: try ModelReader.string(slot, "status")) else {
                throw ModelError("bad slot status")
            }
            let accepted = try slot["acceptedQuantity"].map { _ throws(ModelError) in try ModelReader.quantity(slot, "acceptedQuantity") }
            let settledAt = try slot["settledAt"].map { _ throws(ModelError) in try ModelReader.timestamp(slot, "settledAt") }
            ledger[try ModelReader.string(slot, "subscription"), default: [:]][
                Slot(dimension: try ModelReader.string(slot, "dimension"), hour: try ModelReader.timestamp(slot, "hour"))] = SlotStatus(
                    quantity: try ModelReader.quantity(slot, "quantity"), status: status, acceptedQuantity: accepted, settledAt: settledAt)
        }
        for entry in object["openUsage"]?.arrayValue ?? [] {
            let usage = try ModelReader.object(entry, "open usage")
            let key = UsageKey(
                subscription: try ModelReader.string(usage, "subscription"), meterName: try ModelReader.string(usage, "meterName"),
                dimension: try ModelReader.string(usage, "dimension"), hour: try ModelReader.timestamp(usage, "hour"))
            openUsage[key] = UsageTotal(
                resource: try ModelReader.resource(usage), planId: try ModelReader.string(usage, "planId"),
                quantity: try ModelReader.quantity(usage, "quantity"), billed: try ModelReader.quantity(usage, "billed"))
        }
        for entry in object["breakdowns"]?.arrayValue ?? [] {
            let group = try ModelReader.object(entry, "breakdown")
            let key = try ModelReader.string(group, "subscription")
            let meterName = try ModelReader.string(group, "meterName")
            let periodStart = try ModelReader.timestamp(group, "periodStart")
            let property = try ModelReader.string(group, "property")
            let value = try ModelReader.string(group, "value")
            var breakdown = breakdowns[key]?[meterName] ?? Breakdown(periodStart: periodStart)
            breakdown.values[property, default: [:]][value] = try ModelReader.quantity(group, "quantity")
            breakdowns[key, default: [:]][meterName] = breakdown
        }
    }
}
