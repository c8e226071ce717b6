import Testing
import Wire

@testable import Connector

@Suite("Connector meter rules")
struct MeterRuleTests {
    static func rule(_ json: String) throws -> MeterRule {
        try MeterRule(json: try JSONParser.parse(json), path: "meter")
    }

    static let calls = try! rule(
        #"""
        {"name":"calls","filter":[{"field":"status","prefix":"2"},{"field":"method","in":["GET","POST"]},{"field":"path","prefix":"/v1/"}],
         "subscription":{"field":"sub"},"timestamp":"time","quantity":{"count":true,"scale":0.001}}
        """#)

    static let egress = try! rule(
        #"{"name":"egress","subscription":{"field":"sub","as":"resourceUri"},"timestamp":"time","quantity":{"sum":"bytes","scale":"0.000001"}}"#
    )

    func record(_ json: String) -> Record { try! RecordParser.ndjson(Array(json.utf8)).get() }

    @Test("A record counts when every condition holds; a missing field never matches")
    func filters() {
        let hit = record(#"{"status":200,"method":"GET","path":"/v1/orders","sub":"s-1","time":"2024-05-01T10:59:59.999Z"}"#)
        #expect(
            Self.calls.evaluate(hit)
                == .counted(subscription: "s-1", time: Timestamp(iso8601: "2024-05-01T10:59:59.999Z")!, amount: Quantity(1)))
        #expect(
            Self.calls.evaluate(record(#"{"status":500,"method":"GET","path":"/v1/x","sub":"s","time":"2024-05-01T10:00:00Z"}"#))
                == .skipped)
        #expect(
            Self.calls.evaluate(record(#"{"status":200,"method":"PUT","path":"/v1/x","sub":"s","time":"2024-05-01T10:00:00Z"}"#))
                == .skipped)
        #expect(
            Self.calls.evaluate(record(#"{"status":200,"method":"GET","path":"/v2/x","sub":"s","time":"2024-05-01T10:00:00Z"}"#))
                == .skipped)
        #expect(Self.calls.evaluate(record(#"{"method":"GET","path":"/v1/x","sub":"s","time":"2024-05-01T10:00:00Z"}"#)) == .skipped)
    }

    @Test("A selected record without a usable subscription, time or number is malformed, naming the field")
    func malformed() {
        func outcome(_ json: String) -> String {
            if case .malformed(let reason) = Self.egress.evaluate(record(json)) { return reason }
            return "not malformed"
        }
        #expect(outcome(#"{"time":"2024-05-01T10:00:00Z","bytes":1}"#) == #"no subscription in "sub""#)
        #expect(outcome(#"{"sub":"","time":"2024-05-01T10:00:00Z","bytes":1}"#) == #"no subscription in "sub""#)
        #expect(outcome(#"{"sub":"s","bytes":1}"#) == #"no timestamp in "time""#)
        #expect(outcome(#"{"sub":"s","time":"yesterday","bytes":1}"#) == #""yesterday" in "time" is not a iso8601 time"#)
        #expect(outcome(#"{"sub":"s","time":"2024-05-01T10:00:00Z"}"#) == #"no number in "bytes""#)
        #expect(outcome(#"{"sub":"s","time":"2024-05-01T10:00:00Z","bytes":"lots"}"#) == #""lots" in "bytes" is not a decimal number"#)
        #expect(outcome(#"{"sub":"s","time":"2024-05-01T10:00:00Z","bytes":-5}"#) == #""-5" in "bytes" is negative"#)
        let long = String(repeating: "x", count: 1025)
        #expect(outcome(#"{"sub":"\#(long)","time":"2024-05-01T10:00:00Z","bytes":1}"#).hasSuffix("longer than 1024 bytes"))
    }

    @Test("A sum keeps the field's exact decimal value")
    func exactSum() {
        let outcome = Self.egress.evaluate(record(#"{"sub":"/subscriptions/x","time":"2024-05-01T10:00:00+02:00","bytes":"0.1"}"#))
        #expect(
            outcome
                == .counted(
                    subscription: "/subscriptions/x", time: Timestamp(iso8601: "2024-05-01T08:00:00Z")!, amount: Quantity(exactly: "0.1")!))
    }

    @Test("Unix times in seconds or milliseconds are read exactly: the last microsecond of an hour stays in it")
    func unixTimes() {
        let hourEnd = Timestamp(iso8601: "2024-05-01T12:59:59.999999Z")!
        #expect(MeterRule.time("1714568399.999999", format: .unixSeconds) == hourEnd)
        #expect(MeterRule.time("1714568399999.999", format: .unixMilliseconds) == hourEnd)
        #expect(MeterRule.time("1714568400", format: .unixSeconds)?.iso8601 == "2024-05-01T13:00:00Z")
        #expect(MeterRule.time("-1", format: .unixSeconds) == nil)
        #expect(MeterRule.time("1e30", format: .unixSeconds) == nil)
        #expect(MeterRule.time("soon", format: .unixMilliseconds) == nil)
        #expect(MeterRule.time("1969-12-31T23:59:59Z", format: .iso8601) == nil)
    }

    @Test("The scale is applied exactly (1234 calls × 0.001 = 1.234), rounding half to even only past 18 decimals")
    func scaling() {
        #expect(Self.calls.quantity(Quantity(1234)) == Quantity(exactly: "1.234"))
        #expect(Self.egress.quantity(Quantity(exactly: "1048576.5")!) == Quantity(exactly: "1.0485765"))
        let tiny = Quantity(units: 5)  // 5e-18
        #expect(MeterRule.multiply(tiny, Quantity(exactly: "0.1")!) == Quantity(units: 0))  // 0.5e-18 → 0 (even)
        #expect(MeterRule.multiply(Quantity(units: 15), Quantity(exactly: "0.1")!) == Quantity(units: 2))  // 1.5e-18 → 2
        #expect(MeterRule.multiply(Quantity(units: 25), Quantity(exactly: "0.1")!) == Quantity(units: 2))  // 2.5e-18 → 2
        #expect(MeterRule.multiply(Quantity(exactly: "100000000000000000000")!, Quantity(10)) == nil)
    }
}
