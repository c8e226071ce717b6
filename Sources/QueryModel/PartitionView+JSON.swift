import Billing
public import Wire

extension PartitionView {
    // MARK: - Answers

    /// The run-rate of the subscription named by `name` as DESIGN.md §3.4 shapes it, or nil when
    /// this partition has no such subscription. With `series`, each meter carries its usage per
    /// day (or month) of the period too.
    public func runRateJSON(_ name: ResourceName, series withSeries: Bool = false) -> JSONObject? {
        guard let runRate = state.runRate(name) else { return nil }
        var members = runRate.resource.members
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
            .init(
                "plans",
                .array(
                    runRate.plans.map { plan in
                        .object(JSONObject([.init("planId", .string(plan.planId)), .init("from", .string(plan.from.iso8601))]))
                    })),
        ]
        let view = subscriptionViews[runRate.key]
        let totals = view?.market.flatMap { $0.periodStart == runRate.period.start ? $0.dimensions : nil } ?? []
        let usage = withSeries ? view?.series.flatMap { $0.periodStart == runRate.period.start ? $0 : nil } : nil
        let prices = view?.prices
        members.append(
            .init(
                "meters",
                .array(
                    runRate.meters.map { meter in
                        var json = meterJSON(meter, totals: totals, prices: prices)
                        if withSeries {
                            json["series"] = .object(Self.seriesJSON(usage, meterName: meter.meterName, period: runRate.period))
                        }
                        return .object(json)
                    })))
        return JSONObject(members)
    }

    /// `{"step":"day","points":[{"start":"2024-03-01","quantity":12.5},...]}`: one point per step
    /// with usage, in order.
    static func seriesJSON(_ series: UsageSeries?, meterName: String, period: BillingPeriod) -> JSONObject {
        var points: [(step: Int, quantity: Quantity)] = []
        if let series, let index = series.meterIndex(named: meterName) { points = series.points(meter: index) }
        return JSONObject([
            .init("step", .string(UsageSeries.step(of: period).rawValue)),
            .init(
                "points",
                .array(
                    points.map { point in
                        var members: [JSONObject.Member] = [
                            .init("start", .string(UsageSeries.date(ofStep: point.step, in: period))),
                            .init("quantity", point.quantity.json),
                        ]
                        Self.markSaturated([("quantity", point.quantity)], in: &members)
                        return .object(JSONObject(members))
                    })),
        ])
    }

    /// One meter's figures; with `prices`, a simple meter's `price` and each tier's (display only).
    private func meterJSON(_ meter: MeterRunRate, totals: [DimensionTotals], prices: DisplayPrices?) -> JSONObject {
        var members: [JSONObject.Member] = [
            .init("meterName", .string(meter.meterName)), .init("kind", .string(meter.kind.rawValue)),
            .init("dimension", .string(meter.dimension)), .init("included", meter.included.json), .init("consumed", meter.consumed.json),
            .init("remaining", meter.remaining.json), .init("overage", meter.overage.json),
            .init("openHourOverage", meter.openHourOverage.json), .init("projected", meter.projected.json),
        ]
        if meter.kind != .waterfall, let price = prices?.json(of: meter.dimension) { members.append(.init("price", price)) }
        if meter.kind == .waterfall {
            members.append(
                .init(
                    "tiers",
                    .array(
                        meter.tiers.map { tier in
                            var tierMembers: [JSONObject.Member] = [
                                .init("dimension", .string(tier.dimension)), .init("threshold", tier.threshold.json),
                                .init("from", tier.from.json), .init("consumed", tier.consumed.json),
                            ]
                            if let price = prices?.json(of: tier.dimension) { tierMembers.append(.init("price", price)) }
                            return .object(JSONObject(tierMembers))
                        })))
        }
        // Only when there is something: the answers of meters without voids keep their shape.
        if meter.voided > .zero { members.append(.init("voided", meter.voided.json)) }
        if meter.credit > .zero { members.append(.init("credit", meter.credit.json)) }
        members.append(.init("marketplace", .object(Self.marketplace(totals, dimensions: meter.dimensions))))
        if !meter.saturated.isEmpty { members.append(.init("saturated", .array(meter.saturated.map { .string($0) }))) }
        return JSONObject(members)
    }

    /// This period's items of `dimensions` by marketplace status: quantities, and the number of conflicts.
    static func marketplace(_ totals: [DimensionTotals], dimensions: [String]) -> JSONObject {
        var sum = DimensionTotals(dimension: "")
        for entry in totals where dimensions.contains(entry.dimension) {
            sum.pending = sum.pending.figureAdding(entry.pending)
            sum.accepted = sum.accepted.figureAdding(entry.accepted)
            sum.rejected = sum.rejected.figureAdding(entry.rejected)
            sum.expired = sum.expired.figureAdding(entry.expired)
            sum.conflicts += entry.conflicts
        }
        let figures: [(String, Quantity)] = [
            ("pending", sum.pending), ("accepted", sum.accepted), ("rejected", sum.rejected), ("expiredRebilled", sum.expired),
        ]
        var members = figures.map { JSONObject.Member($0.0, $0.1.json) }
        members.append(.init("conflicts", .number(String(sum.conflicts))))
        Self.markSaturated(figures, in: &members)
        return JSONObject(members)
    }

    /// Adds `"saturated": [names]` for the figures that reached the largest quantity (see
    /// `Quantity.isSaturated`); nothing when none did, so ordinary answers are unchanged.
    static func markSaturated(_ figures: [(name: String, value: Quantity)], in members: inout [JSONObject.Member]) {
        let saturated = figures.filter { $0.value.isSaturated }.map { JSONValue.string($0.name) }
        if !saturated.isEmpty { members.append(.init("saturated", .array(saturated))) }
    }

    /// Where the slot `(subscription, dimension, hour)` stands at the marketplace: nil when nothing
    /// was billed for it, `settled` when it was settled before the retention horizon.
    public func marketplaceStatus(subscription: String, dimension: String, hour: Timestamp) -> String? {
        // Pending first: a slot settled once can hold a new item again (an expired one rebilled).
        if state.hasPendingItem(key: subscription, dimension: dimension, hour: hour) { return MarketplaceStatus.pending.rawValue }
        return subscriptionViews[subscription]?.ledger[Slot(dimension: dimension, hour: hour)]?.status.rawValue
    }

    /// The period's usage of meter `meterName` of the subscription named by `name`, per value of
    /// the property `property`; nil when there is no such subscription. `unattributed` is the
    /// meter's usage that no group holds (usage without the property, or beyond the group limit).
    public func breakdownJSON(_ name: ResourceName, meterName: String, property: String) -> JSONObject? {
        guard let runRate = state.runRate(name) else { return nil }
        let breakdown = subscriptionViews[runRate.key]?.breakdown.flatMap { $0.periodStart == runRate.period.start ? $0 : nil }
        var values: [(key: BreakdownGroup, value: Quantity)] = []
        if let breakdown {
            for index in breakdown.groups.indices
            where breakdown.groups[index].meterName == meterName && breakdown.groups[index].property == property {
                values.append((breakdown.groups[index], breakdown.quantities[index]))
            }
        }
        var total = Quantity.zero
        let groups = values.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.value < $1.key.value }.map {
            group, quantity -> JSONValue in
            total = total.figureAdding(quantity)
            var members: [JSONObject.Member] = [.init("value", .string(group.value)), .init("quantity", quantity.json)]
            Self.markSaturated([("quantity", quantity)], in: &members)
            return .object(JSONObject(members))
        }
        var unattributed: JSONValue = .null
        var saturated: [(name: String, value: Quantity)] = [("total", total)]
        if let meter = runRate.meters.first(where: { $0.meterName == meterName }), meter.kind == .sum || meter.kind == .waterfall {
            // Not known once the total saturated: then it is shown as the largest quantity too.
            let rest = total.isSaturated ? Quantity.largest : max(.zero, meter.consumed.subtracting(total) ?? .zero)
            unattributed = rest.json
            saturated.append(("unattributed", rest))
        }
        var members = runRate.resource.members
        members += [
            .init("meterName", .string(meterName)), .init("property", .string(property)),
            .init(
                "period",
                .object(
                    JSONObject([.init("start", .string(runRate.period.start.iso8601)), .init("end", .string(runRate.period.end.iso8601))]))),
            .init("groups", .array(groups)), .init("total", total.json), .init("unattributed", unattributed),
            .init("truncated", .bool(breakdown?.truncated ?? false)), .init("asOf", .string(runRate.asOf.iso8601)),
        ]
        Self.markSaturated(saturated, in: &members)
        return JSONObject(members)
    }

    /// The keys of the subscriptions held after `after` (all when nil), in order.
    public func subscriptionKeys(after: String?) -> [String] {
        guard let after else { return state.subscriptionKeys }
        return state.subscriptionKeys.filter { $0 > after }
    }

    /// One subscription's line in a `subscriptions` page: key, names, plan, period, deleted.
    public func subscriptionEntry(_ key: String) -> JSONObject? {
        // From the terms alone: a listing computes no run-rate, so no figure of one subscription
        // can keep the others from being listed.
        guard let terms = state.terms(ofKey: key) else { return nil }
        var members: [JSONObject.Member] = [.init("key", .string(key))]
        members += terms.resource.members
        members += [
            .init("planId", .string(terms.planId)), .init("partition", .number(String(partition))),
            .init("periodStart", .string(terms.period.start.iso8601)), .init("periodEnd", .string(terms.period.end.iso8601)),
            .init("deleted", .bool(terms.deleted)),
        ]
        return JSONObject(members)
    }

    // MARK: - Snapshots

    static let snapshotFormat = "query-view-3"
    /// The format of the JSON view part of the binary snapshots the release before wrote
    /// (`query-view-4`: `snapshotFormat`'s members but the billing state, which follows in the
    /// binary form). Today's binary snapshots (`query-view-5`) have the view part in bytes too.
    static let jsonViewPartFormat = "query-view-4"
    /// The formats before pending slots were left to the billing state (their `slots` list them
    /// too, and they are skipped on reading) and, for 1, before plan changes and voids (no credits
    /// or voids in the open usage): still read.
    static let earlierSnapshotFormats = ["query-view-2", "query-view-1"]

    /// The whole view as JSON, in a canonical order.
    public func snapshot() -> JSONValue {
        snapshot(format: Self.snapshotFormat, state: state.snapshot())
    }

    /// The whole view as bytes that restore much faster than `snapshot()`'s JSON (for the query
    /// service's restarts), format `query-view-5`: an 8-byte little-endian length, that many bytes
    /// of the view's own part (`binaryViewPart()`), then the billing state's `binarySnapshot()`.
    /// Those of the release before (`query-view-4`) have JSON in the view's part: still read.
    public func binarySnapshot() -> [UInt8] { binarySnapshot(viewPart: binaryViewPart()) }

    /// `binarySnapshot()` as the release before wrote it (`query-view-4`, the view's part in
    /// JSON): for testing that such snapshots are still read.
    package func binarySnapshotWithJSONPart() -> [UInt8] {
        binarySnapshot(viewPart: JSONWriter.bytes(snapshot(format: Self.jsonViewPartFormat, state: nil)))
    }

    private func binarySnapshot(viewPart: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(viewPart.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes += viewPart
        bytes += state.binarySnapshot()
        return bytes
    }

    /// The view as JSON in `format`, with the billing state's JSON `state` when given.
    private func snapshot(format: String, state: JSONValue?) -> JSONValue {
        let views = subscriptionViews.sorted { $0.key < $1.key }
        var slots: [JSONValue] = []
        for (key, entries) in views.lazy.map({ ($0.key, $0.value.ledger) }) where !entries.isEmpty {
            for (slot, status) in entries.sorted(by: { ($0.key.hour, $0.key.dimension) < ($1.key.hour, $1.key.dimension) }) {
                slots.append(
                    .object(
                        JSONObject([
                            .init("subscription", .string(key)), .init("dimension", .string(slot.dimension)),
                            .init("hour", .string(slot.hour.iso8601)), .init("status", .string(status.status.rawValue)),
                            .init("settledAt", .string(status.settledAt.iso8601)),
                        ])))
            }
        }
        let open = views.flatMap { key, view in view.open.map { KeyedUsage(key: key, usage: $0) } }
        let usage = open.sorted { Self.order($0, $1) }.map { entry -> JSONValue in
            let (key, open) = (entry.key, entry.usage)
            let total = open.total
            var members: [JSONObject.Member] = [.init("subscription", .string(key))]
            members += total.resource.members
            members += [
                .init("planId", .string(total.planId)), .init("meterName", .string(open.meterName)),
                .init("dimension", .string(open.dimension)),
                .init("hour", .string(open.hour.iso8601)), .init("quantity", total.quantity.json), .init("billed", total.billed.json),
            ]
            if total.netted > .zero { members.append(.init("netted", total.netted.json)) }
            if total.voided > .zero { members.append(.init("voided", total.voided.json)) }
            if total.reversed > .zero { members.append(.init("reversed", total.reversed.json)) }
            return .object(JSONObject(members))
        }
        let groups = views.compactMap { key, view in view.breakdown.map { (key, $0) } }.map { key, breakdown -> JSONValue in
            // Kept in (meter, property, value) order already.
            let totals = zip(breakdown.groups, breakdown.quantities).map { group, quantity -> JSONValue in
                .object(
                    JSONObject([
                        .init("meterName", .string(group.meterName)), .init("property", .string(group.property)),
                        .init("value", .string(group.value)), .init("quantity", quantity.json),
                    ]))
            }
            return .object(
                JSONObject([
                    .init("subscription", .string(key)), .init("periodStart", .string(breakdown.periodStart.iso8601)),
                    .init("truncated", .bool(breakdown.truncated)), .init("groups", .array(totals)),
                ]))
        }
        let markets = views.compactMap { key, view in view.market.map { (key, $0) } }.map { key, totals -> JSONValue in
            .object(
                JSONObject([
                    .init("subscription", .string(key)), .init("periodStart", .string(totals.periodStart.iso8601)),
                    .init(
                        "dimensions",
                        .array(
                            totals.dimensions.map { entry in
                                .object(
                                    JSONObject([
                                        .init("dimension", .string(entry.dimension)), .init("pending", entry.pending.json),
                                        .init("accepted", entry.accepted.json), .init("rejected", entry.rejected.json),
                                        .init("expired", entry.expired.json), .init("conflicts", .number(String(entry.conflicts))),
                                    ]))
                            })),
                ]))
        }
        let daily = views.compactMap { key, view in view.series.map { (key, $0) } }.map { key, usage -> JSONValue in
            .object(
                JSONObject([
                    .init("subscription", .string(key)), .init("periodStart", .string(usage.periodStart.iso8601)),
                    .init(
                        "meters",
                        .array(
                            usage.meters.indices.map { index in
                                let points = usage.points(meter: index)
                                return .object(
                                    JSONObject([
                                        .init("meterName", .string(usage.meters[index].name)),
                                        .init("kind", .string(usage.meters[index].kind.rawValue)),
                                        .init("steps", .array(points.map { .number(String($0.step)) })),
                                        .init("quantities", .array(points.map { $0.quantity.json })),
                                    ]))
                            })),
                ]))
        }
        let priced = views.compactMap { key, view in view.prices.map { (key, $0) } }.map { key, prices -> JSONValue in
            .object(
                JSONObject([
                    .init("subscription", .string(key)), .init("currency", .string(prices.currency)),
                    .init("perUnit", .object(JSONObject(prices.perUnit.map { .init($0.dimension, $0.price.json) }))),
                ]))
        }
        var members: [JSONObject.Member] = [.init("format", .string(format))]
        if let state { members.append(.init("state", state)) }
        members += [
            .init("market", .array(markets)), .init("usageOrdinal", .number(String(usageOrdinal))),
            .init("submissionOrdinal", .number(String(submissionOrdinal))), .init("slots", .array(slots)),
            .init("openUsage", .array(usage)), .init("breakdowns", .array(groups)), .init("series", .array(daily)),
            .init("prices", .array(priced)),
        ]
        return .object(JSONObject(members))
    }

    /// A subscription's series from `snapshot()`'s JSON.
    private static func series(_ table: JSONObject) throws(ModelError) -> UsageSeries {
        var usage = UsageSeries(periodStart: try ModelReader.timestamp(table, "periodStart"))
        var points: [(step: Int, meter: Int, quantity: Quantity)] = []
        for item in table["meters"]?.arrayValue ?? [] {
            let meter = try ModelReader.object(item, "series meter")
            guard let kind = MeterRunRate.Kind(rawValue: try ModelReader.string(meter, "kind")) else {
                throw ModelError("bad series meter kind")
            }
            let name = try ModelReader.string(meter, "meterName")
            guard usage.meterIndex(named: name) == nil else { throw ModelError("series meter \(name) twice") }
            let index = usage.addMeter(name, kind: kind)
            let steps = meter["steps"]?.arrayValue ?? []
            let quantities = meter["quantities"]?.arrayValue ?? []
            guard steps.count == quantities.count else { throw ModelError("series of \(name): as many steps as quantities needed") }
            var previous = -1
            for (step, quantity) in zip(steps, quantities) {
                guard let step = step.intValue, step > previous, step < 1 << 20 else {
                    throw ModelError("series of \(name): steps must be increasing whole numbers")
                }
                previous = step
                let figure = try ModelReader.quantity(quantity, "a quantity of the series of \(name)")
                points.append((step, index, figure))
            }
        }
        // In the order usage recorded them, so the restored series is the one written.
        for point in points.sorted(by: { ($0.step, $0.meter) < ($1.step, $1.meter) }) {
            usage.record(point.quantity, meter: point.meter, step: point.step)
        }
        return usage
    }

    /// Restores a view from `snapshot()`'s JSON.
    public init(snapshot: JSONValue) throws(ModelError) {
        let object = try ModelReader.object(snapshot, "snapshot")
        guard let format = object["format"]?.stringValue, format == Self.snapshotFormat || Self.earlierSnapshotFormats.contains(format)
        else {
            throw ModelError("snapshot format is not \(Self.snapshotFormat)")
        }
        let state: PartitionState
        do {
            state = try PartitionState(snapshot: object["state"] ?? .null)
        } catch {
            throw ModelError("state: \(error)")
        }
        try self.init(state: state, object, format: format)
    }

    /// Restores a view from `binarySnapshot()`'s bytes (`query-view-5`), or from those of the
    /// release before (`query-view-4`, the view's part in JSON).
    public init(binarySnapshot bytes: [UInt8]) throws(ModelError) {
        guard bytes.count >= 8 else { throw ModelError("snapshot: too short") }
        let length = bytes[..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard length <= UInt64(bytes.count - 8) else { throw ModelError("snapshot: a view part longer than the snapshot") }
        let stateStart = 8 + Int(length)
        let state: PartitionState
        do {
            state = try PartitionState(binarySnapshot: bytes[stateStart...])
        } catch {
            throw ModelError("state: \(error)")
        }
        if bytes[8..<stateStart].starts(with: Self.binaryViewMagic) {
            try self.init(state: state, binaryViewPart: bytes[8..<stateStart])
            return
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes[8..<stateStart], maximumDepth: 512)
        } catch {
            throw ModelError("snapshot: \(error)")
        }
        let object = try ModelReader.object(json, "snapshot")
        guard object["format"]?.stringValue == Self.jsonViewPartFormat, object["state"] == nil else {
            throw ModelError("snapshot format is not \(Self.jsonViewPartFormat)")
        }
        try self.init(state: state, object, format: Self.jsonViewPartFormat)
    }

    /// Restores a view around the restored billing `state` from the rest of a snapshot's JSON
    /// `object`, written in `format`.
    private init(state: PartitionState, _ object: JSONObject, format: String) throws(ModelError) {
        self.state = state
        self.state.effects = []
        usageOrdinal = UInt64(try ModelReader.int(object, "usageOrdinal"))
        submissionOrdinal = UInt64(try ModelReader.int(object, "submissionOrdinal"))
        for entry in object["slots"]?.arrayValue ?? [] {
            let slot = try ModelReader.object(entry, "slot")
            guard let status = MarketplaceStatus(rawValue: try ModelReader.string(slot, "status")) else {
                throw ModelError("bad slot status")
            }
            // Earlier formats list pending slots too: the billing state has them.
            if status == .pending && Self.earlierSnapshotFormats.contains(format) { continue }
            guard status != .pending else { throw ModelError("a pending slot in the settled slots") }
            let key = Slot(dimension: try ModelReader.string(slot, "dimension"), hour: try ModelReader.timestamp(slot, "hour"))
            subscriptionViews[try ModelReader.string(slot, "subscription"), default: SubscriptionView()].ledger[key] = SlotStatus(
                status: status, settledAt: try ModelReader.timestamp(slot, "settledAt"))
        }
        subscriptionViews.reserveCapacity(
            max(
                object["market"]?.arrayValue?.count ?? 0, object["breakdowns"]?.arrayValue?.count ?? 0,
                object["series"]?.arrayValue?.count ?? 0))
        for entry in object["market"]?.arrayValue ?? [] {
            let table = try ModelReader.object(entry, "market totals")
            var totals = MarketTotals(periodStart: try ModelReader.timestamp(table, "periodStart"))
            for item in table["dimensions"]?.arrayValue ?? [] {
                let row = try ModelReader.object(item, "dimension totals")
                var dimension = DimensionTotals(dimension: try ModelReader.string(row, "dimension"))
                dimension.pending = try ModelReader.quantity(row, "pending")
                dimension.accepted = try ModelReader.quantity(row, "accepted")
                dimension.rejected = try ModelReader.quantity(row, "rejected")
                dimension.expired = try ModelReader.quantity(row, "expired")
                dimension.conflicts = try ModelReader.int(row, "conflicts")
                totals.dimensions.append(dimension)
            }
            subscriptionViews[try ModelReader.string(table, "subscription"), default: SubscriptionView()].market = totals
        }
        // The order slots settled in follows from their times.
        settledOrder = subscriptionViews.flatMap { key, view in view.ledger.map { slot, status in (status.settledAt, key, slot) } }
            .sorted { ($0.at, $0.key, $0.slot.hour, $0.slot.dimension) < ($1.at, $1.key, $1.slot.hour, $1.slot.dimension) }
        for entry in object["openUsage"]?.arrayValue ?? [] {
            let usage = try ModelReader.object(entry, "open usage")
            let key = try ModelReader.string(usage, "subscription")
            let meterName = try ModelReader.string(usage, "meterName")
            let dimension = try ModelReader.string(usage, "dimension")
            let hour = try ModelReader.timestamp(usage, "hour")
            var total = UsageTotal(
                resource: try ModelReader.resource(usage), planId: try ModelReader.string(usage, "planId"),
                quantity: try ModelReader.quantity(usage, "quantity"), billed: try ModelReader.quantity(usage, "billed"))
            if usage["netted"] != nil { total.netted = try ModelReader.quantity(usage, "netted") }
            if usage["voided"] != nil { total.voided = try ModelReader.quantity(usage, "voided") }
            if usage["reversed"] != nil { total.reversed = try ModelReader.quantity(usage, "reversed") }
            var view = subscriptionViews.removeValue(forKey: key) ?? SubscriptionView()
            let entry = OpenUsage(
                meterName: meterName, dimension: dimension, hour: hour, total: total, sharingWith: view.open.lazy.map(\.terms))
            // An entry twice: the later one stands, as it always did.
            if let index = view.open.firstIndex(where: { $0.hour == hour && $0.meterName == meterName && $0.dimension == dimension }) {
                view.open[index] = entry
            } else {
                if view.open.isEmpty { openKeys.append(key) }
                view.append(entry)
            }
            subscriptionViews[key] = view
        }
        for entry in object["breakdowns"]?.arrayValue ?? [] {
            let table = try ModelReader.object(entry, "breakdown")
            var breakdown = Breakdown(periodStart: try ModelReader.timestamp(table, "periodStart"))
            breakdown.truncated = table["truncated"] == .bool(true)
            for item in table["groups"]?.arrayValue ?? [] {
                let group = try ModelReader.object(item, "breakdown group")
                let key = BreakdownGroup(
                    meterName: try ModelReader.string(group, "meterName"), property: try ModelReader.string(group, "property"),
                    value: try ModelReader.string(group, "value"))
                breakdown.set(key, try ModelReader.quantity(group, "quantity"))
            }
            subscriptionViews[try ModelReader.string(table, "subscription"), default: SubscriptionView()].breakdown = breakdown
        }
        // Snapshots written before the series existed have none: they fill from the next usage on.
        for entry in object["series"]?.arrayValue ?? [] {
            let table = try ModelReader.object(entry, "series")
            subscriptionViews[try ModelReader.string(table, "subscription"), default: SubscriptionView()].series = try Self.series(table)
        }
        // Snapshots written before the plan catalog have no prices (and needed none).
        for entry in object["prices"]?.arrayValue ?? [] {
            let table = try ModelReader.object(entry, "prices")
            let perUnit = try ModelReader.object(table["perUnit"] ?? .null, "prices per unit")
            var list: [DisplayPrices.Entry] = []
            for member in perUnit.members {
                list.append(DisplayPrices.Entry(dimension: member.key, price: try ModelReader.quantity(perUnit, member.key)))
            }
            subscriptionViews[try ModelReader.string(table, "subscription"), default: SubscriptionView()].prices = DisplayPrices(
                currency: try ModelReader.string(table, "currency"), perUnit: list)
        }
    }
}
