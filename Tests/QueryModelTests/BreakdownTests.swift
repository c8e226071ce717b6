import Billing
import BillingTestSupport
import Testing
import Wire

@testable import QueryModel

@Suite("Usage per property value (breakdowns) in the read model")
struct BreakdownTests {
    /// Five meters, each with usage for four values of one property: 20 groups, the shape of the
    /// benchmark's subscriptions.
    static func twentyGroups() -> ViewFold {
        var fold = ViewFold()
        fold.apply(
            Messages.purchase("sub-1", start: "2024-03-01T00:00:00Z", dimensions: RunRateTests.plan), at: "2024-03-01T00:00:00Z")
        for meter in ["email", "sms", "storage", "seats", "calls"] {
            for campaign in ["c3", "c1", "c0", "c2"] {
                fold.apply(
                    Messages.usage("sub-1", meter, "1.25", properties: ["campaign": campaign]), at: "2024-03-01T10:00:00Z")
            }
        }
        return fold
    }

    @Test("20 groups of a subscription take at most 70 heap bytes each (a hash table of them took over 100)")
    func memoryOfTwentyGroups() throws {
        let fold = Self.twentyGroups()
        let breakdown = try #require(fold.view.subscriptionViews["sub-1"]?.breakdown)
        #expect(breakdown.count == 20)
        print("breakdown of 20 groups: \(breakdown.heapBytes) heap bytes")
        #expect(breakdown.heapBytes <= 20 * 70, "\(breakdown.heapBytes) heap bytes for 20 groups")
    }

    @Test("groups added in any order are answered by quantity and value, and written in (meter, property, value) order")
    func orderKept() throws {
        var fold = Self.twentyGroups()
        fold.apply(Messages.usage("sub-1", "sms", "5", properties: ["campaign": "c0"]), at: "2024-03-01T10:30:00Z")
        let answer = try #require(fold.view.breakdownJSON(ResourceName(resourceId: "sub-1"), meterName: "sms", property: "campaign"))
        #expect(answer["groups"]?.arrayValue?.compactMap { $0["value"]?.stringValue } == ["c0", "c1", "c2", "c3"])
        #expect(number(answer["groups"]?.arrayValue?.first?["quantity"]) == Quantity(exactly: "6.25"))
        let written = fold.view.snapshot()["breakdowns"]?.arrayValue?.first?["groups"]?.arrayValue ?? []
        let keys = written.map { "\($0["meterName"]?.stringValue ?? "")/\($0["value"]?.stringValue ?? "")" }
        #expect(keys.count == 20)
        #expect(keys == keys.sorted())
        let restored = try PartitionView(snapshot: fold.view.snapshot())
        #expect(restored.subscriptionViews["sub-1"]?.breakdown == fold.view.subscriptionViews["sub-1"]?.breakdown)
    }
}
