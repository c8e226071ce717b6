import Wire

extension Subscription {
    /// The subscription as JSON. `detailed` adds derived values to the meters (see `Meter.json`).
    func json(key: String, detailed: Bool) -> JSONValue {
        var object = JSONObject(["key": .string(key)])
        for member in resource.jsonMembers { object[member.key] = member.value }
        object["planId"] = .string(planId)
        object["renewalInterval"] = .string(interval.rawValue)
        object["subscriptionStart"] = .string(subscriptionStart.iso8601)
        object["period"] = [
            "index": .number(String(period.index)), "start": .string(period.start.iso8601), "end": .string(period.end.iso8601),
        ]
        object["deleted"] = .bool(deleted)
        if let firstUnusedHour { object["firstUnusedHour"] = .string(firstUnusedHour.iso8601) }
        object["meters"] = .array(meters.map { $0.json(detailed: detailed) })
        if let openHour {
            object["openHour"] = [
                "start": .string(openHour.start.iso8601),
                "overage": .array(openHour.overage.map { ["dimension": .string($0.dimension), "quantity": $0.quantity.json] }),
            ]
        }
        return .object(object)
    }

    /// Reads what `json(key:detailed:)` wrote; returns the key too.
    static func restore(_ json: JSONValue, path: String) throws(SnapshotError) -> (key: String, subscription: Subscription) {
        let object = try SnapshotReader.object(json, path)
        let key = try SnapshotReader.string(object, "key", path)
        let resource = try SnapshotReader.resource(object, path)
        guard resource.resourceId == key || resource.resourceUri == key else {
            throw SnapshotError("\(path).key: \"\(key)\" is not one of the subscription's names")
        }
        let intervalName = try SnapshotReader.string(object, "renewalInterval", path)
        guard let interval = RenewalInterval(rawValue: intervalName) else {
            throw SnapshotError("\(path).renewalInterval: unknown interval \"\(intervalName)\"")
        }
        let start = try SnapshotReader.timestamp(object, "subscriptionStart", path)
        let periodObject = try SnapshotReader.object(try SnapshotReader.member(object, "period", path), "\(path).period")
        let index = try SnapshotReader.int(periodObject, "index", "\(path).period")
        guard index >= 0 else { throw SnapshotError("\(path).period.index: must not be negative") }
        var meters: [Meter] = []
        for (position, meter) in try SnapshotReader.array(object, "meters", path).enumerated() {
            meters.append(try Meter(json: meter, path: "\(path).meters[\(position)]"))
        }
        var openHour: OpenHour?
        if let hourValue = SnapshotReader.optional(object, "openHour") {
            let hourPath = "\(path).openHour"
            let hourObject = try SnapshotReader.object(hourValue, hourPath)
            var hour = OpenHour(start: try SnapshotReader.timestamp(hourObject, "start", hourPath))
            for (position, entry) in try SnapshotReader.array(hourObject, "overage", hourPath).enumerated() {
                let entryPath = "\(hourPath).overage[\(position)]"
                let entryObject = try SnapshotReader.object(entry, entryPath)
                let quantity = try SnapshotReader.quantity(entryObject, "quantity", entryPath)
                guard quantity > .zero else { throw SnapshotError("\(entryPath).quantity: must be positive") }
                hour.overage.append(
                    DimensionQuantity(dimension: try SnapshotReader.string(entryObject, "dimension", entryPath), quantity: quantity))
            }
            guard !hour.overage.isEmpty else { throw SnapshotError("\(hourPath).overage: an open hour has overage") }
            openHour = hour
        }
        var firstUnusedHour: Timestamp?
        if let value = SnapshotReader.optional(object, "firstUnusedHour") {
            firstUnusedHour = try SnapshotReader.timestamp(value, "\(path).firstUnusedHour")
        }
        let subscription = Subscription(
            resource: resource, planId: try SnapshotReader.string(object, "planId", path), interval: interval, subscriptionStart: start,
            period: BillingPeriod(index: index, subscriptionStart: start, interval: interval), meters: meters, openHour: openHour,
            firstUnusedHour: firstUnusedHour, deleted: try SnapshotReader.bool(object, "deleted", path))
        return (key, subscription)
    }
}
