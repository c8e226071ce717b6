public import Wire

extension Meter {
    /// The meter as JSON. The snapshot form has the plan's rule and the period's consumption;
    /// `detailed` adds what follows from them, for people and read models (included consumed,
    /// remaining, overage, per-tier usage).
    func json(detailed: Bool) -> JSONValue {
        guard case .object(var object) = ruleJSON(detailed: detailed) else { return .null }
        object["since"] = .number(String(since))
        if !usage.billed.isEmpty { object["billed"] = DimensionQuantity.json(usage.billed) }
        if usage.voided > .zero { object["voided"] = usage.voided.json }
        if let previous {
            var members = JSONObject()
            if isGauge {
                members["value"] = previous.gaugeValue?.json ?? .null
            } else {
                members["consumed"] = previous.consumed.json
            }
            if !previous.billed.isEmpty { members["billed"] = DimensionQuantity.json(previous.billed) }
            if previous.voided > .zero { members["voided"] = previous.voided.json }
            object["previous"] = .object(members)
        }
        return .object(object)
    }

    private func ruleJSON(detailed: Bool) -> JSONValue {
        var object = JSONObject(["meterName": .string(name)])
        switch rule {
        case .sum(let dimension, let included):
            object["type"] = "simple"
            object["dimension"] = .string(dimension)
            object["aggregation"] = .string(Aggregation.sum.rawValue)
            object["included"] = included.json
            object["consumed"] = consumed.json
            if detailed {
                switch included {
                case .infinite:
                    object["includedConsumed"] = consumed.json
                    object["remaining"] = IncludedQuantity.infinite.json
                    object["overage"] = Quantity.zero.json
                case .finite(let included):
                    let includedConsumed = min(consumed, included)
                    object["includedConsumed"] = includedConsumed.json
                    object["remaining"] = (included - includedConsumed).json
                    object["overage"] = (consumed - includedConsumed).json
                }
            }
        case .gauge(let dimension, let included, let aggregation):
            object["type"] = "simple"
            object["dimension"] = .string(dimension)
            object["aggregation"] = .string(aggregation.rawValue)
            object["included"] = included.json
            object["value"] = gaugeValue?.json ?? .null
            if detailed { object["overage"] = (gaugeOverage?.quantity ?? .zero).json }
        case .waterfall(let tiers):
            object["type"] = "waterfall"
            object["tiers"] = .array(
                tiers.enumerated().map { index, tier in
                    var member = JSONObject(["dimension": .string(tier.dimension), "threshold": tier.threshold.json])
                    if detailed {
                        let upper = index + 1 < tiers.count ? min(consumed, tiers[index + 1].lowerBound) : consumed
                        member["from"] = tier.lowerBound.json
                        member["billed"] = max(.zero, upper - tier.lowerBound).json
                    }
                    return .object(member)
                })
            object["consumed"] = consumed.json
            if detailed, let first = tiers.first {
                object["free"] = min(consumed, first.lowerBound).json
                // The tier the next unit of usage is billed on.
                let current = tiers.indices.first { $0 + 1 == tiers.count || consumed < tiers[$0 + 1].lowerBound } ?? 0
                object["dimension"] = .string(tiers[current].dimension)
            }
        }
        return .object(object)
    }

    /// Reads the snapshot form back. A meter written before the billed overage was kept (no
    /// `since`) gets what its rule bills for its consumption: plans could not change then.
    init(json: JSONValue, path: String) throws(SnapshotError) {
        let object = try SnapshotReader.object(json, path)
        try self.init(rule: object, path: path)
        guard let sinceValue = SnapshotReader.optional(object, "since") else {
            usage.billed = owed(at: consumed)
            return
        }
        since = try SnapshotReader.sequence(sinceValue, "\(path).since")
        if let value = SnapshotReader.optional(object, "billed") { usage.billed = try DimensionQuantity.list(value, "\(path).billed") }
        if let value = SnapshotReader.optional(object, "voided") { usage.voided = try SnapshotReader.quantity(value, "\(path).voided") }
        if let value = SnapshotReader.optional(object, "previous") {
            let previousPath = "\(path).previous"
            let members = try SnapshotReader.object(value, previousPath)
            var restored = MeterUsage()
            if isGauge {
                if let gauge = SnapshotReader.optional(members, "value") {
                    restored.gaugeValue = try SnapshotReader.quantity(gauge, "\(previousPath).value")
                }
            } else {
                restored.consumed = try SnapshotReader.quantity(members, "consumed", previousPath)
            }
            if let billed = SnapshotReader.optional(members, "billed") {
                restored.billed = try DimensionQuantity.list(billed, "\(previousPath).billed")
            }
            if let voided = SnapshotReader.optional(members, "voided") {
                restored.voided = try SnapshotReader.quantity(voided, "\(previousPath).voided")
            }
            previous = restored
        }
    }

    /// Reads the rule and the current consumption.
    private init(rule object: JSONObject, path: String) throws(SnapshotError) {
        let name = try SnapshotReader.string(object, "meterName", path)
        let type = try SnapshotReader.string(object, "type", path)
        switch type {
        case "simple":
            let dimension = try SnapshotReader.string(object, "dimension", path)
            let included = try IncludedQuantity(json: try SnapshotReader.member(object, "included", path), path: "\(path).included")
            let aggregationName = try SnapshotReader.string(object, "aggregation", path)
            guard let aggregation = Aggregation(rawValue: aggregationName) else {
                throw SnapshotError("\(path).aggregation: unknown aggregation \"\(aggregationName)\"")
            }
            if aggregation == .sum {
                self.init(name: name, rule: .sum(dimension: dimension, included: included))
                consumed = try SnapshotReader.quantity(object, "consumed", path)
            } else {
                self.init(name: name, rule: .gauge(dimension: dimension, included: included, aggregation: aggregation))
                if let value = SnapshotReader.optional(object, "value") {
                    gaugeValue = try SnapshotReader.quantity(value, "\(path).value")
                }
            }
        case "waterfall":
            var thresholds: [(dimension: String, threshold: Quantity)] = []
            for (index, tierValue) in try SnapshotReader.array(object, "tiers", path).enumerated() {
                let tierPath = "\(path).tiers[\(index)]"
                let tier = try SnapshotReader.object(tierValue, tierPath)
                thresholds.append(
                    (try SnapshotReader.string(tier, "dimension", tierPath), try SnapshotReader.quantity(tier, "threshold", tierPath)))
            }
            self.init(name: name, rule: .waterfall(tiers: try Self.restoredTiers(thresholds, path)))
            consumed = try SnapshotReader.quantity(object, "consumed", path)
        default:
            throw SnapshotError("\(path).type: unknown meter type \"\(type)\"")
        }
    }
}

extension Meter {
    /// A restored waterfall meter's tiers, refusing a meter without any.
    static func restoredTiers(_ thresholds: [(dimension: String, threshold: Quantity)], _ path: @autoclosure () -> String)
        throws(SnapshotError) -> [Tier]
    {
        guard !thresholds.isEmpty else { throw SnapshotError("\(path()).tiers: a waterfall meter needs at least one tier") }
        return tiers(thresholds)
    }
}

extension IncludedQuantity {
    /// A number, or `"Infinite"` as in the reference's plans.
    public var json: JSONValue {
        switch self {
        case .finite(let quantity): return quantity.json
        case .infinite: return "Infinite"
        }
    }

    init(json: JSONValue, path: String) throws(SnapshotError) {
        if json.stringValue == "Infinite" {
            self = .infinite
        } else {
            self = .finite(try SnapshotReader.quantity(json, path))
        }
    }
}
