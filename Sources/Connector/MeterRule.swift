import Wire

/// One custom meter counted from a source: which records count, for which subscription and hour,
/// and how much each contributes.
struct MeterRule: Sendable, Equatable {
    /// A condition on one field's text; a record missing the field never matches.
    struct Condition: Sendable, Equatable {
        enum Test: Sendable, Equatable {
            case equals(String)
            case oneOf(Set<String>)
            case prefix(String)
        }

        var field: FieldPath
        var test: Test

        func matches(_ record: Record) -> Bool {
            guard let text = record.text(field) else { return false }
            switch test {
            case .equals(let value): return text == value
            case .oneOf(let values): return values.contains(text)
            case .prefix(let prefix): return text.hasPrefix(prefix)
            }
        }
    }

    /// Which name of the subscription the field holds (DESIGN.md §3.3).
    enum SubscriptionKey: String, Sendable, Equatable, CaseIterable {
        case resourceId
        case resourceUri
    }

    /// How the timestamp field is written.
    enum TimeFormat: String, Sendable, Equatable, CaseIterable {
        /// `2024-05-01T13:05:07Z`, `2024-05-01T13:05:07.123+02:00` (see `Timestamp`).
        case iso8601
        /// Seconds since 1970 (`1714568707.123`), as nginx's `$msec`.
        case unixSeconds
        /// Milliseconds since 1970, as many gateways and Envoy write.
        case unixMilliseconds
    }

    /// What one record adds to its hour.
    enum Amount: Sendable, Equatable {
        case count
        case sum(FieldPath)
    }

    /// Names the meter in idempotency keys and status; unique within its source.
    var name: String
    /// The plan's internal meter name sent in `UsageReported`.
    var meterName: String
    var conditions: [Condition]
    var subscriptionField: FieldPath
    var subscriptionKey: SubscriptionKey
    var timestampField: FieldPath
    var timeFormat: TimeFormat
    var amount: Amount
    /// The hour's quantity is its count or sum times this (Luna's example: calls / 1000 = 0.001).
    var scale: Quantity

    /// The longest subscription name accepted from a record (a resource URI is well under this).
    static let maximumSubscriptionBytes = 1024

    /// What one record means for this meter.
    enum Outcome: Equatable {
        /// The filter does not select it.
        case skipped
        /// Selected, but unusable: the reason names the field.
        case malformed(String)
        /// Selected: `amount` (unscaled) for `subscription` at `time`.
        case counted(subscription: String, time: Timestamp, amount: Quantity)
    }

    func evaluate(_ record: Record) -> Outcome {
        for condition in conditions where !condition.matches(record) { return .skipped }
        guard let subscription = record.text(subscriptionField), !subscription.isEmpty else {
            return .malformed("no subscription in \"\(subscriptionField)\"")
        }
        guard subscription.utf8.count <= Self.maximumSubscriptionBytes else {
            return .malformed("the subscription in \"\(subscriptionField)\" is longer than \(Self.maximumSubscriptionBytes) bytes")
        }
        guard let timeText = record.text(timestampField) else { return .malformed("no timestamp in \"\(timestampField)\"") }
        guard let time = Self.time(timeText, format: timeFormat) else {
            return .malformed("\"\(Self.clip(timeText))\" in \"\(timestampField)\" is not a \(timeFormat.rawValue) time")
        }
        switch amount {
        case .count:
            return .counted(subscription: subscription, time: time, amount: Quantity(1))
        case .sum(let field):
            guard let text = record.text(field) else { return .malformed("no number in \"\(field)\"") }
            switch Quantity.parse(text) {
            case .failure(let error): return .malformed("\"\(Self.clip(text))\" in \"\(field)\" \(error)")
            case .success(let value):
                guard !value.isNegative else { return .malformed("\"\(text)\" in \"\(field)\" is negative") }
                return .counted(subscription: subscription, time: time, amount: value)
            }
        }
    }

    /// Reads a time in `format`; nil when it is not one (or is before 1970 or absurdly far ahead).
    static func time(_ text: String, format: TimeFormat) -> Timestamp? {
        let parsed: Timestamp?
        switch format {
        case .iso8601: parsed = Timestamp(iso8601: text)
        case .unixSeconds, .unixMilliseconds:
            // Exact decimal, so 1714568707.999999 never rounds into the next hour.
            guard let value = Quantity(exactly: text), !value.isNegative else { return nil }
            let unitsPerMicrosecond: Int128 = format == .unixSeconds ? 1_000_000_000_000 : 1_000_000_000_000_000
            let micros = value.units / unitsPerMicrosecond
            guard micros <= Int128(Int64.max) else { return nil }
            parsed = Timestamp(microseconds: Int64(micros))
        }
        guard let time = parsed, time >= .epoch, time < Timestamp(year: 10000, month: 1, day: 1) else { return nil }
        return time
    }

    static func clip(_ text: String) -> String {
        text.utf8.count <= 40 ? text : String(decoding: Array(text.utf8.prefix(40)), as: UTF8.self) + "…"
    }

    /// The hour's quantity: `total × scale`, exact when it fits 18 decimal places, else rounded
    /// half to even at the 18th; nil when out of `Quantity`'s range.
    func quantity(_ total: Quantity) -> Quantity? {
        Self.multiply(total, scale)
    }

    static func multiply(_ a: Quantity, _ b: Quantity) -> Quantity? {
        let negative = a.isNegative != b.isNegative
        let product = a.units.magnitude.multipliedFullWidth(by: b.units.magnitude)
        let one = UInt128(Quantity.unitsPerOne)
        guard product.high < one else { return nil }
        let (quotient, remainder) = one.dividingFullWidth(product)
        var units = quotient
        if remainder > one / 2 || (remainder == one / 2 && units % 2 == 1) { units += 1 }
        guard units <= UInt128(Int128.max) else { return nil }
        let value = Int128(units)
        return Quantity(units: negative ? -value : value)
    }
}

extension MeterRule {
    typealias Failure = ConnectorConfig.Failure

    /// Reads a meter of the configuration (`sources[i].meters[j]`).
    init(json: JSONValue, path: String) throws(Failure) {
        let object = try Members(json, path: path, allowed: ["name", "meterName", "filter", "subscription", "timestamp", "quantity"])
        name = try object.string("name")
        try ConnectorConfig.checkName(name, path: path + ".name")
        meterName = try object.string("meterName", default: name)
        var conditions: [Condition] = []
        if let filter = object["filter"] {
            guard let list = filter.arrayValue else {
                throw Failure(path: path + ".filter", reason: "must be an array of conditions, got \(filter.typeName)")
            }
            for (index, element) in list.enumerated() {
                conditions.append(try Self.condition(element, path: path + ".filter[\(index)]"))
            }
        }
        self.conditions = conditions
        guard let subscription = object["subscription"] else { throw Failure(path: path + ".subscription", reason: "missing") }
        let subscriptionObject = try Members(subscription, path: path + ".subscription", allowed: ["field", "as"])
        subscriptionField = FieldPath(try subscriptionObject.string("field"))
        let key = try subscriptionObject.string("as", default: "resourceId")
        guard let subscriptionKey = SubscriptionKey(rawValue: key) else {
            throw Failure(path: path + ".subscription.as", reason: "\"\(key)\" is not \"resourceId\" or \"resourceUri\"")
        }
        self.subscriptionKey = subscriptionKey
        switch object["timestamp"] {
        case nil: throw Failure(path: path + ".timestamp", reason: "missing: name the field whose time decides the hour")
        case .string(let field)?:
            guard !field.isEmpty else { throw Failure(path: path + ".timestamp", reason: "must not be empty") }
            timestampField = FieldPath(field)
            timeFormat = .iso8601
        case let value?:
            let timestamp = try Members(value, path: path + ".timestamp", allowed: ["field", "format"])
            timestampField = FieldPath(try timestamp.string("field"))
            let formatName = try timestamp.string("format", default: "iso8601")
            guard let timeFormat = TimeFormat(rawValue: formatName) else {
                throw Failure(
                    path: path + ".timestamp.format",
                    reason: "\"\(formatName)\" is not \"iso8601\", \"unixSeconds\" or \"unixMilliseconds\"")
            }
            self.timeFormat = timeFormat
        }
        guard let quantity = object["quantity"] else {
            throw Failure(path: path + ".quantity", reason: "missing: give {\"count\": true} or {\"sum\": \"<field>\"}, and \"scale\"")
        }
        let quantityObject = try Members(quantity, path: path + ".quantity", allowed: ["count", "sum", "scale"])
        switch (quantityObject["count"], quantityObject["sum"]) {
        case (.bool(true)?, nil): amount = .count
        case (nil, _?): amount = .sum(FieldPath(try quantityObject.string("sum")))
        default:
            throw Failure(path: path + ".quantity", reason: "give exactly one of \"count\": true or \"sum\": \"<field>\"")
        }
        scale = Quantity(1)
        if let scaleValue = quantityObject["scale"] {
            let text: String
            switch scaleValue {
            case .number(let literal), .string(let literal): text = literal
            default: throw Failure(path: path + ".quantity.scale", reason: "must be a number, got \(scaleValue.typeName)")
            }
            switch Quantity.parse(text) {
            case .failure(let error): throw Failure(path: path + ".quantity.scale", reason: "\"\(text)\" \(error)")
            case .success(let value):
                guard value > .zero else { throw Failure(path: path + ".quantity.scale", reason: "must be greater than 0, got \(text)") }
                scale = value
            }
        }
    }

    private static func condition(_ json: JSONValue, path: String) throws(Failure) -> Condition {
        let object = try Members(json, path: path, allowed: ["field", "equals", "in", "prefix"])
        let field = FieldPath(try object.string("field"))
        let given = ["equals", "in", "prefix"].filter { object[$0] != nil }
        guard given.count == 1 else {
            throw Failure(path: path, reason: "give exactly one of \"equals\", \"in\" or \"prefix\"")
        }
        switch given[0] {
        case "equals": return Condition(field: field, test: .equals(try scalar(object["equals"]!, path: path + ".equals")))
        case "prefix": return Condition(field: field, test: .prefix(try scalar(object["prefix"]!, path: path + ".prefix")))
        default:
            guard let list = object["in"]?.arrayValue, !list.isEmpty else {
                throw Failure(path: path + ".in", reason: "must be a non-empty array of values")
            }
            var values: Set<String> = []
            for (index, element) in list.enumerated() { values.insert(try scalar(element, path: path + ".in[\(index)]")) }
            return Condition(field: field, test: .oneOf(values))
        }
    }

    /// A value compared with a field's text: a string, a number (its literal) or a boolean.
    private static func scalar(_ value: JSONValue, path: String) throws(Failure) -> String {
        switch value {
        case .string(let text): return text
        case .number(let literal): return literal
        case .bool(let flag): return flag ? "true" : "false"
        default: throw Failure(path: path, reason: "must be a string, a number or a boolean, got \(value.typeName)")
        }
    }
}
