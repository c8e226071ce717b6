import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Included quantities, overage and hours")
struct IncludedQuantityTests {
    static let plan: JSONValue = [
        "nde": Messages.simple("nodecharge", included: 1000),
        "cpu": Messages.simple("cpucharge", included: "Infinite"),
        "dta": Messages.simple("datasourcecharge"),
        "obj": Messages.simple("objectcharge", included: 0),
        "msg": Messages.simple("messagecharge", included: "10000"),
        "tenth": Messages.simple("tenthcharge", included: .number("0.5")),
    ]

    func purchased() -> Fold {
        var fold = Fold()
        fold.apply(Messages.purchase("s", start: "2024-01-10T00:00:00Z", dimensions: Self.plan), at: "2024-01-10T00:00:00Z")
        return fold
    }

    @Test("usage consumes the included quantity first and one event may split into included and overage")
    func splitInsideOneEvent() {
        var fold = purchased()
        fold.apply(Messages.usage("s", "nde", "700"), at: "2024-01-10T10:05:00Z")
        fold.apply(Messages.usage("s", "nde", "450"), at: "2024-01-10T10:10:00Z")
        #expect(fold.meter("s", "nde")?["remaining"] == 0)
        #expect(fold.meter("s", "nde")?["overage"] == 150)
        fold.apply(Messages.usage("s", "nde", "25"), at: "2024-01-10T10:50:00Z")
        fold.ping(at: "2024-01-10T11:00:00Z")
        #expect(fold.pendingSummary == ["nodecharge@2024-01-10T10=175"])
    }

    @Test("an Infinite included quantity is counted but never reported; absent or 0 means all of it is overage")
    func infiniteAndZero() {
        var fold = purchased()
        for meter in ["cpu", "dta", "obj"] { fold.apply(Messages.usage("s", meter, "4"), at: "2024-01-10T10:05:00Z") }
        fold.ping(at: "2024-01-10T11:00:00Z")
        #expect(fold.pendingSummary == ["datasourcecharge@2024-01-10T10=4", "objectcharge@2024-01-10T10=4"])
        #expect(fold.meter("s", "cpu")?["consumed"] == 4)
        #expect(fold.meter("s", "cpu")?["remaining"] == "Infinite")
        #expect(fold.meter("s", "dta")?["included"] == 0)
    }

    @Test("ten usages of 0.1 are reported as exactly 1")
    func exactDecimals() {
        var fold = purchased()
        for minute in 0..<10 {
            fold.apply(Messages.usage("s", "obj", "0.1"), at: at("2024-01-10T10:00:00Z").adding(microseconds: Int64(minute) * 60_000_000))
        }
        for _ in 0..<10 { fold.apply(Messages.usage("s", "tenth", "0.1"), at: "2024-01-10T10:30:00Z") }
        fold.ping(at: "2024-01-10T11:00:00Z")
        #expect(fold.pendingItem("objectcharge", hour: "2024-01-10T10:00:00Z")?.quantity == Quantity(1))
        #expect(fold.pendingItem("tenthcharge", hour: "2024-01-10T10:00:00Z")?.quantity == quantity("0.5"))
    }

    @Test("an hour closes only when the partition clock reaches its end, and a Ping is enough to close it")
    func hourClosing() {
        var fold = purchased()
        fold.apply(Messages.usage("s", "dta", "2"), at: "2024-01-10T10:15:00Z")
        fold.ping(at: "2024-01-10T10:59:59.999999Z")
        #expect(fold.state.pending.isEmpty)
        #expect(
            fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["openHours"]?.arrayValue?.first?["start"] == "2024-01-10T10:00:00Z")
        fold.ping(at: "2024-01-10T11:00:00Z")
        let item = fold.state.pending.first
        #expect(fold.state.pending.count == 1)
        #expect(item?.effectiveStartTime == at("2024-01-10T10:00:00Z"))
        #expect(item?.readySince == at("2024-01-10T11:00:00Z"))
        #expect(item?.planId == "plan")
        #expect(item?.resource == ResourceName(resourceId: "s"))
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["openHours"] == nil)
    }

    @Test("usage in consecutive hours gives one item per hour, and all-included usage gives none")
    func itemsPerHour() {
        var fold = purchased()
        fold.apply(Messages.usage("s", "dta", "1"), at: "2024-01-10T10:15:00Z")
        fold.apply(Messages.usage("s", "dta", "2"), at: "2024-01-10T11:15:00Z")
        fold.apply(Messages.usage("s", "msg", "9999"), at: "2024-01-10T11:16:00Z")
        fold.apply(Messages.usage("s", "dta", "3"), at: "2024-01-10T14:15:00Z")
        fold.ping(at: "2024-01-11T00:00:00Z")
        #expect(
            fold.pendingSummary == [
                "datasourcecharge@2024-01-10T10=1", "datasourcecharge@2024-01-10T11=2", "datasourcecharge@2024-01-10T14=3",
            ])
    }

    @Test("the enqueued time decides the hour, not the sender's timestamp")
    func enqueuedTimeDecides() {
        var fold = purchased()
        var usage = Messages.usage("s", "dta", "1")
        if case .object(var envelope) = usage, case .object(var value)? = envelope["value"] {
            value["timestamp"] = "2024-01-10T03:00:00Z"
            envelope["value"] = .object(value)
            usage = .object(envelope)
        }
        fold.apply(usage, at: "2024-01-10T10:15:00Z")
        fold.ping(at: "2024-01-10T12:00:00Z")
        #expect(fold.pendingSummary == ["datasourcecharge@2024-01-10T10=1"])
    }

    @Test("several subscriptions close their hours together and pending is ordered by hour, resource and dimension")
    func ordering() {
        var fold = Fold()
        for name in ["b", "a"] {
            fold.apply(Messages.purchase(name, start: "2024-01-10T00:00:00Z", dimensions: Self.plan), at: "2024-01-10T00:00:00Z")
        }
        fold.apply(Messages.usage("b", "obj", "1"), at: "2024-01-10T09:00:00Z")
        fold.apply(Messages.usage("b", "dta", "1"), at: "2024-01-10T10:00:00Z")
        fold.apply(Messages.usage("a", "obj", "1"), at: "2024-01-10T10:01:00Z")
        fold.ping(at: "2024-01-10T11:00:00Z")
        let order = fold.state.pending.map { "\($0.resource)/\($0.dimension)/\(hourText($0.effectiveStartTime))" }
        #expect(order == ["b/objectcharge/2024-01-10T09", "a/objectcharge/2024-01-10T10", "b/datasourcecharge/2024-01-10T10"])
    }
}
