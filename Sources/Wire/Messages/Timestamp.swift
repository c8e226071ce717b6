/// A UTC instant with microsecond resolution, as ISO 8601 text on the wire.
///
/// Accepts what the reference's clients send (`MeteringDateTime list.json`): `2022-01-28T15:36:21Z`,
/// fractions of any length (digits past the microsecond are truncated), with or without `Z`
/// (no zone means UTC, as in the marketplace's `effectiveStartTime`), or an explicit `±hh:mm`.
/// Calendar arithmetic is proleptic Gregorian, done here without Foundation so it is pure and fast.
public struct Timestamp: Hashable, Comparable, Sendable {
    /// Microseconds since 1970-01-01T00:00:00Z.
    public var microseconds: Int64

    public init(microseconds: Int64) { self.microseconds = microseconds }

    public init(seconds: Int64) { self.microseconds = seconds * 1_000_000 }

    public static let epoch = Timestamp(microseconds: 0)
    public static let microsecondsPerHour: Int64 = 3_600_000_000
    public static let microsecondsPerDay: Int64 = 86_400_000_000

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.microseconds < rhs.microseconds }

    /// The start of the calendar hour (UTC) containing this instant.
    public var hourStart: Timestamp {
        Timestamp(microseconds: floorDiv(microseconds, Self.microsecondsPerHour) * Self.microsecondsPerHour)
    }

    /// Midnight UTC of the day containing this instant.
    public var dayStart: Timestamp {
        Timestamp(microseconds: floorDiv(microseconds, Self.microsecondsPerDay) * Self.microsecondsPerDay)
    }

    public func adding(microseconds delta: Int64) -> Timestamp { Timestamp(microseconds: microseconds + delta) }

    /// Year, month (1–12), day (1–31) of this instant's UTC date.
    public var date: (year: Int, month: Int, day: Int) {
        Self.civil(fromDays: floorDiv(microseconds, Self.microsecondsPerDay))
    }

    /// Midnight UTC of the given date; the day is not clamped (callers clamp to month length).
    public init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) {
        let days = Self.days(fromCivil: year, month, day)
        microseconds = (days * 86_400 + Int64(hour * 3600 + minute * 60 + second)) * 1_000_000
    }

    /// Days in `month` of `year` (Gregorian leap years).
    public static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    // Howard Hinnant's days_from_civil / civil_from_days.
    static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }
}

@inline(__always)
func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

extension Timestamp {
    /// Parses ISO 8601 UTC text, or nil when it is not a valid date and time.
    public init?(iso8601 text: String) {
        var text = text
        guard let parsed = text.withUTF8({ Self.parse(iso8601: $0) }) else { return nil }
        self = parsed
    }

    static func parse(iso8601 b: UnsafeBufferPointer<UInt8>) -> Timestamp? {
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var value = 0
            for i in from..<from + count {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                value = value * 10 + Int(b[i] - 48)
            }
            return value
        }
        guard b.count >= 19, let year = number(0, 4), b[4] == UInt8(ascii: "-"), let month = number(5, 2),
            b[7] == UInt8(ascii: "-"), let day = number(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: " "),
            let hour = number(11, 2), b[13] == UInt8(ascii: ":"), let minute = number(14, 2),
            b[16] == UInt8(ascii: ":"), let second = number(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= Self.daysInMonth(year: year, month: month), hour <= 23,
            minute <= 59, second <= 59
        else { return nil }
        var index = 19
        var micros: Int64 = 0
        if index < b.count && b[index] == UInt8(ascii: ".") {
            index += 1
            var digits = 0
            while index < b.count && b[index] >= 48 && b[index] <= 57 {
                if digits < 6 { micros = micros * 10 + Int64(b[index] - 48) }
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            for _ in min(digits, 6)..<6 { micros *= 10 }
        }
        var offsetSeconds = 0
        if index < b.count {
            if b[index] == UInt8(ascii: "Z") && index == b.count - 1 {
                index += 1
            } else if (b[index] == UInt8(ascii: "+") || b[index] == UInt8(ascii: "-")) && b.count == index + 6,
                let oh = number(index + 1, 2), b[index + 3] == UInt8(ascii: ":"), let om = number(index + 4, 2),
                oh <= 23, om <= 59
            {
                offsetSeconds = (oh * 3600 + om * 60) * (b[index] == UInt8(ascii: "-") ? -1 : 1)
                index += 6
            } else {
                return nil
            }
        }
        let base = Timestamp(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        return Timestamp(microseconds: base.microseconds + micros - Int64(offsetSeconds) * 1_000_000)
    }

    /// ISO 8601 UTC text: `2022-01-28T15:36:21Z`, with `.ffffff` only when there is a fraction.
    public var iso8601: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(27)
        appendISO8601(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `iso8601`'s bytes to `out`, without building Strings for the years 0 to 9999 (the
    /// lines and answers written by the thousand); a year outside them is written in decimal,
    /// padded with zeros in front (of its sign too) to four characters.
    public func appendISO8601(to out: inout [UInt8]) {
        let seconds = floorDiv(microseconds, 1_000_000)
        let micros = Int(microseconds - seconds * 1_000_000)
        let (year, month, day) = Self.civil(fromDays: floorDiv(seconds, 86_400))
        let secondOfDay = Int(seconds - floorDiv(seconds, 86_400) * 86_400)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                divisor /= 10
            }
        }
        if (0...9999).contains(year) {
            digits(year, 4)
        } else {
            let text = String(year)
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: max(0, 4 - text.utf8.count)))
            out.append(contentsOf: text.utf8)
        }
        out.append(UInt8(ascii: "-"))
        digits(month, 2)
        out.append(UInt8(ascii: "-"))
        digits(day, 2)
        out.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3600, 2)
        out.append(UInt8(ascii: ":"))
        digits(secondOfDay / 60 % 60, 2)
        out.append(UInt8(ascii: ":"))
        digits(secondOfDay % 60, 2)
        if micros != 0 {
            out.append(UInt8(ascii: "."))
            digits(micros, 6)
        }
        out.append(UInt8(ascii: "Z"))
    }
}

extension Timestamp: CustomStringConvertible {
    public var description: String { iso8601 }
}
