import Wire

extension Subscription {
    /// The subscription as JSON. `detailed` adds derived values to the meters (see `Meter.json`).
    /// Members that are almost always empty (credits, the previous period, early reports) are
    /// written only when there is something in them.
    func json(key: String, detailed: Bool) -> JSONValue {
        var object = JSONObject(["key": .string(key)])
        for member in resource.members { object[member.key] = member.value }
        object["planId"] = .string(planId)
        object["renewalInterval"] = .string(interval.rawValue)
        object["subscriptionStart"] = .string(subscriptionStart.iso8601)
        object["period"] = Self.json(period)
        object["deleted"] = .bool(deleted)
        if let deletedAt { object["deletedAt"] = .string(deletedAt.iso8601) }
        if let deletion {
            object["deletion"] = ["sequence": .number(String(deletion.sequence)), "time": .string(deletion.time.iso8601)]
        }
        object["since"] = .number(String(since))
        object["plans"] = .array(plans.map { ["planId": .string($0.planId), "from": .string($0.from.iso8601)] })
        if let firstUnusedHour { object["firstUnusedHour"] = .string(firstUnusedHour.iso8601) }
        if !earlyReported.isEmpty {
            object["earlyReported"] = .array(earlyReported.map { ["dimension": .string($0.dimension), "hour": .string($0.hour.iso8601)] })
        }
        object["meters"] = .array(meters.map { $0.json(detailed: detailed) })
        if !openHours.isEmpty {
            object["openHours"] = .array(
                openHours.map { hour in ["start": .string(hour.start.iso8601), "overage": DimensionQuantity.json(hour.overage)] })
        }
        if !credits.isEmpty { object["credits"] = DimensionQuantity.json(credits) }
        if let previous {
            var members = JSONObject(["period": Self.json(previous.period)])
            if !previous.credits.isEmpty { members["credits"] = DimensionQuantity.json(previous.credits) }
            if let closes = previous.closes { members["closes"] = .string(closes.iso8601) }
            object["previous"] = .object(members)
        }
        return .object(object)
    }

    static func json(_ period: BillingPeriod) -> JSONValue {
        ["index": .number(String(period.index)), "start": .string(period.start.iso8601), "end": .string(period.end.iso8601)]
    }

    /// Reads what `json(key:detailed:)` wrote (or an earlier format's, with one `openHour`); returns
    /// the key too.
    static func restore(_ json: JSONValue, path: String) throws(SnapshotError) -> (key: String, subscription: Subscription) {
        let object = try SnapshotReader.object(json, path)
        let key = try SnapshotReader.string(object, "key", path)
        let resource = try SnapshotReader.resource(object, path)
        let intervalName = try SnapshotReader.string(object, "renewalInterval", path)
        guard let interval = RenewalInterval(rawValue: intervalName) else {
            throw SnapshotError("\(path).renewalInterval: unknown interval \"\(intervalName)\"")
        }
        let start = try SnapshotReader.timestamp(object, "subscriptionStart", path)
        let period = try Self.period(try SnapshotReader.member(object, "period", path), start: start, interval: interval, "\(path).period")
        let meterList = try SnapshotReader.array(object, "meters", path)
        var meters: [Meter] = []
        meters.reserveCapacity(meterList.count)
        for (position, meter) in meterList.enumerated() {
            meters.append(try Meter(json: meter, path: "\(path).meters[\(position)]"))
        }
        let planId = try SnapshotReader.string(object, "planId", path)
        var plans: [PlanPeriod] = []
        if let list = SnapshotReader.optional(object, "plans") {
            guard let entries = list.arrayValue, !entries.isEmpty else { throw SnapshotError("\(path).plans: expected a non-empty array") }
            for (position, entry) in entries.enumerated() {
                let entryPath = "\(path).plans[\(position)]"
                let plan = try SnapshotReader.object(entry, entryPath)
                plans.append(
                    PlanPeriod(
                        planId: try SnapshotReader.string(plan, "planId", entryPath),
                        from: try SnapshotReader.timestamp(plan, "from", entryPath)))
            }
        } else {
            // Written before plans could change: the one plan, since the period began.
            plans = [PlanPeriod(planId: planId, from: period.start)]
        }
        var subscription = Subscription(
            resource: resource, planId: planId, interval: interval, subscriptionStart: start, period: period, meters: meters, plans: plans)
        subscription.deleted = try SnapshotReader.bool(object, "deleted", path)
        if let value = SnapshotReader.optional(object, "deletedAt") {
            subscription.deletedAt = try SnapshotReader.timestamp(value, "\(path).deletedAt")
        }
        if let value = SnapshotReader.optional(object, "deletion") {
            let mark = try SnapshotReader.object(value, "\(path).deletion")
            subscription.deletion = Deletion(
                sequence: try SnapshotReader.sequence(mark, "sequence", "\(path).deletion"),
                time: try SnapshotReader.timestamp(mark, "time", "\(path).deletion"))
        }
        if let value = SnapshotReader.optional(object, "since") { subscription.since = try SnapshotReader.sequence(value, "\(path).since") }
        if let value = SnapshotReader.optional(object, "firstUnusedHour") {
            subscription.firstUnusedHour = try SnapshotReader.timestamp(value, "\(path).firstUnusedHour")
        }
        if let value = SnapshotReader.optional(object, "earlyReported") {
            guard let entries = value.arrayValue else { throw SnapshotError("\(path).earlyReported: expected an array") }
            for (position, entry) in entries.enumerated() {
                let entryPath = "\(path).earlyReported[\(position)]"
                let slot = try SnapshotReader.object(entry, entryPath)
                subscription.earlyReported.append(
                    DimensionHour(
                        dimension: try SnapshotReader.string(slot, "dimension", entryPath),
                        hour: try SnapshotReader.timestamp(slot, "hour", entryPath)))
            }
        }
        var hours: [JSONValue] = []
        if let value = SnapshotReader.optional(object, "openHours") {
            guard let list = value.arrayValue else { throw SnapshotError("\(path).openHours: expected an array") }
            hours = list
        } else if let value = SnapshotReader.optional(object, "openHour") {
            hours = [value]
        }
        for (position, value) in hours.enumerated() {
            let hourPath = "\(path).openHours[\(position)]"
            let hourObject = try SnapshotReader.object(value, hourPath)
            var hour = OpenHour(start: try SnapshotReader.timestamp(hourObject, "start", hourPath))
            hour.overage = try DimensionQuantity.list(try SnapshotReader.member(hourObject, "overage", hourPath), "\(hourPath).overage")
            try subscription.appendRestored(hour, hourPath)
        }
        if let value = SnapshotReader.optional(object, "credits") {
            subscription.credits = try DimensionQuantity.list(value, "\(path).credits")
        }
        if let value = SnapshotReader.optional(object, "previous") {
            let previousPath = "\(path).previous"
            let previous = try SnapshotReader.object(value, previousPath)
            var restored = PreviousPeriod(
                period: try Self.period(
                    try SnapshotReader.member(previous, "period", previousPath), start: start, interval: interval, "\(previousPath).period")
            )
            if let credits = SnapshotReader.optional(previous, "credits") {
                restored.credits = try DimensionQuantity.list(credits, "\(previousPath).credits")
            }
            if let closes = SnapshotReader.optional(previous, "closes") {
                restored.closes = try SnapshotReader.timestamp(closes, "\(previousPath).closes")
            }
            subscription.previous = restored
        }
        return (key, subscription)
    }

    private static func period(_ value: JSONValue, start: Timestamp, interval: RenewalInterval, _ path: String) throws(SnapshotError)
        -> BillingPeriod
    {
        let object = try SnapshotReader.object(value, path)
        return try restoredPeriod(index: try SnapshotReader.int(object, "index", path), start: start, interval: interval, path)
    }

    /// The years after a subscription's start that a restored period may end in: enough for any
    /// real subscription, few enough that computing the period's bounds cannot overflow.
    static let restoredYears = 10_000

    /// Period `index` of a restored subscription, refusing an index below zero or so large that the
    /// period would end beyond `restoredYears`.
    static func restoredPeriod(index: Int, start: Timestamp, interval: RenewalInterval, _ path: @autoclosure () -> String)
        throws(SnapshotError) -> BillingPeriod
    {
        guard index >= 0 else { throw SnapshotError("\(path()).index: must not be negative") }
        guard index < restoredYears * 12 / interval.months else { throw SnapshotError("\(path()).index: out of range") }
        return BillingPeriod(index: index, subscriptionStart: start, interval: interval)
    }

    /// Appends a restored open hour, refusing one without overage or not after the last one.
    mutating func appendRestored(_ hour: OpenHour, _ path: @autoclosure () -> String) throws(SnapshotError) {
        guard !hour.overage.isEmpty else { throw SnapshotError("\(path()).overage: an open hour has overage") }
        if let last = openHours.last, last.start >= hour.start {
            throw SnapshotError("\(path()).start: open hours must be in order, one per hour")
        }
        openHours.append(hour)
    }
}

extension DimensionQuantity {
    /// `[{"dimension", "quantity"}, ...]`.
    static func json(_ list: [DimensionQuantity]) -> JSONValue {
        .array(list.map { ["dimension": .string($0.dimension), "quantity": $0.quantity.json] })
    }

    /// Reads what `json` wrote: positive quantities, each dimension once.
    static func list(_ value: JSONValue, _ path: String) throws(SnapshotError) -> [DimensionQuantity] {
        guard let entries = value.arrayValue else { throw SnapshotError("\(path): expected an array") }
        var list: [DimensionQuantity] = []
        for (position, entry) in entries.enumerated() {
            let entryPath = "\(path)[\(position)]"
            let object = try SnapshotReader.object(entry, entryPath)
            let dimension = try SnapshotReader.string(object, "dimension", entryPath)
            let quantity = try SnapshotReader.quantity(object, "quantity", entryPath)
            try append(DimensionQuantity(dimension: dimension, quantity: quantity), to: &list, entryPath)
        }
        return list
    }

    /// Appends a restored `entry` to `list`, refusing a quantity that is not positive and a
    /// dimension already listed.
    static func append(_ entry: DimensionQuantity, to list: inout [DimensionQuantity], _ path: @autoclosure () -> String)
        throws(SnapshotError)
    {
        guard entry.quantity > .zero else { throw SnapshotError("\(path()).quantity: must be positive") }
        guard !list.contains(where: { $0.dimension == entry.dimension }) else {
            throw SnapshotError("\(path()).dimension: \"\(entry.dimension)\" appears twice")
        }
        list.append(entry)
    }
}
