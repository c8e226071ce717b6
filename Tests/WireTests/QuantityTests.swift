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
