import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Folding random logs")
struct PartitionStatePropertyTests {
    @Test(
        "random logs fold to the same state through a snapshot, bill every unit of usage exactly once and never hold a slot twice",
        arguments: 0..<6)
    func randomLogs(batch: Int) throws {
        for seed in (batch * 50)..<(batch * 50 + 50) {
            var log = RandomLog(seed: UInt64(seed))
            try log.run()
        }
    }
}

/// One random log, generated while it is folded (outcomes are for items actually pending), with a
/// model of what was used, so the billed quantities can be checked against it.
struct RandomLog {
    struct Subscription {
        var start: Timestamp
        var interval: RenewalInterval
        var included: [String: IncludedQuantity]
        /// c_0 of the waterfall meter: the free part of each period.
        var free: Quantity
        /// The purchase as sent, to send again: a resend must change nothing.
        var purchase: JSONValue
        var live = true

        func period(_ time: Timestamp) -> Int {
            BillingPeriod(containing: time, subscriptionStart: start, interval: interval).index
        }
    }

    /// A (subscription, meter, period) cell of the accounting.
    struct Cell: Hashable, CustomStringConvertible {
        var subscription: String
        var meter: String
        var period: Int
        var description: String { "\(subscription)/\(meter)/period \(period)" }
    }

    let seed: UInt64
    var random: SplitMix64
    var fold = Fold()
    var now: Timestamp
    var subscriptions: [String: Subscription] = [:]
    var usage: [Cell: Quantity] = [:]
    var rebilled: [Cell: Quantity] = [:]
    var settled: [ReadyItem] = []
    var rejected: [ReadyItem] = []
    var conflicts: [ReadyItem] = []
    var accepted = 0
    var outcomes: [JSONValue] = []

    init(seed: UInt64) {
        self.seed = seed
        random = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15)
        now = at("2024-01-01T00:00:00Z").adding(microseconds: Int64.random(in: 0..<400, using: &random) * Timestamp.microsecondsPerDay)
    }

    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &random) }
    mutating func chance(_ percent: Int) -> Bool { int(0..<100) < percent }

    /// A decimal quantity with up to three places, sometimes zero.
    mutating func randomQuantity(upTo limit: Int) -> Quantity {
        let places = int(0..<4)
        var units = Int128(int(0..<(limit + 1)))
        for _ in 0..<(18 - places) { units *= 10 }
        return Quantity(units: units)
    }

    mutating func randomIncluded() -> JSONValue? {
        switch int(0..<5) {
        case 0: return nil
        case 1: return 0
        case 2: return "Infinite"
        default: return randomQuantity(upTo: 300).json
        }
    }

    mutating func advanceTime() {
        let roll = int(0..<100)
        if roll < 55 {
            now = now.adding(microseconds: Int64(int(0..<1_200_000_000)))
        } else if roll < 80 {
            now = now.adding(microseconds: Int64(int(0..<10_800)) * 1_000_000)
        } else if roll < 90 {
            now = now.adding(microseconds: Int64(int(0..<259_200)) * 1_000_000)
        } else if roll < 95 {
            now = now.adding(microseconds: Timestamp.microsecondsPerHour).hourStart
        } else if let name = subscriptions.keys.sorted().randomElement(using: &random), let subscription = subscriptions[name] {
            // Exactly on a period boundary, where off-by-one mistakes live.
            let end = BillingPeriod(containing: now, subscriptionStart: subscription.start, interval: subscription.interval).end
            if end.microseconds - now.microseconds < 40 * Timestamp.microsecondsPerDay { now = end }
        }
    }

    mutating func purchase() {
        let name = "sub-\(subscriptions.count)"
        let (year, month, _) = now.date
        let monthOffset = int(-2..<2)
        let total = year * 12 + month - 1 + monthOffset
        let startYear = total / 12
        let startMonth = total % 12 + 1
        let day = min([1, 15, 28, 29, 30, 31][int(0..<6)], Timestamp.daysInMonth(year: startYear, month: startMonth))
        let start = Timestamp(year: startYear, month: startMonth, day: day, hour: int(0..<24), minute: int(0..<60))
        let interval = [RenewalInterval.monthly, .monthly, .monthly, .annually, .twoYears, .threeYears][int(0..<6)]
        let thresholds = (0..<int(1..<4)).map { index in
            index == 0 && chance(30) ? Quantity.zero : randomQuantity(upTo: 200)
        }
        let gauge = chance(50) ? "max" : "last"
        let plan: JSONValue = [
            "s1": Messages.simple("s1-dim", included: randomIncluded()),
            "s2": Messages.simple("s2-dim", included: randomIncluded()),
            "w": Messages.waterfall(thresholds.enumerated().map { ("w-t\($0.offset)", $0.element.description) }),
            "g": Messages.simple("g-dim", included: randomIncluded(), aggregation: gauge),
        ]
        let message = Messages.purchase(name, start: start.iso8601, interval: interval.rawValue, dimensions: plan)
        guard let record = fold.apply(message, at: now), case .subscriptionPurchased(let purchase) = record.message.body
        else { return }
        var included: [String: IncludedQuantity] = [:]
        for (meter, dimension) in purchase.plan.billingDimensions {
            if case .simple(_, let quantity, _) = dimension { included[meter] = quantity }
        }
        subscriptions[name] = Subscription(start: start, interval: interval, included: included, free: thresholds[0], purchase: message)
    }

    mutating func reportUsage() {
        let names = subscriptions.keys.sorted()
        guard let name = names.randomElement(using: &random), let subscription = subscriptions[name] else { return }
        let meter = chance(3) ? "zz" : ["s1", "s2", "w", "g"][int(0..<4)]
        let amount = randomQuantity(upTo: chance(10) ? 5000 : 60)
        let target = chance(3) ? "nobody" : name
        fold.apply(Messages.usage(target, meter, amount.description), at: now)
        guard target == name, subscription.live, meter != "zz", meter != "g" else { return }
        let cell = Cell(subscription: name, meter: meter, period: subscription.period(now))
        usage[cell, default: .zero] += amount
    }

    mutating func reportOutcome() throws {
        if chance(15), let old = outcomes.randomElement(using: &random) {
            // A resend (after a crash, say) of an outcome already recorded must change nothing. The
            // clock moves first, so that closing hours is not mistaken for a change.
            fold.ping(at: now)
            let before = fold.state
            fold.apply(old, at: now)
            #expect(fold.state.pending == before.pending, "seed \(seed)")
            #expect(fold.state.accepted == before.accepted && fold.state.expiredRebilled == before.expiredRebilled, "seed \(seed)")
            #expect(fold.state.rejected == before.rejected && fold.state.conflicts == before.conflicts, "seed \(seed)")
            return
        }
        guard let item = fold.state.pending.randomElement(using: &random) else { return }
        let roll = int(0..<100)
        let message: JSONValue
        switch roll {
        case 0..<40:
            message = Messages.outcome(item, status: "Accepted")
            settled.append(item)
            accepted += 1
        case 40..<50:
            message = Messages.outcome(item, status: "Duplicate", acceptedQuantity: item.quantity)
            settled.append(item)
            accepted += 1
        case 50..<55:
            message = Messages.outcome(item, status: "Duplicate", acceptedQuantity: item.quantity + Quantity(1))
            settled.append(item)
            conflicts.append(item)
        case 55..<72:
            message = Messages.outcome(item, status: "Expired")
            settled.append(item)
        case 72..<85:
            message = Messages.outcome(
                item, status: ["ResourceNotFound", "InvalidQuantity", "BadArgument"][int(0..<3)], errorMessage: "no")
            settled.append(item)
            rejected.append(item)
        default:
            message = Messages.outcome(item, status: "TooManyRequests")
        }
        fold.apply(message, at: now)
        outcomes.append(message)
        if roll >= 55 && roll < 72 && !item.dimension.hasPrefix("g-") {
            // The quantity went back into the subscription's open hour: note where, to count it once.
            let name = try #require(item.resource.resourceId)
            let json = try #require(fold.state.subscriptionJSON(ResourceName(resourceId: name)), "seed \(seed)")
            let hours = json["openHours"]?.arrayValue ?? []
            // Enqueued-time attribution: one open hour at most, the current one (or the next after an early close).
            #expect(hours.count == 1, "seed \(seed)")
            let hour = try #require(hours.last?["start"]?.stringValue.flatMap(Timestamp.init(iso8601:)), "seed \(seed)")
            let subscription = try #require(subscriptions[name])
            rebilled[cell(name, item.dimension, hour, subscription), default: .zero] += item.quantity
        }
    }

    func cell(_ name: String, _ dimension: String, _ hour: Timestamp, _ subscription: Subscription) -> Cell {
        let meter = dimension.hasPrefix("w-t") ? "w" : String(dimension.prefix { $0 != "-" })
        return Cell(subscription: name, meter: meter, period: subscription.period(hour))
    }

    mutating func step() throws {
        advanceTime()
        let roll = int(0..<100)
        switch roll {
        case 0..<5 where subscriptions.count < 5:
            purchase()
        case 0..<50:
            reportUsage()
        case 50..<68:
            fold.ping(at: now)
        case 68..<95:
            try reportOutcome()
        case 95..<96:
            let live = subscriptions.filter(\.value.live).keys.sorted()
            if let name = live.randomElement(using: &random), let purchase = subscriptions[name]?.purchase {
                fold.ping(at: now)
                let before = fold.state.subscriptionJSON(ResourceName(resourceId: name))
                fold.apply(purchase, at: now)
                #expect(
                    fold.state.subscriptionJSON(ResourceName(resourceId: name)) == before, "seed \(seed): a resent purchase changed \(name)"
                )
            }
        case 96..<97:
            let live = subscriptions.filter(\.value.live).keys.sorted()
            if let name = live.randomElement(using: &random) {
                fold.apply(Messages.deletion(name), at: now)
                subscriptions[name]?.live = false
            }
        default:
            let selection: JSONObject.Member =
                switch int(0..<3) {
                case 0: JSONObject.Member("all", "all")
                case 1: JSONObject.Member("exactly", .number(String(int(0..<Int(fold.sequence + 1)))))
                default: JSONObject.Member("beforeIncluding", .number(String(int(0..<Int(fold.sequence + 1)))))
                }
            fold.apply(Messages.removal(selection), at: now)
        }
        checkPending()
    }

    /// No slot twice, nothing zero, nothing in the future, every hour whole.
    func checkPending() {
        let pending = fold.state.pending
        let slots = Set(pending.map { "\($0.resource)|\($0.dimension)|\($0.effectiveStartTime.iso8601)" })
        #expect(slots.count == pending.count, "seed \(seed): a slot is pending twice")
        #expect(
            pending.allSatisfy {
                $0.quantity > .zero && $0.effectiveStartTime == $0.effectiveStartTime.hourStart && $0.effectiveStartTime <= now
            },
            "seed \(seed)")
        expectCountsOfPending(fold.state, "seed \(seed)")
    }

    /// The counts of a status (items at risk), kept per hour as items come and go, are the list's.
    func expectCountsOfPending(_ state: PartitionState, _ comment: String) {
        let pending = state.pending
        for hours: Int64 in [0, 1, 3, 20, 24] {
            let age = hours * Timestamp.microsecondsPerHour
            #expect(
                state.pendingCount(startedAtLeast: age, before: now)
                    == pending.filter { now.microseconds - $0.effectiveStartTime.microseconds >= age }.count,
                "\(comment): items pending \(hours) hours or more")
        }
    }

    mutating func run() throws {
        purchase()
        for _ in 0..<int(120..<260) { try step() }
        try checkReplay()
        checkAccounting()
    }

    /// Folding again in one pass, and through a snapshot at a random point, gives an equal state.
    mutating func checkReplay() throws {
        let records = fold.records
        var again = PartitionState(partition: 0)
        for record in records { again.apply(record) }
        #expect(again == fold.state, "seed \(seed): replay differs")

        let split = int(0..<(records.count + 1))
        var first = PartitionState(partition: 0)
        for record in records[..<split] { first.apply(record) }
        let text = JSONWriter.string(first.snapshot())
        var resumed = try PartitionState(snapshot: try JSONParser.parse(text))
        #expect(resumed == first, "seed \(seed): restore at \(split) differs")
        for record in records[split...] { resumed.apply(record) }
        #expect(resumed == fold.state, "seed \(seed): folding on from a snapshot at \(split) differs")
        expectCountsOfPending(resumed, "seed \(seed): restored at \(split) and folded on")
        expectCountsOfPending(try PartitionState(binarySnapshot: fold.state.binarySnapshot()), "seed \(seed): binary snapshot")
        #expect(try PartitionState(snapshot: fold.state.snapshot()) == fold.state, "seed \(seed)")
        try BinarySnapshotTests.expectRoundTrip(first, "seed \(seed): binary at \(split)")
        try BinarySnapshotTests.expectRoundTrip(fold.state, "seed \(seed): binary")
    }

    /// Per subscription, sum or waterfall meter and period: the usage's overage equals what was made
    /// ready (pending or settled in any way) plus the open hour, minus what was billed again.
    func checkAccounting() {
        let state = fold.state
        #expect(state.accepted == accepted, "seed \(seed)")
        #expect(state.rejected.map(\.item) == rejected, "seed \(seed)")
        #expect(state.conflicts.map(\.item) == conflicts, "seed \(seed)")

        var billed: [Cell: Quantity] = [:]
        for item in settled + state.pending {
            guard !item.dimension.hasPrefix("g-"), let name = item.resource.resourceId, let subscription = subscriptions[name] else {
                continue
            }
            billed[cell(name, item.dimension, item.effectiveStartTime, subscription), default: .zero] += item.quantity
        }
        for (name, subscription) in subscriptions {
            for hour in state.subscriptionJSON(ResourceName(resourceId: name))?["openHours"]?.arrayValue ?? [] {
                guard let start = hour["start"]?.stringValue.flatMap(Timestamp.init(iso8601:)) else { continue }
                for entry in hour["overage"]?.arrayValue ?? [] {
                    guard case .string(let dimension)? = entry["dimension"], !dimension.hasPrefix("g-"),
                        case .number(let text)? = entry["quantity"], let amount = Quantity(exactly: text)
                    else { continue }
                    billed[cell(name, dimension, start, subscription), default: .zero] += amount
                }
            }
        }
        for (cell, amount) in rebilled { billed[cell, default: .zero] -= amount }

        var expected: [Cell: Quantity] = [:]
        for (cell, total) in usage {
            guard let subscription = subscriptions[cell.subscription] else { continue }
            let overage: Quantity
            if cell.meter == "w" {
                overage = max(.zero, total - subscription.free)
            } else if case .finite(let included)? = subscription.included[cell.meter] {
                overage = max(.zero, total - included)
            } else {
                overage = .zero
            }
            if overage > .zero { expected[cell] = overage }
        }
        billed = billed.filter { $0.value != .zero }
        for cell in Set(billed.keys).union(expected.keys).sorted(by: { $0.description < $1.description }) {
            #expect(billed[cell] == expected[cell], "seed \(seed): \(cell)")
        }
    }
}
