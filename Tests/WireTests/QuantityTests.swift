import Testing
import Wire

@Suite("Exact decimal quantities")
struct QuantityTests {
    @Test("ten usages of 0.1 are exactly 1")
    func tenTenthsAreOne() throws {
        var total = Quantity.zero
        for _ in 0..<10 { total += try #require(Quantity(exactly: "0.1")) }
        #expect(total == Quantity(1))
        #expect(total.description == "1")
    }

    @Test(
        "decimal texts parse exactly and print in shortest form",
        arguments: [
            ("1000", "1000"), ("1000.123", "1000.123"), ("0.000000000000000001", "0.000000000000000001"),
            ("1.5e3", "1500"), ("25E-2", "0.25"), ("-0.5", "-0.5"), ("9.1234567890123461", "9.1234567890123461"),
            ("1.10000", "1.1"), ("0", "0"), ("170141183460469231731", "170141183460469231731"),
        ])
    func parsesExactly(text: String, printed: String) throws {
        #expect(try #require(Quantity(exactly: text)).description == printed)
    }

    /// The shortest exact decimal text built from Strings the plain way (as `description` did
    /// before it wrote bytes): the oracle for the bytes.
    static func reference(_ quantity: Quantity) -> String {
        let magnitude = quantity.units.magnitude
        let one = UInt128(Quantity.unitsPerOne)
        var fraction = magnitude % one
        var text = (quantity.units < 0 ? "-" : "") + String(magnitude / one)
        if fraction != 0 {
            var places = Quantity.scale
            while fraction % 10 == 0 {
                fraction /= 10
                places -= 1
            }
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: places - digits.count) + digits
        }
        return text
    }

    @Test("the bytes written without a String are the shortest exact text, for random quantities of every size and sign")
    func appendedBytesAreTheDescription() {
        var random = SplitMix64(seed: 3)
        var samples: [Quantity] = [.zero, .largest, Quantity(units: -Int128.max), Quantity(units: 1), Quantity(units: -1)]
        for _ in 0..<20_000 {
            let high = Int128(Int64(bitPattern: random.next()) >> Int(random.next() % 64))
            let units = high << Int(random.next() % 65) | Int128(random.next() % 1_000_000)
            samples.append(Quantity(units: units))
        }
        for edge: Int128 in [1_000_000_000_000_000_000, 18_446_744_073_709_551_615, 18_446_744_073_709_551_616] {
            samples += [Quantity(units: edge), Quantity(units: edge - 1), Quantity(units: -edge), Quantity(units: edge * 10_000)]
        }
        for quantity in samples {
            var bytes: [UInt8] = [0x41]
            quantity.appendDescription(to: &bytes)
            #expect(bytes == [0x41] + Array(Self.reference(quantity).utf8), "\(quantity.units)")
            #expect(quantity.description == Self.reference(quantity))
        }
    }

    @Test("more than 18 decimal places or more than about 1.7e20 is refused, never rounded")
    func refusesWhatItCannotRepresent() {
        #expect(Quantity.parse("0.0000000000000000001") == .failure(.tooPrecise))
        #expect(Quantity.parse("1e21") == .failure(.outOfRange))
        #expect(Quantity.parse("abc") == .failure(.notANumber))
        #expect(Quantity.parse("1e99999") == .failure(.notANumber))
        #expect(Quantity.parse("") == .failure(.notANumber))
        #expect(Quantity.parse("0.1000000000000000000000") == .success(Quantity(units: 100_000_000_000_000_000)))
    }
}

@Suite("Quantities at the edges of their range")
struct QuantityRangeTests {
    @Test(
        "a text is scaled to units in one multiplication, exact up to the largest quantity and refused one unit of its scale beyond",
        arguments: [
            ("1e20", Int128?.some(100_000_000_000_000_000_000_000_000_000_000_000_000)), ("2e20", nil),
            ("170141183460469231731", 170_141_183_460_469_231_731_000_000_000_000_000_000), ("170141183460469231732", nil),
            ("0.000000000000000001", 1), ("12e-18", 12), ("1.000000000000000001", 1_000_000_000_000_000_001),
            ("0.1e-17", 1), ("10e19", 100_000_000_000_000_000_000_000_000_000_000_000_000), ("100e19", nil),
        ])
    func scaledInOneStep(text: String, units: Int128?) {
        switch Quantity.parse(text) {
        case .success(let quantity): #expect(quantity.units == units, "\(text)")
        case .failure(let error):
            #expect(units == nil, "\(text): \(error)")
            #expect(error == .outOfRange, "\(text)")
        }
    }

    @Test(
        "a text one unit past the range is refused, never trapped on, in every spelling",
        arguments: [
            "170141183460469231731.687303715884105728", "170141183460469231731.687303715884105729",
            "170141183460469231731687303715884105728e-18", "-170141183460469231731.687303715884105728",
        ])
    func onePastTheRange(text: String) {
        #expect(Quantity.parse(text) == .failure(.outOfRange))
    }

    @Test("the largest quantity prints and parses back, and so does its negation")
    func largestRoundTrips() {
        #expect(Quantity(exactly: Quantity.largest.description) == .largest)
        #expect(Quantity(exactly: "-" + Quantity.largest.description) == Quantity(units: -Int128.max))
        #expect(Quantity.parse("1.70141183460469231731687303715884105728") == .failure(.tooPrecise))
    }

    @Test("checked and saturating sums report what leaves the range instead of trapping")
    func checkedSums() {
        let one = Quantity(units: 1)
        #expect(Quantity.largest.adding(one) == nil)
        #expect(Quantity.largest.adding(.zero) == .largest)
        #expect(Quantity(units: -Int128.max).subtracting(Quantity(units: 2)) == nil)
        #expect(Quantity.largest.saturatingAdding(one) == .largest)
        #expect(Quantity(units: -Int128.max).saturatingAdding(Quantity(units: -5)) == Quantity(units: -Int128.max))
        #expect(Quantity.saturatingSum([.largest, one]) == (.largest, true))
        #expect(Quantity.saturatingSum([Quantity(1), Quantity(2)]) == (Quantity(3), false))
    }

    @Test("scaling by a ratio is exact on 256 bits and refuses only results out of range")
    func scaling() {
        #expect(Quantity.largest.scaled(by: 94_694_400, dividedBy: 94_694_400) == .largest)
        #expect(Quantity.largest.scaled(by: Int128.max, dividedBy: Int128.max) == .largest)
        #expect(Quantity.largest.scaled(by: 2, dividedBy: 1) == nil)
        #expect(Quantity(units: 10).scaled(by: -3, dividedBy: 2) == Quantity(units: -15))
        #expect(Quantity(units: 7).scaled(by: 1, dividedBy: 0) == nil)
        // 3·10¹⁷ over a 31-day month, one hour in: 3·10³⁵ units × 2,678,400 ÷ 3600 passes the range.
        #expect(Quantity(exactly: "300000000000000000")?.scaled(by: 2_678_400, dividedBy: 3600) == nil)
        #expect(Quantity(exactly: "300000000000")?.scaled(by: 2_678_400, dividedBy: 3600) == Quantity(exactly: "223200000000000"))
    }
}

@Suite("Timestamps")
struct TimestampTests {
    @Test(
        "the reference's formats parse",
        arguments: [
            ("2022-01-28T15:36:21Z", "2022-01-28T15:36:21Z"), ("2022-01-28T15:36:21.1234Z", "2022-01-28T15:36:21.123400Z"),
            ("2021-12-14T01:00:00", "2021-12-14T01:00:00Z"), ("2021-12-14T20:29:42.0177668Z", "2021-12-14T20:29:42.017766Z"),
            ("2024-02-29T23:59:59+01:00", "2024-02-29T22:59:59Z"),
        ])
    func parses(text: String, normalized: String) throws {
        #expect(try #require(Timestamp(iso8601: text)).iso8601 == normalized)
    }

    @Test(
        "impossible dates and malformed texts are rejected",
        arguments: [
            "2023-02-29T00:00:00Z", "2022-13-01T00:00:00Z", "2022-01-32T00:00:00Z", "2022-01-01T24:00:00Z", "2022-01-01",
            "yesterday", "2022-01-01T00:00:00ZZ", "2022-01-01T00:00:00.Z",
        ])
    func rejects(text: String) {
        #expect(Timestamp(iso8601: text) == nil)
    }

    @Test("hour and day starts floor correctly, also before 1970")
    func flooring() throws {
        let time = try #require(Timestamp(iso8601: "2024-02-29T13:45:10.5Z"))
        #expect(time.hourStart.iso8601 == "2024-02-29T13:00:00Z")
        #expect(time.dayStart.iso8601 == "2024-02-29T00:00:00Z")
        let early = try #require(Timestamp(iso8601: "1969-12-31T23:30:00Z"))
        #expect(early.hourStart.iso8601 == "1969-12-31T23:00:00Z")
    }
}
