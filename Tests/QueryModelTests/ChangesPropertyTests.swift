import Billing
import BillingTestSupport
import Foundation
import QueryModel
import Testing
import Wire

@Suite("Random logs with plan changes, voids and late usage")
struct ChangesPropertyTests {
    @Test(
        "the aggregator's fold and the read model agree, replays and snapshots anywhere give the same state, and what the marketplace holds, less credits and refunds, is what the rules make owed",
        arguments: 0..<6)
    func randomLogs(batch: Int) throws {
        // CHANGES_SEED runs one log (CHANGES_TRACE prints it where the books first disagree);
        // CHANGES_LOGS runs more logs per batch.
        let only = ProcessInfo.processInfo.environment["CHANGES_SEED"].flatMap(Int.init)
        let count = ProcessInfo.processInfo.environment["CHANGES_LOGS"].flatMap(Int.init) ?? 25
        for seed in (batch * count)..<(batch * count + count) where only == nil || only == seed {
            var log = ChangesLog(seed: UInt64(seed))
            try log.run()
        }
    }
}

/// A random log of purchases, usage (with timestamps, some late, some keyed), plan changes, voids,
/// deletions, ticks and marketplace outcomes, folded as it is written, under enqueued-time or
/// event-time attribution. A model keeps, per subscription, summed meter and period, the
/// consumption and the overage billed by the documented rules, without hours, slots or credits;
/// a simulated marketplace keeps what it accepted.
struct ChangesLog {
    /// One summed meter's accounting of one period, in the model.
    struct Cell {
        var consumed = Quantity.zero
        var billed = Quantity.zero
    }

    /// A meter from its plan change or purchase until a plan drops it.
    struct Life {
        var meter: String
        var since: UInt64
        var cells: [Int: Cell] = [:]
        var live = true
    }

    struct Subscription {
        var start: Timestamp
        var bought: Timestamp
        var included: [String: Quantity?]
        var lives: [Life] = []
        var deletedAt: Timestamp?
        var renewed = false
        /// The meters present at the last renewal (they have a period before the current one).
        var atRenewal: Set<UInt64> = []

        func period(_ time: Timestamp) -> BillingPeriod {
            BillingPeriod(containing: time, subscriptionStart: start, interval: .monthly)
        }

        func life(_ meter: String) -> Int? { lives.lastIndex { $0.meter == meter && $0.live } }
    }

    struct Keyed {
        var subscription: String
        var meter: String
        var quantity: Quantity
        var timestamp: Timestamp
        var sequence: UInt64
        var time: Timestamp
        var message: JSONValue
        var life: Int?
    }

    let seed: UInt64
    var random: SplitMix64
    let attribution: Attribution
    var now: Timestamp
    var sequence: UInt64 = 0
    var records: [BillingRecord] = []
    var state = PartitionState(partition: 0)
    var view = PartitionView(partition: 0)
    var usageRecords: [UsageRecord] = []
    var subscriptions: [String: Subscription] = [:]
    var keyed: [String: Keyed] = [:]
    var voided: Set<String> = []
    /// The marketplace: what it accepted per slot, and what it refused.
    var held: [String: Quantity] = [:]
    var refused: [String: Quantity] = [:]
    /// Items sent whose outcome is not recorded yet, as they were sent.
    var inFlight: [ReadyItem] = []
    /// What happened, in words, for the message of a failure.
    var trace: [String] = []

    static let dimensions = ["s1": "s1-dim", "s2": "s2-dim"]

    init(seed: UInt64) {
        self.seed = seed
        random = SplitMix64(seed: seed &+ 0x5EED_0F_C4A6E5)
        let graces: [Int64?] = [nil, nil, 0, 900, 3600, 7200]
        let grace = graces[Int(random.next() % UInt64(graces.count))]
        attribution = grace.map { .event(lateGrace: $0 * 1_000_000) } ?? .enqueued
        now = at("2024-01-20T00:00:00Z").adding(microseconds: Int64(random.next() % 400) * Timestamp.microsecondsPerDay)
    }

    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &random) }
    mutating func chance(_ percent: Int) -> Bool { int(0..<100) < percent }

    mutating func randomQuantity(upTo limit: Int) -> Quantity {
        var units = Int128(int(0..<(limit * 1000 + 1)))
        for _ in 0..<15 { units *= 10 }
        return Quantity(units: units)
    }

    @discardableResult
    mutating func apply(_ message: JSONValue) throws -> BillingRecord {
        let decoded = try Message.decode(message).get()
        sequence += 1
        let record = BillingRecord(partition: 0, sequence: sequence, enqueuedTime: now, message: decoded)
        records.append(record)
        trace.append("\(sequence) \(now.iso8601) \(JSONWriter.string(message))")
        state.apply(record)
        var output = PartitionView.Output(collectingTouched: false)
        view.apply(record, into: &output)
        usageRecords += output.usage
        return record
    }

    // MARK: - Steps

    mutating func advanceTime() {
        let roll = int(0..<100)
        if roll < 50 {
            now = now.adding(microseconds: Int64(int(0..<1_500)) * 1_000_000)
        } else if roll < 80 {
            now = now.adding(microseconds: Int64(int(0..<10_800)) * 1_000_000)
        } else if roll < 92 {
            now = now.adding(microseconds: Timestamp.microsecondsPerHour).hourStart
        } else if let name = subscriptions.keys.sorted().randomElement(using: &random), let subscription = subscriptions[name] {
            // Just before or on a period boundary, where late usage crosses it.
            let end = subscription.period(now).end
            if end.microseconds - now.microseconds < 40 * Timestamp.microsecondsPerDay {
                now = end.adding(microseconds: -Int64(int(0..<3)) * 600_000_000)
            }
        }
    }

    mutating func randomPlan() -> (id: String, dimensions: JSONValue, included: [String: Quantity?]) {
        var members: [JSONObject.Member] = []
        var included: [String: Quantity?] = [:]
        for meter in ["s1", "s2"] where meter == "s1" || chance(70) {
            let amount: Quantity? = chance(15) ? nil : randomQuantity(upTo: 150)
            included[meter] = amount
            members.append(.init(meter, Messages.simple(Self.dimensions[meter]!, included: amount.map(\.json) ?? "Infinite")))
        }
        members.append(.init("w", Messages.waterfall([("w-t0", randomQuantity(upTo: 50).description), ("w-t1", "40")])))
        members.append(.init("g", Messages.simple("g-dim", included: 3, aggregation: "max")))
        let id = "plan-" + included.keys.sorted().map { "\($0)=\(included[$0]!.map(\.description) ?? "inf")" }.joined(separator: ",")
        return (id, .object(JSONObject(members)), included)
    }

    mutating func purchase() throws {
        let name = "sub-\(subscriptions.count)"
        let (year, month, _) = now.date
        let day = [1, 15, 28, 29, 30, 31][int(0..<6)]
        let start = Timestamp(year: year, month: month, day: min(day, Timestamp.daysInMonth(year: year, month: month)))
        let plan = randomPlan()
        let record = try apply(Messages.purchase(name, start: start.iso8601, planId: plan.id, dimensions: plan.dimensions))
        var subscription = Subscription(start: start, bought: now, included: plan.included)
        for meter in plan.included.keys.sorted() { subscription.lives.append(Life(meter: meter, since: record.sequence)) }
        subscriptions[name] = subscription
    }

    mutating func changePlan() throws {
        guard let name = subscriptions.filter({ $0.value.deletedAt == nil }).keys.sorted().randomElement(using: &random) else { return }
        let plan = randomPlan()
        let record: BillingRecord
        if chance(30), let subscription = subscriptions[name] {
            // The same start and interval with another plan: a plan change too.
            record = try apply(Messages.purchase(name, start: subscription.start.iso8601, planId: plan.id, dimensions: plan.dimensions))
        } else {
            record = try apply(Messages.planChange(name, planId: plan.id, dimensions: plan.dimensions))
        }
        guard var subscription = subscriptions[name],
            subscription.included.keys.sorted() != plan.included.keys.sorted()
                || subscription.included.map({ "\($0)\($1.map(\.description) ?? "")" }).sorted()
                    != plan.included.map({ "\($0)\($1.map(\.description) ?? "")" }).sorted()
        else { return }
        for index in subscription.lives.indices
        where subscription.lives[index].live && plan.included[subscription.lives[index].meter] == nil {
            subscription.lives[index].live = false
        }
        for meter in plan.included.keys.sorted() where subscription.life(meter) == nil {
            subscription.lives.append(Life(meter: meter, since: record.sequence))
        }
        subscription.included = plan.included
        subscriptions[name] = subscription
    }

    /// The period a usage placed at `placed` counts for (the fold's choice), nil when refused.
    func countedPeriod(_ subscription: Subscription, placed: Timestamp) -> Int? {
        var current = subscription.period(now)
        if let deletedAt = subscription.deletedAt {
            guard placed < deletedAt, now < deletedAt.adding(microseconds: attribution.lateGrace) else { return nil }
            current = subscription.period(deletedAt)
        }
        let inPrevious =
            placed < current.start && subscription.bought < current.start
            && now < current.start.adding(microseconds: attribution.lateGrace)
            && subscription.period(placed).index == current.index - 1
        return inPrevious ? current.index - 1 : current.index
    }

    mutating func reportUsage() throws {
        guard let name = subscriptions.keys.sorted().randomElement(using: &random), var subscription = subscriptions[name] else { return }
        let meter = ["s1", "s1", "s2", "w", "g"][int(0..<5)]
        let amount = randomQuantity(upTo: chance(10) ? 500 : 60)
        // Mostly a little behind the clock; sometimes hours behind (late), sometimes a little ahead.
        let delay: Int64 = chance(70) ? Int64(int(0..<120)) : chance(80) ? Int64(int(0..<14_400)) : -Int64(int(0..<200))
        let timestamp = now.adding(microseconds: -delay * 1_000_000)
        let id = chance(60) ? "u\(sequence + 1)" : nil
        let record = try apply(Messages.usage(name, meter, amount.description, timestamp: timestamp.iso8601, id: id))
        var life: Int?
        let placed = attribution.place(timestamp: timestamp, enqueued: now).time
        if Self.dimensions[meter] != nil, let index = subscription.life(meter), let period = countedPeriod(subscription, placed: placed) {
            life = index
            var cell = subscription.lives[index].cells[period] ?? Cell()
            if case let included?? = subscription.included[meter] {
                let total = cell.consumed + amount
                let overage = total - max(included, cell.consumed)
                if overage > .zero { cell.billed += overage }
            }
            cell.consumed += amount
            subscription.lives[index].cells[period] = cell
            // A meter counting late usage of the period before has that period from now on.
            if period < subscription.period(now).index { subscription.atRenewal.insert(subscription.lives[index].since) }
            subscriptions[name] = subscription
        }
        if let id {
            keyed[id] = Keyed(
                subscription: name, meter: meter, quantity: amount, timestamp: timestamp, sequence: record.sequence, time: now,
                message: Messages.usage(name, meter, amount.description, timestamp: timestamp.iso8601, id: id), life: life)
        }
    }

    mutating func void() throws {
        let candidates = keyed.keys.filter {
            !voided.contains($0) && keyed[$0]!.time.microseconds > now.microseconds - 7 * Timestamp.microsecondsPerDay
        }
        guard let id = candidates.sorted().randomElement(using: &random), let usage = keyed[id] else { return }
        voided.insert(id)
        try apply(Messages.void(id, usage: usage.message, sequence: usage.sequence, enqueuedTime: usage.time))
        // The fold's rule, mirrored: the period the usage counted for, if the accounting still has it.
        guard let index = usage.life, var subscription = subscriptions[usage.subscription], subscription.lives[index].live,
            state.key(named: ResourceName(resourceId: usage.subscription)) != nil
        else { return }
        let placed = attribution.place(timestamp: usage.timestamp, enqueued: usage.time).time
        let current = subscription.deletedAt.map { subscription.period($0) } ?? subscription.period(now)
        let counted = subscription.period(placed).index
        let target: Int
        if counted >= current.index || !subscription.renewed {
            target = current.index
        } else if counted == current.index - 1, subscription.atRenewal.contains(subscription.lives[index].since) {
            target = counted
        } else {
            return
        }
        var cell = subscription.lives[index].cells[target] ?? Cell()
        guard cell.consumed >= usage.quantity else { return }
        let after = cell.consumed - usage.quantity
        var owed = Quantity.zero
        if case let included?? = subscription.included[usage.meter] { owed = max(.zero, after - included) }
        let excess = cell.billed - min(cell.billed, owed)
        cell.billed -= min(usage.quantity, excess)
        cell.consumed = after
        subscription.lives[index].cells[target] = cell
        subscriptions[usage.subscription] = subscription
    }

    mutating func delete() throws {
        guard let name = subscriptions.filter({ $0.value.deletedAt == nil }).keys.sorted().randomElement(using: &random) else { return }
        try apply(Messages.deletion(name))
        subscriptions[name]?.deletedAt = now
    }

    /// The submitter and the marketplace: send a pending item (its outcome now or later), or
    /// record an outcome held back.
    mutating func market() throws {
        if !inFlight.isEmpty && chance(50) {
            let item = inFlight.remove(at: int(0..<inFlight.count))
            try apply(Messages.outcome(item, status: "Accepted"))
            return
        }
        let sending = Set(inFlight.map(Self.slot))
        guard let item = state.pending.filter({ !sending.contains(Self.slot($0)) }).randomElement(using: &random) else { return }
        let slot = Self.slot(item)
        #expect(held[slot] == nil, "seed \(seed): slot \(slot) sent twice")
        switch int(0..<100) {
        case 0..<45:
            held[slot] = item.quantity
            try apply(Messages.outcome(item, status: "Accepted"))
        case 45..<70:
            held[slot] = item.quantity
            inFlight.append(item)
        case 70..<85:
            try apply(Messages.outcome(item, status: "Expired"))
        default:
            refused[Self.dimensionKey(item), default: .zero] += item.quantity
            try apply(Messages.outcome(item, status: "ResourceNotActive", errorMessage: "no"))
        }
    }

    static func slot(_ item: ReadyItem) -> String { "\(item.resource)|\(item.dimension)|\(item.effectiveStartTime.iso8601)" }
    static func dimensionKey(_ item: ReadyItem) -> String { "\(item.resource.resourceId ?? "")|\(item.dimension)" }

    mutating func noteRenewals(from before: Timestamp) {
        for name in subscriptions.keys.sorted() {
            guard var subscription = subscriptions[name], subscription.deletedAt == nil,
                subscription.period(now).index > subscription.period(before).index
            else { continue }
            subscription.renewed = true
            subscription.atRenewal = Set(subscription.lives.filter(\.live).map(\.since))
            subscriptions[name] = subscription
        }
    }

    mutating func step() throws {
        let before = now
        advanceTime()
        // A call's outcome is recorded shortly after the call, which the marketplace takes within 24
        // hours of the item's hour: the fold forgets emptied items 25 hours after theirs.
        if let oldest = inFlight.map(\.effectiveStartTime).min(), now > oldest.adding(microseconds: 24 * Timestamp.microsecondsPerHour) {
            let later = now
            now = before
            while !inFlight.isEmpty { try apply(Messages.outcome(inFlight.removeFirst(), status: "Accepted")) }
            now = later
        }
        noteRenewals(from: before)
        switch int(0..<100) {
        case 0..<4 where subscriptions.count < 4: try purchase()
        case 0..<45: try reportUsage()
        case 45..<55: try apply(Messages.ping())
        case 55..<80: try market()
        case 80..<90: try void()
        case 90..<95: try changePlan()
        case 95..<96: try delete()
        default: try apply(Messages.ping())
        }
    }

    mutating func run() throws {
        try apply(Messages.tick(lateGraceSeconds: attribution == .enqueued ? nil : Int(attribution.lateGrace / 1_000_000)))
        try purchase()
        for _ in 0..<int(150..<300) {
            try step()
            // After every step, the books must already balance (outcomes in flight count as pending).
            guard checkOwed() else { return }
        }
        // Everything sent gets its outcome, every hour closes, every grace ends.
        while !inFlight.isEmpty { try apply(Messages.outcome(inFlight.removeFirst(), status: "Accepted")) }
        let before = now
        now = now.adding(microseconds: 8 * Timestamp.microsecondsPerHour)
        noteRenewals(from: before)
        try apply(Messages.ping())
        try checkFolds()
        checkOwed()
    }

    // MARK: - Checks

    /// The read model's fold is the aggregator's; both replay, and resume from a snapshot anywhere,
    /// to the same state and the same usage records.
    func checkFolds() throws {
        #expect(view.state == state, "seed \(seed): the read model's state differs from the aggregator's")
        var again = PartitionState(partition: 0)
        for record in records { again.apply(record) }
        #expect(again == state, "seed \(seed): replay differs")
        var random = SplitMix64(seed: seed)
        for _ in 0..<3 {
            let split = Int(random.next() % UInt64(records.count + 1))
            var first = PartitionState(partition: 0)
            for record in records[..<split] { first.apply(record) }
            var resumed = try PartitionState(snapshot: try JSONParser.parse(JSONWriter.string(first.snapshot())))
            #expect(resumed == first, "seed \(seed): restore at \(split)")
            for record in records[split...] { resumed.apply(record) }
            #expect(resumed == state, "seed \(seed): resumed from \(split)")

            var partial = PartitionView(partition: 0)
            var output = PartitionView.Output(collectingTouched: false)
            for record in records[..<split] { partial.apply(record, into: &output) }
            var restored = try PartitionView(snapshot: try JSONParser.parse(JSONWriter.string(partial.snapshot())))
            for record in records[split...] { restored.apply(record, into: &output) }
            #expect(output.usage == usageRecords, "seed \(seed): usage records resumed from \(split)")
            #expect(JSONWriter.string(restored.snapshot()) == JSONWriter.string(view.snapshot()), "seed \(seed): view from \(split)")

            var fromBytes = try PartitionView(binarySnapshot: partial.binarySnapshot())
            #expect(fromBytes.state == partial.state, "seed \(seed): binary restore at \(split)")
            #expect(fromBytes.binarySnapshot() == partial.binarySnapshot(), "seed \(seed): the same bytes again at \(split)")
            let fromEarlierBytes = try PartitionView(binarySnapshot: partial.binarySnapshotWithJSONPart())
            #expect(fromEarlierBytes.binarySnapshot() == partial.binarySnapshot(), "seed \(seed): query-view-4 restore at \(split)")
            var bytesOutput = PartitionView.Output(collectingTouched: false)
            for record in records[split...] { fromBytes.apply(record, into: &bytesOutput) }
            #expect(
                bytesOutput.usage == Array(usageRecords.drop { $0.ordinal < partial.usageOrdinal }), "seed \(seed): binary from \(split)")
            #expect(
                JSONWriter.string(fromBytes.snapshot()) == JSONWriter.string(view.snapshot()), "seed \(seed): binary view from \(split)")
        }
    }

    /// Per subscription and summed dimension: accepted at the marketplace + pending + open hours +
    /// refused − credits − refunds = the overage the model's rules make owed, over all periods.
    @discardableResult
    func checkOwed() -> Bool {
        var agrees = true
        var owed: [String: Quantity] = [:]
        for (name, subscription) in subscriptions {
            for life in subscription.lives {
                guard let dimension = Self.dimensions[life.meter] else { continue }
                for cell in life.cells.values { owed["\(name)|\(dimension)", default: .zero] += cell.billed }
            }
        }
        var books: [String: Quantity] = [:]
        let sending = Set(inFlight.map(Self.slot))
        for (slot, quantity) in held where !sending.contains(slot) {
            let parts = slot.split(separator: "|").map(String.init)
            books["\(parts[0])|\(parts[1])", default: .zero] += quantity
        }
        for (key, quantity) in refused { books[key, default: .zero] += quantity }
        for item in state.pending { books[Self.dimensionKey(item), default: .zero] += item.quantity }
        for refund in state.refunds { books["\(refund.resource.resourceId ?? "")|\(refund.dimension)", default: .zero] -= refund.quantity }
        for name in subscriptions.keys {
            guard let json = state.subscriptionJSON(ResourceName(resourceId: name)) else { continue }
            for hour in json["openHours"]?.arrayValue ?? [] {
                for entry in hour["overage"]?.arrayValue ?? [] {
                    books["\(name)|\(entry["dimension"]?.stringValue ?? "")", default: .zero] += number(entry["quantity"]) ?? .zero
                }
            }
            for entry in (json["credits"]?.arrayValue ?? []) + (json["previous"]?["credits"]?.arrayValue ?? []) {
                books["\(name)|\(entry["dimension"]?.stringValue ?? "")", default: .zero] -= number(entry["quantity"]) ?? .zero
            }
        }
        let keys = Set(owed.keys).union(books.keys).filter { !$0.hasSuffix("|g-dim") && !$0.contains("|w-t") }
        for key in keys.sorted() {
            #expect((books[key] ?? .zero) == (owed[key] ?? .zero), "seed \(seed) (\(attribution)): \(key)")
            if (books[key] ?? .zero) != (owed[key] ?? .zero) {
                agrees = false
                if ProcessInfo.processInfo.environment["CHANGES_TRACE"] != nil {
                    print(trace.suffix(12).joined(separator: "\n"))
                    print("books \(books[key] ?? .zero) owed \(owed[key] ?? .zero) for \(key)")
                }
            }
        }
        return agrees
    }
}
