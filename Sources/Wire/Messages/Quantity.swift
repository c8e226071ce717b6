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

    /// The largest quantity, about 1.7·10²⁰. Figures that saturate stop here (see `saturatingAdding`).
    public static let largest = Quantity(units: .max)

    public static func < (lhs: Quantity, rhs: Quantity) -> Bool { lhs.units < rhs.units }

    // The operators trap on overflow, like `Int`'s: for values known to be in range (tests,
    // differences of non-negative quantities). Sums of input use `adding` or `saturatingAdding`.
    public static func + (lhs: Quantity, rhs: Quantity) -> Quantity { Quantity(units: lhs.units + rhs.units) }
    public static func - (lhs: Quantity, rhs: Quantity) -> Quantity { Quantity(units: lhs.units - rhs.units) }
    public static func += (lhs: inout Quantity, rhs: Quantity) { lhs.units += rhs.units }
    public static func -= (lhs: inout Quantity, rhs: Quantity) { lhs.units -= rhs.units }

    /// The sum, or nil when it would leave the range: a hostile but valid quantity (each one may
    /// be as large as about 1.7·10²⁰ on its own) must never trap.
    public func adding(_ other: Quantity) -> Quantity? {
        let (sum, overflow) = units.addingReportingOverflow(other.units)
        return overflow ? nil : Quantity(units: sum)
    }

    /// The difference, or nil when it would leave the range.
    public func subtracting(_ other: Quantity) -> Quantity? {
        let (difference, overflow) = units.subtractingReportingOverflow(other.units)
        return overflow ? nil : Quantity(units: difference)
    }

    /// The sum, stopping at `largest` (or its negation) instead of overflowing: for figures that
    /// are shown, never billed. A result equal to `largest` means "this much or more".
    public func saturatingAdding(_ other: Quantity) -> Quantity {
        adding(other) ?? Quantity(units: other.units < 0 ? -Int128.max : .max)
    }

    /// The sum of `quantities`, stopping at `largest`, and whether it did (for non-negative figures).
    public static func saturatingSum(_ quantities: some Sequence<Quantity>) -> (total: Quantity, saturated: Bool) {
        var total = Quantity.zero
        for quantity in quantities {
            guard let next = total.adding(quantity) else { return (.largest, true) }
            total = next
        }
        return (total, false)
    }

    /// `self × numerator ÷ denominator`, rounded toward zero, computed on 256 bits so the product
    /// never overflows; nil when the result leaves the range or `denominator` is not positive.
    public func scaled(by numerator: Int128, dividedBy denominator: Int128) -> Quantity? {
        guard denominator > 0 else { return nil }
        let negative = (units < 0) != (numerator < 0)
        let product = units.magnitude.multipliedFullWidth(by: numerator.magnitude)
        let divisor = denominator.magnitude
        // The quotient fits in 128 bits only when the high half is below the divisor.
        guard product.high < divisor else { return nil }
        let quotient = divisor.dividingFullWidth(product).quotient
        guard quotient <= UInt128(Int128.max) else { return nil }
        return Quantity(units: negative ? -Int128(quotient) : Int128(quotient))
    }

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
        var text = text
        return text.withUTF8 { parse(utf8: $0) }
    }

    /// 10⁰ to 10³⁸, every power of ten an `Int128` holds: a significand is scaled with one multiplication.
    static let powersOfTen: [Int128] = {
        var powers: [Int128] = [1]
        while true {
            let (next, overflow) = powers[powers.count - 1].multipliedReportingOverflow(by: 10)
            if overflow { return powers }
            powers.append(next)
        }
    }()

    /// Parses without allocating: significant digits accumulate in an `Int128`; runs of zeros are
    /// counted and only multiplied in when a non-zero digit follows, so trailing zeros (in any
    /// number) never overflow and the last accumulated digit is never zero.
    static func parse(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Result<Quantity, ParseError> {
        var index = 0
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        var significand: Int128 = 0
        var zeroRun = 0
        var fractionDigits = 0
        var sawDigit = false
        var sawPoint = false
        var exponent = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                sawDigit = true
                if sawPoint { fractionDigits += 1 }
                if byte == UInt8(ascii: "0") {
                    if significand != 0 { zeroRun += 1 }
                } else {
                    for _ in 0...zeroRun {
                        let (times, overflow) = significand.multipliedReportingOverflow(by: 10)
                        if overflow { return .failure(fractionDigits > scale ? .tooPrecise : .outOfRange) }
                        significand = times
                    }
                    zeroRun = 0
                    // 17014118346046923173168730371588410572 × 10 fits, + 8 does not.
                    let (sum, overflow) = significand.addingReportingOverflow(Int128(byte - UInt8(ascii: "0")))
                    if overflow { return .failure(fractionDigits > scale ? .tooPrecise : .outOfRange) }
                    significand = sum
                }
            } else if byte == UInt8(ascii: ".") && !sawPoint {
                sawPoint = true
            } else if (byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")) && sawDigit {
                index += 1
                var exponentNegative = false
                if index < bytes.count, bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
                    exponentNegative = bytes[index] == UInt8(ascii: "-")
                    index += 1
                }
                guard index < bytes.count else { return .failure(.notANumber) }
                while index < bytes.count {
                    let digit = bytes[index]
                    guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9"), exponent < 1000 else { return .failure(.notANumber) }
                    exponent = exponent * 10 + Int(digit - UInt8(ascii: "0"))
                    index += 1
                }
                if exponentNegative { exponent = -exponent }
                break
            } else {
                return .failure(.notANumber)
            }
            index += 1
        }
        guard sawDigit else { return .failure(.notANumber) }
        if significand == 0 { return .success(.zero) }
        // value = significand × 10^(zeroRun + exponent − fractionDigits); units = value × 10^scale.
        let shift = zeroRun + exponent - fractionDigits + scale
        if shift < 0 { return .failure(.tooPrecise) }
        guard shift < powersOfTen.count else { return .failure(.outOfRange) }
        let (units, overflow) = significand.multipliedReportingOverflow(by: powersOfTen[shift])
        if overflow { return .failure(.outOfRange) }
        return .success(Quantity(units: negative ? -units : units))
    }
}

extension Quantity: CustomStringConvertible {
    /// Appends `description`'s bytes to `out` without building a String: with 64-bit arithmetic
    /// for any quantity below about 18.4 (a 128-bit division otherwise), as the canonical form of
    /// every usage report writes one.
    public func appendDescription(to out: inout [UInt8]) {
        let magnitude = units.magnitude
        var fraction: UInt64
        if units < 0 { out.append(UInt8(ascii: "-")) }
        if let small = UInt64(exactly: magnitude) {
            let whole: UInt64
            (whole, fraction) = small.quotientAndRemainder(dividingBy: UInt64(Self.unitsPerOne))
            JSONWriter.writeInteger(whole, to: &out)
        } else {
            let (whole, rest) = magnitude.quotientAndRemainder(dividingBy: UInt128(Self.unitsPerOne))
            if let fits = UInt64(exactly: whole) {
                JSONWriter.writeInteger(fits, to: &out)
            } else {
                out.append(contentsOf: String(whole).utf8)
            }
            fraction = UInt64(rest)
        }
        guard fraction != 0 else { return }
        var places = Self.scale
        while fraction % 10 == 0 {
            fraction /= 10
            places -= 1
        }
        out.append(UInt8(ascii: "."))
        let digitsStart = out.count
        JSONWriter.writeInteger(fraction, to: &out)
        let missing = places - (out.count - digitsStart)
        if missing > 0 { out.insert(contentsOf: repeatElement(UInt8(ascii: "0"), count: missing), at: digitsStart) }
    }

    /// The shortest exact decimal text: `1`, `0.1`, `-12.5`.
    public var description: String {
        var bytes: [UInt8] = []
        appendDescription(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The quantity as a JSON number.
    public var json: JSONValue { .number(description) }
}
