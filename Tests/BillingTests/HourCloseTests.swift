import BillingTestSupport
import Testing
import Wire

@testable import Billing

@Suite("Closing a subscription's hours")
struct HourCloseTests {
    @Test("a closed hour's overage becomes its items, and the subscription keeps its list's room for the next hour's")
    func closedHoursKeepTheirRoom() throws {
        var fold = Fold()
        fold.apply(
            Messages.purchase("s", start: "2024-01-10T00:00:00Z", dimensions: ["cpu": Messages.simple("cpu", included: .number("1"))]),
            at: "2024-01-10T00:00:00Z")
        fold.apply(Messages.usage("s", "cpu", "3"), at: "2024-01-10T10:05:00Z")
        #expect(fold.state.subscriptions["s"]?.openHours.map(\.start) == [at("2024-01-10T10:00:00Z")])
        fold.ping(at: "2024-01-10T11:00:00Z")
        let closed = try #require(fold.state.subscriptions["s"])
        #expect(closed.openHours.isEmpty)
        #expect(closed.openHours.capacity >= 1, "the list keeps its room")
        #expect(fold.pendingSummary == ["cpu@2024-01-10T10=2"])
        // The next hour's overage goes into the same list and closes the same way.
        fold.apply(Messages.usage("s", "cpu", "1.5"), at: "2024-01-10T11:30:00Z")
        #expect(fold.state.subscriptions["s"]?.openHours.map(\.start) == [at("2024-01-10T11:00:00Z")])
        fold.ping(at: "2024-01-10T12:00:00Z")
        #expect(fold.state.subscriptions["s"]?.openHours.isEmpty == true)
        #expect(fold.pendingSummary == ["cpu@2024-01-10T10=2", "cpu@2024-01-10T11=1.5"])
    }
}
