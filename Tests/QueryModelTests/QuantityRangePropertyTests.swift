import Billing
import BillingTestSupport
import QueryModel
import Testing
import Wire

/// Quantities at the edges of the accepted range (0 to about 1.7·10²⁰), and random ones across it.
enum RangeSamples {
    static let edges: [Quantity] = [
        .zero, Quantity(units: 1), Quantity(1), quantity("300000000000000000"), Quantity(units: Int128.max / 3),
        Quantity(units: Int128.max / 2), Quantity(units: Int128.max / 2 + 1), Quantity(units: Int128.max - 1), .largest,
    ]

    /// A quantity whose number of digits is drawn first, so every order of magnitude is as likely.
    static func random(_ generator: inout SplitMix64) -> Quantity {
        let digits = Int(generator.next() % 40) + 1
        var bound: Int128 = 1
        for _ in 0..<digits {
            let (next, overflow) = bound.multipliedReportingOverflow(by: 10)
            bound = overflow ? .max : next
        }
        return Quantity(units: Int128.random(in: 0...bound, using: &generator))
    }

    /// Either an edge or a random quantity.
    static func any(_ generator: inout SplitMix64) -> Quantity {
        generator.next() % 3 == 0 ? edges[Int(generator.next() % UInt64(edges.count))] : random(&generator)
    }

    /// Every kind of meter, two of them sharing a marketplace dimension so that an hour's total of a
    /// dimension can pass the range although each meter's does not.
    static let plan: JSONValue = [
        "sum": Messages.simple("d-sum"),
        "shared": Messages.simple("d-sum"),
        "big": Messages.simple("d-big", included: .number(Quantity.largest.description)),
        "inf": Messages.simple("d-inf", included: "Infinite"),
        "max": Messages.simple("d-max", included: 1, aggregation: "max"),
        "last": Messages.simple("d-last", aggregation: "last"),
        "fall": Messages.waterfall([
            ("d-t1", Quantity(units: Int128.max / 3).description), ("d-t2", Quantity(units: Int128.max / 3).description), ("d-t3", "1"),
        ]),
    ]

    /// Meters whose usage adds up to the period's `consumed`.
    static let summed = ["sum", "shared", "big", "inf", "fall"]
    static let meters = summed + ["max", "last"]

    static let start = "2024-01-31T00:00:00Z"
}

/// What must hold for every answer about a subscription, whatever its figures: nothing traps, every
/// figure is an exact quantity in range, the projection is right to the micro-unit or named as
/// saturated, and the listing, breakdown and state answers are there.
func checkAnswers(_ view: PartitionView, _ resourceId: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let name = ResourceName(resourceId: resourceId)
    guard let runRate = view.runRateJSON(name) else { return }
    let asOf = try #require(runRate["asOf"]?.stringValue.flatMap(Timestamp.init(iso8601:)), sourceLocation: sourceLocation)
    let start = try #require(runRate["period"]?["start"]?.stringValue.flatMap(Timestamp.init(iso8601:)), sourceLocation: sourceLocation)
    let end = try #require(runRate["period"]?["end"]?.stringValue.flatMap(Timestamp.init(iso8601:)), sourceLocation: sourceLocation)
    for meter in runRate["meters"]?.arrayValue ?? [] {
        let meterName = meter["meterName"]?.stringValue ?? "?"
        for field in ["consumed", "overage", "openHourOverage", "projected"] {
            #expect(number(meter[field]).map { !$0.isNegative } == true, "\(meterName).\(field)", sourceLocation: sourceLocation)
        }
        for field in ["pending", "accepted", "rejected", "expiredRebilled"] {
            #expect(number(meter["marketplace"]?[field]) != nil, "\(meterName).marketplace.\(field)", sourceLocation: sourceLocation)
        }
        let saturated = (meter["saturated"]?.arrayValue ?? []).compactMap(\.stringValue)
        if meter["kind"] == "sum" || meter["kind"] == "waterfall" {
            let consumed = try #require(number(meter["consumed"]), sourceLocation: sourceLocation)
            let projected = try #require(number(meter["projected"]), sourceLocation: sourceLocation)
            let length = Double((end.microseconds - start.microseconds) / 1_000_000)
            let elapsed = Double(max(3600, (asOf.microseconds - start.microseconds) / 1_000_000))
            if elapsed >= length {
                #expect(projected == consumed, "\(meterName) projected at the period's end", sourceLocation: sourceLocation)
            } else {
                // An independent oracle on doubles: the exact figure, to about 12 significant digits.
                let exact = Double(consumed.units) * length / elapsed
                let limit = Double(Int128.max)
                if exact > limit * (1 + 1e-9) {
                    #expect(saturated.contains("projected") && projected == .largest, "\(meterName)", sourceLocation: sourceLocation)
                } else if exact < limit * (1 - 1e-9) {
                    #expect(!saturated.contains("projected"), "\(meterName)", sourceLocation: sourceLocation)
                    #expect(
                        abs(Double(projected.units) - exact) <= 1e12 + exact * 1e-12, "\(meterName) projected \(projected) for \(consumed)",
                        sourceLocation: sourceLocation)
                }
            }
        } else {
            #expect(!saturated.contains("projected"), sourceLocation: sourceLocation)
        }
        let breakdown = try #require(
            view.breakdownJSON(name, meterName: meterName, property: "campaign"), sourceLocation: sourceLocation)
        #expect(number(breakdown["total"]) != nil, sourceLocation: sourceLocation)
    }
    let key = try #require(view.state.key(named: name), sourceLocation: sourceLocation)
    #expect(view.subscriptionEntry(key)?["key"] == .string(key), sourceLocation: sourceLocation)
    #expect(view.subscriptionKeys(after: nil).contains(key), sourceLocation: sourceLocation)
    #expect(view.state.subscriptionJSON(name) != nil, sourceLocation: sourceLocation)
}

/// Snapshots of the state and of the view read back to what they were.
func checkSnapshots(_ view: PartitionView, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let restoredState = try PartitionState(snapshot: view.state.snapshot())
    #expect(restoredState == view.state, sourceLocation: sourceLocation)
    let restoredView = try PartitionView(snapshot: view.snapshot())
    #expect(JSONWriter.string(restoredView.snapshot()) == JSONWriter.string(view.snapshot()), sourceLocation: sourceLocation)
}

@Suite("The whole accepted quantity range: nothing traps, nothing wraps, nothing is lost")
struct QuantityRangePropertyTests {
    /// Times to test in a subscription bought at `RangeSamples.start`: the first second of the first
    /// period and of the next, an hour in, the middle, the last second.
    static func moments(_ interval: RenewalInterval) -> [Timestamp] {
        let start = at(RangeSamples.start)
        let first = BillingPeriod(index: 0, subscriptionStart: start, interval: interval)
        let second = BillingPeriod(index: 1, subscriptionStart: start, interval: interval)
        let middle = first.start.microseconds + (first.end.microseconds - first.start.microseconds) / 2
        return [
            first.start, first.start.adding(microseconds: 1_000_000), first.start.adding(microseconds: Timestamp.microsecondsPerHour + 1),
            Timestamp(microseconds: middle), first.end.adding(microseconds: -1_000_000), second.start,
            second.start.adding(microseconds: 1_000_000),
        ]
    }

    @Test(
        "one usage of any quantity of the range on every kind of meter, at the first second of a period and later, answers exactly",
        arguments: RenewalInterval.allCases)
    func singleQuantities(interval: RenewalInterval) throws {
        var generator = SplitMix64(seed: UInt64(interval.months))
        let quantities = RangeSamples.edges + (0..<30).map { _ in RangeSamples.random(&generator) }
        for moment in Self.moments(interval) {
            for value in quantities {
                var fold = ViewFold()
                fold.apply(
                    Messages.purchase("s", start: RangeSamples.start, interval: interval.rawValue, dimensions: RangeSamples.plan),
                    at: at(RangeSamples.start))
                for meter in RangeSamples.meters {
                    fold.apply(Messages.usage("s", meter, value.description, properties: ["campaign": "c"]), at: moment)
                }
                try checkAnswers(fold.view, "s")
                let meters = try #require(fold.runRate("s")?["meters"]?.arrayValue)
                for meter in meters {
                    let name = meter["meterName"]?.stringValue ?? ""
                    // Only the second meter on the dimension can find the hour's total full.
                    let fits = name != "shared" || value.adding(value) != nil
                    #expect(number(meter["consumed"]) == (fits ? value : .zero), "\(name) \(value) \(moment)")
                }
                let refused = fold.view.state.unprocessable.count
                #expect(refused == (value.adding(value) == nil ? 1 : 0), "\(value)")
                // The hour closes: usage records and marketplace figures.
                fold.ping(at: moment.adding(microseconds: Timestamp.microsecondsPerHour))
                try checkAnswers(fold.view, "s")
                for record in fold.usage {
                    #expect(record.fields["quantity"].flatMap(number) != nil)
                }
                try checkSnapshots(fold.view)
            }
        }
    }

    @Test(
        "sums up to the boundary are exact; the usage that would pass it is unprocessable, with its reason, and nothing wraps",
        arguments: RenewalInterval.allCases)
    func sumsToTheBoundary(interval: RenewalInterval) throws {
        var generator = SplitMix64(seed: 100 + UInt64(interval.months))
        let moment = Self.moments(interval)[0]
        for meter in ["sum", "big", "inf", "fall"] {
            var fold = ViewFold()
            fold.apply(
                Messages.purchase("s", start: RangeSamples.start, interval: interval.rawValue, dimensions: RangeSamples.plan),
                at: at(RangeSamples.start))
            // The largest quantity in random parts, then one unit more.
            var left = Quantity.largest
            var hour: Int64 = 0
            while left > .zero {
                let part = generator.next() % 4 == 0 ? left : Quantity(units: Int128.random(in: 0...left.units, using: &generator))
                fold.apply(
                    Messages.usage("s", meter, part.description, properties: ["campaign": "c\(hour % 3)"]),
                    at: moment.adding(microseconds: hour * Timestamp.microsecondsPerHour / 4))
                left = left - part
                hour += 1
                try checkAnswers(fold.view, "s")
            }
            #expect(fold.view.state.unprocessable.count == 0)
            fold.apply(Messages.usage("s", meter, "0.000000000000000001"), at: moment.adding(microseconds: hour * 900_000_000))
            #expect(fold.view.state.unprocessable.count == 1, "\(meter)")
            let rate = try #require(fold.meter("s", meter))
            #expect(number(rate["consumed"]) == .largest, "\(meter)")
            #expect(rate["saturated"]?.arrayValue?.contains("projected") == true, "\(meter): a full range in a period projects past it")
            // The hours close: every part is an item or included, exactly.
            fold.ping(at: moment.adding(microseconds: (hour + 2) * Timestamp.microsecondsPerHour))
            try checkAnswers(fold.view, "s")
            let billed = Quantity.saturatingSum(fold.usage.filter { $0.meterName == meter }.map(\.billed))
            let expected: Quantity =
                meter == "sum" ? .largest : meter == "fall" ? Quantity.largest - Quantity(units: Int128.max / 3) : .zero
            #expect(billed.total == expected, "\(meter)")
            #expect(
                Quantity.saturatingSum(fold.view.state.pending.map(\.quantity)).total == expected,
                "\(meter): the pending items add up to the overage")
            try checkSnapshots(fold.view)
        }
    }

    @Test("totals that pass the range in the read model are shown as the largest quantity and named as saturated")
    func saturatedFigures() throws {
        var fold = ViewFold()
        fold.apply(Messages.purchase("s", start: RangeSamples.start, dimensions: RangeSamples.plan), at: at(RangeSamples.start))
        let largest = Quantity.largest.description
        // Two meters on one dimension in two hours: two items of the largest quantity are pending.
        fold.apply(Messages.usage("s", "sum", largest), at: "2024-01-31T01:00:00Z")
        fold.apply(Messages.usage("s", "shared", largest), at: "2024-01-31T02:00:00Z")
        // A gauge reported twice at the top of the range, with a property: its hour and its group pass the range.
        fold.apply(Messages.usage("s", "max", largest, properties: ["campaign": "a"]), at: "2024-01-31T02:10:00Z")
        fold.apply(Messages.usage("s", "max", largest, properties: ["campaign": "a"]), at: "2024-01-31T02:20:00Z")
        fold.ping(at: "2024-01-31T04:00:00Z")
        #expect(fold.view.state.pending.count == 2)
        let sum = try #require(fold.meter("s", "sum"))
        #expect(number(sum["marketplace"]?["pending"]) == .largest)
        #expect(sum["marketplace"]?["saturated"] == ["pending"])
        let gaugeHour = try #require(fold.usage.first { $0.meterName == "max" })
        #expect(gaugeHour.quantity == .largest)
        #expect(gaugeHour.fields["saturated"] == ["quantity"])
        let breakdown = try #require(fold.view.breakdownJSON(ResourceName(resourceId: "s"), meterName: "max", property: "campaign"))
        #expect(breakdown["groups"]?.arrayValue?.first?["saturated"] == ["quantity"])
        #expect(breakdown["saturated"] == ["total"])
        // Settling an item of a saturated total leaves it saturated: the exact figure is not known.
        let item = try #require(fold.view.state.pending.first)
        fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-01-31T04:10:00Z")
        let settled = try #require(fold.meter("s", "sum"))
        #expect(settled["marketplace"]?["saturated"]?.arrayValue?.contains("pending") == true)
        #expect(number(settled["marketplace"]?["pending"]) == .largest)
        try checkAnswers(fold.view, "s")
        try checkSnapshots(fold.view)
    }

    @Test("a subscription at the top of the range keeps no other from being listed or answered")
    func oneHugeSubscriptionAmongOthers() throws {
        var fold = ViewFold()
        for name in ["a", "b", "huge", "z"] {
            fold.apply(
                Messages.purchase(name, start: RangeSamples.start, interval: "3-years", dimensions: RangeSamples.plan),
                at: at(RangeSamples.start))
        }
        fold.apply(Messages.usage("huge", "sum", "300000000000000000"), at: "2024-01-31T00:00:01Z")
        fold.apply(Messages.usage("a", "sum", "12.5"), at: "2024-01-31T00:00:02Z")
        let keys = fold.view.subscriptionKeys(after: nil)
        #expect(keys == ["a", "b", "huge", "z"])
        #expect(keys.compactMap { fold.view.subscriptionEntry($0) }.count == 4)
        #expect(fold.meter("huge", "sum")?["saturated"] == ["projected"])
        #expect(number(fold.meter("a", "sum")?["consumed"]) == quantity("12.5"))
        #expect(fold.meter("a", "sum")?["saturated"] == nil)
        for name in ["a", "b", "huge", "z"] { try checkAnswers(fold.view, name) }
    }

    @Test("random logs with quantities across the range: every answer after every record, and every accepted usage counted once")
    func randomLogs() throws {
        let intervals = RenewalInterval.allCases
        for seed in UInt64(0)..<40 {
            var generator = SplitMix64(seed: seed)
            var fold = ViewFold()
            var clock = at(RangeSamples.start)
            var names: [String] = []
            // Per subscription and summed meter: the period start and the usage accepted in it.
            var expected: [String: [String: (start: String, total: Quantity)]] = [:]
            for step in 0..<60 {
                switch generator.next() % 10 {
                case 0, 1:
                    let name = "s\(names.count)"
                    let interval = intervals[Int(generator.next() % 4)]
                    let start = Timestamp(
                        microseconds: clock.dayStart.microseconds - Int64(generator.next() % 40) * Timestamp.microsecondsPerDay)
                    fold.apply(
                        Messages.purchase(name, start: start.iso8601, interval: interval.rawValue, dimensions: RangeSamples.plan), at: clock
                    )
                    names.append(name)
                case 2:
                    // The clock moves: minutes, hours, or months (renewals).
                    let steps: [Int64] = [60_000_000, Timestamp.microsecondsPerHour, 40 * Timestamp.microsecondsPerDay]
                    clock = clock.adding(microseconds: steps[Int(generator.next() % 3)] * Int64(1 + generator.next() % 5))
                    fold.ping(at: clock)
                case 3:
                    if let item = fold.view.state.pending.randomElement(using: &generator) {
                        let status = ["Accepted", "Duplicate", "Expired", "ResourceNotFound", "Throttled"][Int(generator.next() % 5)]
                        let accepted = status == "Duplicate" ? RangeSamples.any(&generator) : nil
                        fold.apply(Messages.outcome(item, status: status, acceptedQuantity: accepted), at: clock)
                    }
                case 4 where generator.next() % 4 == 0:
                    if let name = names.randomElement(using: &generator) { fold.apply(Messages.deletion(name), at: clock) }
                default:
                    guard let name = names.randomElement(using: &generator) else { continue }
                    let meter = RangeSamples.meters[Int(generator.next() % UInt64(RangeSamples.meters.count))]
                    let value = RangeSamples.any(&generator)
                    let refusedBefore = fold.view.state.unprocessable.count
                    clock = clock.adding(microseconds: Int64(generator.next() % 600_000_000))
                    fold.apply(
                        Messages.usage(name, meter, value.description, properties: ["campaign": "c\(generator.next() % 3)"]), at: clock)
                    guard RangeSamples.summed.contains(meter), let rate = fold.runRate(name),
                        let start = rate["period"]?["start"]?.stringValue
                    else { continue }
                    var entry = expected[name, default: [:]][meter] ?? (start, .zero)
                    if entry.start != start { entry = (start, .zero) }
                    if fold.view.state.unprocessable.count == refusedBefore {
                        let sum = try #require(entry.total.adding(value), "seed \(seed) step \(step): accepted past the range")
                        entry.total = sum
                    }
                    expected[name, default: [:]][meter] = entry
                }
                for name in names {
                    try checkAnswers(fold.view, name)
                    guard let rate = fold.runRate(name), let start = rate["period"]?["start"]?.stringValue else { continue }
                    for (meter, entry) in expected[name] ?? [:] where entry.start == start && rate["deleted"] == false {
                        let consumed = number(fold.meter(name, meter)?["consumed"])
                        #expect(consumed == entry.total, "seed \(seed) step \(step): \(name).\(meter)")
                    }
                }
            }
            try checkSnapshots(fold.view)
        }
    }
}
