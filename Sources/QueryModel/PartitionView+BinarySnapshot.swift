import Billing
import Wire

/// The read model's own part of a binary snapshot (what it keeps besides the billing state) in the
/// billing state's compact form (`ByteWriter`): a restart with many hours of open usage, series and
/// breakdowns read them without a JSON tree to build and walk.
///
/// Layout: the magic `MBQV` and a version byte, the string table, the usage and submission
/// ordinals, then the subscriptions with anything kept, by key: the key, a byte saying which parts
/// follow (bit 0 settled slots, 1 marketplace totals, 2 breakdown, 3 series, 4 prices, 5 open
/// usage), then each part present in that order. Every part holds what the JSON form holds, in the
/// same canonical order, so the same view always gives the same bytes.
extension PartitionView {
    /// The first bytes of the view part: `MBQV` and the version of the layout.
    static let binaryViewMagic: [UInt8] = Array("MBQV".utf8) + [1]

    /// The settled statuses a slot can hold, by their number in the bytes.
    private static let settledStatuses: [MarketplaceStatus] = [.accepted, .rejected, .conflict, .expired]
    private static let seriesKinds: [MeterRunRate.Kind] = [.sum, .max, .last, .waterfall]

    private enum Part {
        static let ledger: UInt8 = 1
        static let market: UInt8 = 2
        static let breakdown: UInt8 = 4
        static let series: UInt8 = 8
        static let prices: UInt8 = 16
        static let open: UInt8 = 32
        static let all: UInt8 = 63
    }

    /// The view's own part in bytes.
    func binaryViewPart() -> [UInt8] {
        let views = subscriptionViews.lazy.filter { !$0.value.isEmpty }.sorted { $0.key < $1.key }
        var out = ByteWriter(capacity: views.count * 256)
        out.varint(usageOrdinal)
        out.varint(submissionOrdinal)
        out.count(views.count)
        for (key, view) in views {
            out.string(key)
            var parts: UInt8 = 0
            if !view.ledger.isEmpty { parts |= Part.ledger }
            if view.market != nil { parts |= Part.market }
            if view.breakdown != nil { parts |= Part.breakdown }
            if view.series != nil { parts |= Part.series }
            if view.prices != nil { parts |= Part.prices }
            if !view.open.isEmpty { parts |= Part.open }
            out.byte(parts)
            if !view.ledger.isEmpty {
                out.list(view.ledger.sorted { ($0.key.hour, $0.key.dimension) < ($1.key.hour, $1.key.dimension) }) { out, entry in
                    out.string(entry.key.dimension)
                    out.timestamp(entry.key.hour)
                    out.byte(UInt8(Self.settledStatuses.firstIndex(of: entry.value.status) ?? 0))
                    out.timestamp(entry.value.settledAt)
                }
            }
            if let market = view.market {
                out.timestamp(market.periodStart)
                out.list(market.dimensions) { out, totals in
                    out.string(totals.dimension)
                    for figure in [totals.pending, totals.accepted, totals.rejected, totals.expired] { out.quantity(figure) }
                    out.count(totals.conflicts)
                }
            }
            if let breakdown = view.breakdown {
                out.timestamp(breakdown.periodStart)
                out.flag(breakdown.truncated)
                out.list(zip(breakdown.groups, breakdown.quantities).map { $0 }) { out, entry in
                    out.string(entry.0.meterName)
                    out.string(entry.0.property)
                    out.string(entry.0.value)
                    out.quantity(entry.1)
                }
            }
            if let series = view.series {
                out.timestamp(series.periodStart)
                out.list(series.meters) { out, meter in
                    out.string(meter.name)
                    out.byte(UInt8(Self.seriesKinds.firstIndex(of: meter.kind) ?? 0))
                }
                // In the order usage recorded them, as the JSON form restores them.
                let points = series.meters.indices.flatMap { index in series.points(meter: index).map { (index, $0.step, $0.quantity) } }
                out.list(points.sorted { ($0.1, $0.0) < ($1.1, $1.0) }) { out, point in
                    out.count(point.1)
                    out.count(point.0)
                    out.quantity(point.2)
                }
            }
            if let prices = view.prices {
                out.string(prices.currency)
                out.list(prices.perUnit) { out, entry in
                    out.string(entry.dimension)
                    out.quantity(entry.price)
                }
            }
            if !view.open.isEmpty {
                let open = view.open.sorted { ($0.hour, $0.meterName, $0.dimension) < ($1.hour, $1.meterName, $1.dimension) }
                out.list(open) { out, usage in
                    out.string(usage.meterName)
                    out.string(usage.dimension)
                    out.timestamp(usage.hour)
                    out.resource(usage.total.resource)
                    out.string(usage.total.planId)
                    for figure in [usage.total.quantity, usage.total.billed, usage.total.netted, usage.total.voided, usage.total.reversed] {
                        out.quantity(figure)
                    }
                }
            }
        }
        return out.finished(magic: Self.binaryViewMagic)
    }

    /// Restores the view's own part from `binaryViewPart()`'s bytes around the restored billing
    /// `state`, with the checks the JSON form gets and those only bytes need (parts in order, no
    /// subscription twice, breakdown groups and series points in their order).
    init(state: PartitionState, binaryViewPart bytes: ArraySlice<UInt8>) throws(ModelError) {
        self.state = state
        self.state.effects = []
        do {
            try readViewPart(bytes)
        } catch {
            throw ModelError("snapshot: \(error)")
        }
    }

    private mutating func readViewPart(_ bytes: ArraySlice<UInt8>) throws(SnapshotError) {
        var input = try ByteReader(bytes, magic: Self.binaryViewMagic)
        usageOrdinal = try input.varint()
        submissionOrdinal = try input.varint()
        // A subscription takes 3 bytes at least (its key, which parts, an empty part) but its entry
        // in memory far more: room is made for as many as real entries' bytes could hold, so that
        // a damaged count cannot make the table balloon.
        let count = try input.count(minimumBytes: 3)
        subscriptionViews.reserveCapacity(min(count, bytes.count / 32))
        var previousKey: String?
        var settled: [(at: Timestamp, key: String, slot: Slot)] = []
        for _ in 0..<count {
            let key = try input.string()
            guard previousKey.map({ $0 < key }) ?? true else { throw input.failure("subscription \(key) out of order") }
            previousKey = key
            let parts = try input.byte()
            guard parts != 0, parts & ~Part.all == 0 else { throw input.failure("subscription \(key): parts marked \(parts)") }
            var view = SubscriptionView()
            if parts & Part.ledger != 0 {
                let count = try input.count(minimumBytes: 18)
                view.ledger.reserveCapacity(count)
                for _ in 0..<count {
                    let slot = Slot(dimension: try input.name(), hour: try input.timestamp())
                    let status = SlotStatus(status: try input.choice(Self.settledStatuses, "slot status"), settledAt: try input.timestamp())
                    guard view.ledger.updateValue(status, forKey: slot) == nil else {
                        throw input.failure("subscription \(key): slot \(slot.dimension) \(slot.hour.iso8601) twice")
                    }
                    settled.append((status.settledAt, key, slot))
                }
            }
            if parts & Part.market != 0 {
                var totals = MarketTotals(periodStart: try input.timestamp())
                totals.dimensions = try input.list(minimumBytes: 66) { input, _ throws(SnapshotError) in
                    var dimension = DimensionTotals(dimension: try input.name())
                    dimension.pending = try input.quantity()
                    dimension.accepted = try input.quantity()
                    dimension.rejected = try input.quantity()
                    dimension.expired = try input.quantity()
                    let conflicts = try input.varint()
                    guard conflicts <= UInt64(Int.max) else { throw input.failure("a count of conflicts beyond any") }
                    dimension.conflicts = Int(conflicts)
                    return dimension
                }
                view.market = totals
            }
            if parts & Part.breakdown != 0 {
                let periodStart = try input.timestamp()
                let truncated = try input.flag()
                let count = try input.count(minimumBytes: 19)
                guard count <= Self.maximumBreakdownGroups else { throw input.failure("subscription \(key): \(count) breakdown groups") }
                var groups: [BreakdownGroup] = []
                var quantities: [Quantity] = []
                groups.reserveCapacity(count)
                quantities.reserveCapacity(count)
                for _ in 0..<count {
                    let group = BreakdownGroup(meterName: try input.name(), property: try input.string(), value: try input.string())
                    guard groups.last.map({ Breakdown.precedes($0, group) }) ?? true else {
                        throw input.failure("subscription \(key): breakdown groups out of order")
                    }
                    groups.append(group)
                    quantities.append(try input.quantity())
                }
                view.breakdown = Breakdown(periodStart: periodStart, truncated: truncated, groups: groups, quantities: quantities)
            }
            if parts & Part.series != 0 {
                var series = UsageSeries(periodStart: try input.timestamp())
                let meters = try input.count(minimumBytes: 2)
                for _ in 0..<meters {
                    let name = try input.name()
                    let kind = try input.choice(Self.seriesKinds, "series meter kind")
                    guard series.meterIndex(named: name) == nil else {
                        throw input.failure("subscription \(key): series meter \(name) twice")
                    }
                    _ = series.addMeter(name, kind: kind)
                }
                let points = try input.count(minimumBytes: 18)
                var previous: (step: Int, meter: Int)?
                for _ in 0..<points {
                    let rawStep = try input.varint()
                    let rawMeter = try input.varint()
                    guard rawStep < 1 << 20, rawMeter < UInt64(meters) else {
                        throw input.failure("subscription \(key): a series point of step \(rawStep), meter \(rawMeter)")
                    }
                    let (step, meter) = (Int(rawStep), Int(rawMeter))
                    guard previous.map({ ($0.step, $0.meter) < (step, meter) }) ?? true else {
                        throw input.failure("subscription \(key): series points out of order")
                    }
                    previous = (step, meter)
                    series.record(try input.quantity(), meter: meter, step: step)
                }
                view.series = series
            }
            if parts & Part.prices != 0 {
                let currency = try input.name()
                let perUnit = try input.list(minimumBytes: 17) { input, _ throws(SnapshotError) in
                    DisplayPrices.Entry(dimension: try input.name(), price: try input.quantity())
                }
                view.prices = DisplayPrices(currency: currency, perUnit: perUnit)
            }
            if parts & Part.open != 0 {
                var distinct: [Boxed<OpenTerms>] = []
                view.open = try input.list(minimumBytes: 93) { input, _ throws(SnapshotError) in
                    let meterName = try input.name()
                    let dimension = try input.name()
                    let hour = try input.timestamp()
                    var total = UsageTotal(
                        resource: try input.resource("open usage of \(key)"), planId: try input.name(), quantity: try input.quantity(),
                        billed: try input.quantity())
                    total.netted = try input.quantity()
                    total.voided = try input.quantity()
                    total.reversed = try input.quantity()
                    let usage = OpenUsage(meterName: meterName, dimension: dimension, hour: hour, total: total, sharingWith: distinct)
                    // A few kept to share: a subscription's entries have one or two (damaged bytes, any number).
                    if distinct.count < 4 && !distinct.contains(where: { $0 === usage.terms }) { distinct.append(usage.terms) }
                    return usage
                }
                guard
                    zip(view.open, view.open.dropFirst()).allSatisfy({
                        ($0.hour, $0.meterName, $0.dimension) < ($1.hour, $1.meterName, $1.dimension)
                    })
                else { throw input.failure("subscription \(key): open usage out of order or twice") }
                openKeys.append(key)
            }
            subscriptionViews[key] = view
        }
        guard input.isAtEnd else { throw input.failure("more bytes after the view") }
        // The order slots settled in follows from their times.
        settledOrder = settled.sorted {
            ($0.at, $0.key, $0.slot.hour, $0.slot.dimension) < ($1.at, $1.key, $1.slot.hour, $1.slot.dimension)
        }
    }
}
