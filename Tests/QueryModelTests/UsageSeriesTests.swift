import Billing
import BillingTestSupport
import Testing
import Wire

@testable import QueryModel

@Suite("Usage per day of the period (the run-rate page's chart)")
struct UsageSeriesTests {
    /// Bought on 2024-01-31 (monthly): the period in February 2024 is 2024-01-31 to 2024-02-29.
    static func bought() -> ViewFold {
        var fold = ViewFold()
        fold.apply(Messages.purchase("sub-1", start: "2024-01-31T08:00:00Z", dimensions: RunRateTests.plan), at: "2024-02-10T00:00:00Z")
        return fold
    }

    /// The meter's series in the `runrate` answer asked with `series`.
    static func series(_ fold: ViewFold, _ meterName: String) -> JSONObject? {
        fold.view.runRateJSON(ResourceName(resourceId: "sub-1"), series: true)?["meters"]?.arrayValue?
            .first { $0["meterName"] == .string(meterName) }?["series"]?.objectValue
    }

    /// `date quantity` per point, short to read in expectations.
    static func points(_ fold: ViewFold, _ meterName: String) -> [String] {
        (series(fold, meterName)?["points"]?.arrayValue ?? []).map { point in
            "\(point["start"]?.stringValue ?? "?") \(number(point["quantity"]).map { "\($0)" } ?? "?")"
        }
    }

    @Test("usage counts on the UTC day it was recorded, only days with usage appear, and the days add up to consumed exactly")
    func perDay() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "email", "999.9"), at: "2024-02-10T10:05:00Z")
        for _ in 0..<10 { fold.apply(Messages.usage("sub-1", "email", "0.1"), at: "2024-02-10T23:59:59Z") }
        fold.apply(Messages.usage("sub-1", "email", "0.000000000000000001"), at: "2024-02-12T00:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "321.5"), at: "2024-02-12T13:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "7"), at: "2024-02-15T01:00:00Z")
        #expect(Self.series(fold, "email")?["step"] == "day")
        #expect(Self.points(fold, "email") == ["2024-02-10 1000.9", "2024-02-12 321.500000000000000001", "2024-02-15 7"])
        let total = Self.points(fold, "email").compactMap { quantity(String($0.split(separator: " ")[1])) }.reduce(.zero, +)
        #expect(number(fold.meter("sub-1", "email")?["consumed"]) == total)
        #expect(Self.points(fold, "sms").isEmpty)
        #expect(Self.series(fold, "sms")?["step"] == "day")
    }

    @Test("quantities keep every digit through the packing of earlier days, up to the largest quantity")
    func exactPacking() throws {
        var fold = Self.bought()
        let figures = [
            "170141183460469231731.687303715884105727", "0.000000000000000001", "1", "10", "100000000000000000000", "12.3456789",
            "100000000.000000001",
        ]
        for (day, figure) in figures.enumerated() {
            let time = "2024-02-\(10 + day)T12:00:00Z"
            // A summed meter cannot take the largest quantity and more: a max gauge can.
            if day > 0 { fold.apply(Messages.usage("sub-1", "storage", figure), at: time) }
            fold.apply(Messages.usage("sub-1", "seats", figure), at: time)
        }
        let expected = figures.enumerated().map { "2024-02-\(10 + $0.offset) \($0.element)" }
        #expect(Self.points(fold, "storage") == Array(expected.dropFirst()))
        #expect(Self.points(fold, "seats") == expected)
    }

    @Test("a max gauge keeps each day's largest report, a last gauge each day's latest")
    func gauges() throws {
        var fold = ViewFold()
        let plan: JSONValue = [
            "seats": Messages.simple("seat-dim", included: 5, aggregation: "max"),
            "nodes": Messages.simple("node-dim", included: 2, aggregation: "last"),
        ]
        fold.apply(Messages.purchase("sub-1", start: "2024-02-01T00:00:00Z", dimensions: plan), at: "2024-02-01T00:00:00Z")
        for (figure, time) in [
            ("7", "2024-02-03T01:00:00Z"), ("9", "2024-02-03T02:00:00Z"), ("4", "2024-02-03T03:00:00Z"), ("3", "2024-02-04T00:00:00Z"),
        ] {
            fold.apply(Messages.usage("sub-1", "seats", figure), at: time)
            fold.apply(Messages.usage("sub-1", "nodes", figure), at: time)
        }
        #expect(Self.points(fold, "seats") == ["2024-02-03 9", "2024-02-04 3"])
        #expect(Self.points(fold, "nodes") == ["2024-02-03 4", "2024-02-04 3"])
    }

    @Test("a waterfall meter's day is all its usage that day, whichever tiers it fell in")
    func waterfall() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "calls", "150"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "calls", "900"), at: "2024-02-10T11:00:00Z")
        fold.apply(Messages.usage("sub-1", "calls", "25"), at: "2024-02-11T11:00:00Z")
        #expect(Self.points(fold, "calls") == ["2024-02-10 1050", "2024-02-11 25"])
    }

    @Test("the renewal starts an empty series; a plan change keeps it, as the period goes on")
    func resets() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "email", "1200"), at: "2024-02-28T22:00:00Z")
        fold.ping(at: "2024-02-29T01:00:00Z")
        #expect(Self.points(fold, "email").isEmpty)
        fold.apply(Messages.usage("sub-1", "email", "5"), at: "2024-03-02T01:00:00Z")
        #expect(Self.points(fold, "email") == ["2024-03-02 5"])
        fold.apply(
            Messages.purchase("sub-1", start: "2024-01-31T08:00:00Z", planId: "other", dimensions: RunRateTests.plan),
            at: "2024-03-03T00:00:00Z")
        #expect(Self.points(fold, "email") == ["2024-03-02 5"])
    }

    @Test("a yearly period is charted per UTC calendar month, its first step starting on the period's first day")
    func yearly() throws {
        var fold = ViewFold()
        fold.apply(
            Messages.purchase("sub-1", start: "2024-01-31T08:00:00Z", interval: "Annually", dimensions: RunRateTests.plan),
            at: "2024-01-31T08:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "2"), at: "2024-01-31T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "3"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "4"), at: "2024-02-29T23:59:59Z")
        fold.apply(Messages.usage("sub-1", "email", "5"), at: "2024-05-01T00:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "6"), at: "2025-01-30T23:00:00Z")
        #expect(Self.series(fold, "email")?["step"] == "month")
        #expect(Self.points(fold, "email") == ["2024-01-31 2", "2024-02-01 7", "2024-05-01 5", "2025-01-01 6"])
    }

    @Test("the series is in the answer only when asked for, so other answers keep their size")
    func onlyWhenAsked() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "email", "3"), at: "2024-02-10T10:00:00Z")
        #expect(fold.meter("sub-1", "email")?["series"] == nil)
        #expect(Self.series(fold, "email") != nil)
    }

    @Test("a snapshot keeps the series, and the restored view goes on adding to the same day")
    func snapshot() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "email", "3.5"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "seats", "8"), at: "2024-02-11T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "email", "2"), at: "2024-02-11T10:00:00Z")
        var restored = ViewFold(view: try PartitionView(snapshot: fold.view.snapshot()), records: fold.records)
        #expect(JSONWriter.string(restored.view.snapshot()) == JSONWriter.string(fold.view.snapshot()))
        fold.apply(Messages.usage("sub-1", "email", "1"), at: "2024-02-11T11:00:00Z")
        restored.apply(Messages.usage("sub-1", "email", "1"), at: "2024-02-11T11:00:00Z")
        #expect(Self.points(restored, "email") == ["2024-02-10 3.5", "2024-02-11 3"])
        #expect(Self.points(restored, "seats") == ["2024-02-11 8"])
        #expect(JSONWriter.string(restored.view.snapshot()) == JSONWriter.string(fold.view.snapshot()))
    }

    @Test("a snapshot written before the series existed loads with an empty series that fills from new usage")
    func olderSnapshot() throws {
        var fold = Self.bought()
        fold.apply(Messages.usage("sub-1", "email", "3.5"), at: "2024-02-10T10:00:00Z")
        guard case .object(var snapshot) = fold.view.snapshot() else { throw ModelError("snapshot is not an object") }
        snapshot["series"] = nil
        var restored = ViewFold(view: try PartitionView(snapshot: .object(snapshot)), records: fold.records)
        #expect(Self.points(restored, "email").isEmpty)
        restored.apply(Messages.usage("sub-1", "email", "1"), at: "2024-02-11T11:00:00Z")
        #expect(Self.points(restored, "email") == ["2024-02-11 1"])
        #expect(number(restored.meter("sub-1", "email")?["consumed"]) == quantity("4.5"))
    }

    @Test(
        "a damaged series in a snapshot is refused with a reason",
        arguments: [
            #"{"subscription":"sub-1","periodStart":"2024-01-31T00:00:00Z","meters":[{"meterName":"email","kind":"sum","steps":[1,1],"quantities":[1,2]}]}"#,
            #"{"subscription":"sub-1","periodStart":"2024-01-31T00:00:00Z","meters":[{"meterName":"email","kind":"sum","steps":[1],"quantities":[]}]}"#,
            #"{"subscription":"sub-1","periodStart":"2024-01-31T00:00:00Z","meters":[{"meterName":"email","kind":"avg","steps":[],"quantities":[]}]}"#,
            #"{"subscription":"sub-1","periodStart":"2024-01-31T00:00:00Z","meters":[{"meterName":"email","kind":"sum","steps":[0],"quantities":[-1]}]}"#,
            #"{"subscription":"sub-1","periodStart":"yesterday","meters":[]}"#,
        ])
    func damagedSnapshot(_ series: String) throws {
        guard case .object(var snapshot) = Self.bought().view.snapshot() else { throw ModelError("snapshot is not an object") }
        snapshot["series"] = .array([try JSONParser.parse(series)])
        #expect(throws: ModelError.self) { try PartitionView(snapshot: .object(snapshot)) }
    }

    @Test("a first day of usage on five meters keeps the series within 64 bytes per subscription meter")
    func memoryOfADay() throws {
        var fold = ViewFold()
        let plan: JSONValue = [
            "a": Messages.simple("a-dim", included: 1000), "b": Messages.simple("b-dim"), "c": Messages.simple("c-dim", included: 1),
            "d": Messages.simple("d-dim", aggregation: "max"), "e": Messages.waterfall([("e-1", "100"), ("e-2", "1000")]),
        ]
        fold.apply(Messages.purchase("sub-1", start: "2024-03-01T00:00:00Z", dimensions: plan), at: "2024-03-01T00:00:00Z")
        for meter in ["a", "b", "c", "d", "e"] { fold.apply(Messages.usage("sub-1", meter, "12.5"), at: "2024-03-01T10:00:00Z") }
        let series = try #require(fold.view.subscriptionViews["sub-1"]?.series)
        print("usage series of 5 meters × 1 day: \(series.heapBytes) heap bytes")
        #expect(series.heapBytes / 5 <= 64, "\(series.heapBytes) heap bytes for 5 meters × 1 day")
    }

    @Test("a month of usage every day on five meters keeps the series within 256 bytes per subscription meter (of the 1 KiB budget)")
    func memory() throws {
        var fold = ViewFold()
        let plan: JSONValue = [
            "a": Messages.simple("a-dim", included: 1000), "b": Messages.simple("b-dim"), "c": Messages.simple("c-dim", included: 1),
            "d": Messages.simple("d-dim", aggregation: "max"), "e": Messages.waterfall([("e-1", "100"), ("e-2", "1000")]),
        ]
        fold.apply(Messages.purchase("sub-1", start: "2024-03-01T00:00:00Z", dimensions: plan), at: "2024-03-01T00:00:00Z")
        var time = at("2024-03-01T00:30:00Z")
        while time < at("2024-03-31T23:00:00Z") {
            for meter in ["a", "b", "c", "d", "e"] { fold.apply(Messages.usage("sub-1", meter, "12.5"), at: time) }
            time = time.adding(microseconds: 6 * Timestamp.microsecondsPerHour)
        }
        let series = try #require(fold.view.subscriptionViews["sub-1"]?.series)
        #expect(Self.points(fold, "a").count == 31)
        print("usage series of 5 meters × 31 days: \(series.heapBytes) heap bytes")
        let perMeter = series.heapBytes / 5
        #expect(perMeter <= 256, "\(series.heapBytes) heap bytes for 5 meters × 31 days")
    }
}
