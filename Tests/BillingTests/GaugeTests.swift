import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Gauge dimensions (max and last)")
struct GaugeTests {
    static let plan: JSONValue = [
        "seats": Messages.simple("seatcharge", included: 5, aggregation: "max"),
        "users": Messages.simple("usercharge", aggregation: "last"),
        "vms": Messages.simple("vmcharge", included: "Infinite", aggregation: "max"),
    ]

    @Test("max and last are reported once, right after the period closes, for the period's last hour")
    func reportedAfterPeriod() {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-01-31T12:00:00Z", dimensions: Self.plan), at: "2024-01-31T12:00:00Z")
        fold.apply(Messages.usage("s", "seats", "3"), at: "2024-02-01T10:00:00Z")
        fold.apply(Messages.usage("s", "seats", "9"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("s", "seats", "4"), at: "2024-02-20T10:00:00Z")
        fold.apply(Messages.usage("s", "users", "7"), at: "2024-02-01T10:00:00Z")
        fold.apply(Messages.usage("s", "users", "2.5"), at: "2024-02-20T10:00:00Z")
        fold.apply(Messages.usage("s", "vms", "1000"), at: "2024-02-20T10:00:00Z")
        fold.ping(at: "2024-02-28T23:59:59Z")
        #expect(fold.state.pending.isEmpty)
        #expect(fold.meter("s", "seats")?["value"] == 9)
        #expect(fold.meter("s", "users")?["value"] == .number("2.5"))
        fold.ping(at: "2024-02-29T00:00:00Z")
        #expect(fold.pendingSummary == ["seatcharge@2024-02-28T23=4", "usercharge@2024-02-28T23=2.5"])
        #expect(fold.state.pending.allSatisfy { $0.readySince == at("2024-02-29T00:00:00Z") })
        // The new period starts without a value: nothing is reported for a period without reports.
        #expect(fold.meter("s", "seats")?["value"] == .null)
        fold.ping(at: "2024-04-01T00:00:00Z")
        #expect(fold.state.pending.count == 2)
    }

    @Test("a gauge within its included quantity reports nothing")
    func withinIncluded() {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-01-01T00:00:00Z", dimensions: Self.plan), at: "2024-01-01T00:00:00Z")
        fold.apply(Messages.usage("s", "seats", "5"), at: "2024-01-02T00:00:00Z")
        fold.ping(at: "2024-02-01T00:00:00Z")
        #expect(fold.state.pending.isEmpty)
    }
}
