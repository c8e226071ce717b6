/// An exact decimal quantity: a fixed-point number with 18 decimal places on a 128-bit integer.
///
/// Range: ±170,141,183,460,469,231,731.687303715884105727 (about ±1.7·10²⁰) with a resolution
/// of 10⁻¹⁸. Addition and subtraction are exact and as cheap as integer arithmetic: ten usages
/// of 0.1 make exactly 1. Parsing refuses what it cannot represent exactly (more than 18 decimal
/// places with a non-zero digit, or out of range) instead of rounding it.
public struct Quantity: Hashable, Comparable, Sendable {
    /// Decimal places of the fixed-point representation.
    public static let scale = 18
    /// 10^18: the number of units in 1.
    public static let unitsPerOne: Int128 = 1_000_000_000_000_000_000

    /// The value in units of 10⁻¹⁸.
    public var units: Int128

    public init(units: Int128) { self.units = units }

    public init(_ integer: Int) { self.units = Int128(integer) * Self.unitsPerOne }

    public static let zero = Quantity(units: 0)

    public static func < (lhs: Quantity, rhs: Quantity) -> Bool { lhs.units < rhs.units }
    public static func + (lhs: Quantity, rhs: Quantity) -> Quantity { Quantity(units: lhs.units + rhs.units) }
    public static func - (lhs: Quantity, rhs: Quantity) -> Quantity { Quantity(units: lhs.units - rhs.units) }
    public static func += (lhs: inout Quantity, rhs: Quantity) { lhs.units += rhs.units }
    public static func -= (lhs: inout Quantity, rhs: Quantity) { lhs.units -= rhs.units }

    public var isNegative: Bool { units < 0 }

    /// Why a text is not an exact quantity.
    public enum ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        case notANumber
        case tooPrecise
        case outOfRange

        public var description: String {
            switch self {
            case .notANumber: return "is not a decimal number"
            case .tooPrecise: return "has more than \(Quantity.scale) decimal places"
            case .outOfRange: return "is out of range (about ±1.7e20)"
            }
        }
    }

    /// Parses a JSON number literal or numeric string (`12`, `-0.5`, `1.25e3`) exactly, or nil.
    public init?(exactly text: String) {
        guard case .success(let value) = Self.parse(text) else { return nil }
        self = value
    }

    /// Parses a decimal number text exactly: optional sign, digits, optional fraction and exponent.
    public static func parse(_ text: String) -> Result<Quantity, ParseError> {
        var utf8 = Array(text.utf8)[...]
        var negative = false
        if let first = utf8.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            utf8 = utf8.dropFirst()
        }
        var digits: [UInt8] = []
        var fractionDigits = 0
        var sawDigit = false
        var sawPoint = false
        var exponent = 0
        var index = utf8.startIndex
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                sawDigit = true
                if !(digits.isEmpty && byte == UInt8(ascii: "0")) || sawPoint { digits.append(byte - 48) }
                if sawPoint { fractionDigits += 1 }
            } else if byte == UInt8(ascii: ".") && !sawPoint {
                sawPoint = true
            } else if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                let rest = String(decoding: utf8[(index + 1)...], as: UTF8.self)
                guard sawDigit, let value = Int(rest.hasPrefix("+") ? String(rest.dropFirst()) : rest),
                    abs(value) < 1000
                else { return .failure(.notANumber) }
                exponent = value
                index = utf8.endIndex
                break
            } else {
                return .failure(.notANumber)
            }
            index += 1
        }
        guard sawDigit else { return .failure(.notANumber) }
        // value = digits × 10^(exponent − fractionDigits); units = value × 10^scale.
        var shift = exponent - fractionDigits + scale
        while shift < 0 {
            guard let last = digits.last else { break }
            if last != 0 { return .failure(.tooPrecise) }
            digits.removeLast()
            shift += 1
        }
        if digits.isEmpty { return .success(.zero) }
        guard shift >= 0, digits.count + shift <= 40 else { return .failure(.outOfRange) }
        var units: Int128 = 0
        for digit in digits {
            let (times, overflow1) = units.multipliedReportingOverflow(by: 10)
            let (plus, overflow2) = times.addingReportingOverflow(Int128(digit))
            if overflow1 || overflow2 { return .failure(.outOfRange) }
            units = plus
        }
        for _ in 0..<shift {
            let (times, overflow) = units.multipliedReportingOverflow(by: 10)
            if overflow { return .failure(.outOfRange) }
            units = times
        }
        return .success(Quantity(units: negative ? -units : units))
    }
}

extension Quantity: CustomStringConvertible {
    /// The shortest exact decimal text: `1`, `0.1`, `-12.5`.
    public var description: String {
        let magnitude = units.magnitude
        let one = UInt128(Self.unitsPerOne)
        let whole = magnitude / one
        var fraction = magnitude % one
        var text = (units < 0 ? "-" : "") + String(whole)
        if fraction != 0 {
            var places = Self.scale
            while fraction % 10 == 0 {
                fraction /= 10
                places -= 1
            }
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: places - digits.count) + digits
        }
        return text
    }

    /// The quantity as a JSON number.
    public var json: JSONValue { .number(description) }
}
