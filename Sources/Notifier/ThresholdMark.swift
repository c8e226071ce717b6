import Wire

/// A usage threshold: a percentage of a meter's included quantity, or an absolute quantity of its
/// consumption in the billing period.
enum ThresholdMark: Hashable, Sendable, CustomStringConvertible {
    /// Percent of the included quantity (1 to 1000); none for a meter that includes nothing or
    /// an unlimited quantity.
    case percent(Int)
    /// A quantity of the period's consumption.
    case quantity(Quantity)

    /// The allowed percentages: beyond 100 says "twice what is included" and so on.
    static let percentRange = 1...1000

    /// `percent:80` or `quantity:1000`: how the mark is named in ids and the fired record.
    var description: String {
        switch self {
        case .percent(let value): return "percent:\(value)"
        case .quantity(let value): return "quantity:\(value)"
        }
    }

    /// The mark named by `description`'s text.
    init?(_ text: String) {
        if text.hasPrefix("percent:"), let value = Int(text.dropFirst(8)), Self.percentRange.contains(value) {
            self = .percent(value)
        } else if text.hasPrefix("quantity:"), let value = Quantity(exactly: String(text.dropFirst(9))), value > .zero {
            self = .quantity(value)
        } else {
            return nil
        }
    }

    /// The consumption at which the mark is reached, given the meter's included quantity.
    func level(included: IncludedQuantity) -> Quantity? {
        switch self {
        case .quantity(let value): return value
        case .percent(let value):
            guard case .finite(let included) = included, included > .zero else { return nil }
            return included.scaled(by: Int128(value), dividedBy: 100)
        }
    }

    /// How the receiver reads it: `{"percent":80}` or `{"quantity":1000}`.
    var json: JSONValue {
        switch self {
        case .percent(let value): return .object(JSONObject([.init("percent", .number(String(value)))]))
        case .quantity(let value): return .object(JSONObject([.init("quantity", value.json)]))
        }
    }

    /// The mark a notification body carries in `threshold`.
    init?(json: JSONValue?) {
        if let percent = json?["percent"]?.intValue, Self.percentRange.contains(percent) {
            self = .percent(percent)
        } else if case .number(let text)? = json?["quantity"], let value = Quantity(exactly: text), value > .zero {
            self = .quantity(value)
        } else {
            return nil
        }
    }
}
