import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Late usage and event-time attribution")
struct LateUsageTests {
    static let plan: JSONValue = [
        "email": Messages.simple("emails", included: 100),
        "seats": Messages.simple("seats", included: 5, aggregation: "max"),
    ]

    /// Event-time attribution with a two-hour grace, from the first record; bought on 2024-01-31
    /// (periods from Jan 31, Feb 29, Mar 31).
    static func bought(graceSeconds: Int = 7200) -> Fold {
        var fold = Fold()
        fold.apply(Messages.tick(lateGraceSeconds: graceSeconds), at: at("2024-02-01T00:00:00Z"))
        fold.apply(Messages.purchase("s", start: "2024-01-31T09:00:00Z", dimensions: plan), at: "2024-02-01T00:00:00Z")
        return fold
    }

    static func use(_ meter: String, _ quantity: String, at timestamp: String, id: String? = nil) -> JSONValue {
        Messages.usage("s", meter, quantity, timestamp: timestamp, id: id)
    }

    @Test("the tick's attribution decides; usage goes to the hour of its own timestamp, which closes at its end plus the grace")
    func ownHour() throws {
        var fold = Self.bought()
        #expect(fold.state.attribution == .event(lateGrace: 2 * Timestamp.microsecondsPerHour))
        fold.apply(Self.use("email", "100", at: "2024-02-10T09:00:00Z"), at: "2024-02-10T09:00:01Z")
        fold.apply(Self.use("email", "7", at: "2024-02-10T09:59:00Z"), at: "2024-02-10T11:30:00Z")
        fold.apply(Self.use("email", "3", at: "2024-02-10T11:20:00Z"), at: "2024-02-10T11:31:00Z")
        fold.ping(at: "2024-02-10T11:59:59Z")
        #expect(fold.pendingSummary == [])
        fold.ping(at: "2024-02-10T12:00:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-10T09=7"])
        fold.ping(at: "2024-02-10T14:00:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-10T09=7", "emails@2024-02-10T11=3"])
        #expect(fold.state.lateUsage == 0)
    }

    @Test("usage for an hour already closed goes to the oldest open hour and is counted late; a future timestamp counts at the clock")
    func lateAndFuture() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "100", at: "2024-02-10T05:00:00Z"), at: "2024-02-10T05:00:00Z")
        fold.apply(Self.use("email", "4", at: "2024-02-10T06:30:00Z"), at: "2024-02-10T09:10:00Z")
        fold.apply(Self.use("email", "2", at: "2024-02-10T09:12:00Z"), at: "2024-02-10T09:11:00Z")
        #expect(fold.state.lateUsage == 1)
        fold.ping(at: "2024-02-10T10:00:00Z")
        fold.ping(at: "2024-02-10T12:00:00Z")
        // Hour 6 had closed at 9:00: the 4 went to hour 7, the oldest open at 9:10.
        #expect(fold.pendingSummary == ["emails@2024-02-10T07=4", "emails@2024-02-10T09=2"])
    }

    @Test("late usage of the last hours before a renewal counts against the ended period's included quantity, within the grace")
    func acrossRenewal() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "95", at: "2024-02-28T10:00:00Z"), at: "2024-02-28T10:00:00Z")
        fold.apply(Self.use("seats", "6", at: "2024-02-28T10:00:00Z"), at: "2024-02-28T10:00:00Z")
        // Renewal at Feb 29 00:00 (bought on the 31st). Usage of 23:30 arrives at 01:00, within the grace.
        fold.apply(Self.use("email", "20", at: "2024-02-28T23:30:00Z"), at: "2024-02-29T01:00:00Z")
        fold.apply(Self.use("seats", "9", at: "2024-02-28T23:45:00Z"), at: "2024-02-29T01:00:00Z")
        fold.apply(Self.use("email", "30", at: "2024-02-29T00:30:00Z"), at: "2024-02-29T01:01:00Z")
        let rate = try #require(fold.state.runRate(ResourceName(resourceId: "s")))
        #expect(rate.period.start == at("2024-02-29T00:00:00Z"))
        #expect(rate.meters.first { $0.meterName == "email" }?.consumed == Quantity(30))
        fold.ping(at: "2024-02-29T01:59:59Z")
        #expect(fold.pendingSummary == [])
        fold.ping(at: "2024-02-29T02:00:00Z")
        // The ended period: 115 against 100 included, and the seats' maximum 9 against 5, in its last hour.
        #expect(fold.pendingSummary == ["emails@2024-02-28T23=15", "seats@2024-02-28T23=4"])
        // After the grace, late usage of the ended period goes to the oldest open hour, in the new period.
        fold.apply(Self.use("email", "80", at: "2024-02-28T23:50:00Z"), at: "2024-02-29T02:30:00Z")
        #expect(try #require(fold.state.runRate(ResourceName(resourceId: "s"))).meters.first?.consumed == Quantity(110))
        #expect(fold.state.lateUsage == 1)
        try expectReplays(fold)
    }

    @Test("a month end: bought on Jan 31, usage of Feb 28 23:59 arriving after midnight still counts in the period to Feb 29")
    func monthEnd() throws {
        var fold = Self.bought(graceSeconds: 900)
        fold.apply(Self.use("email", "101", at: "2024-02-28T23:59:00Z"), at: "2024-02-29T00:10:00Z")
        fold.ping(at: "2024-02-29T00:15:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-28T23=1"])
        #expect(try #require(fold.state.runRate(ResourceName(resourceId: "s"))).meters.first?.consumed == .zero)
    }

    @Test("usage sent after a deletion but timed before it is billed in the final hour, within the grace; later or newer usage is refused")
    func afterDeletion() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "100", at: "2024-02-10T10:00:00Z"), at: "2024-02-10T10:00:00Z")
        fold.apply(Self.use("seats", "8", at: "2024-02-10T10:00:00Z"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.deletion("s"), at: "2024-02-10T10:30:00Z")
        fold.apply(Self.use("email", "6", at: "2024-02-10T10:29:00Z"), at: "2024-02-10T11:00:00Z")
        fold.apply(Self.use("email", "1", at: "2024-02-10T10:31:00Z"), at: "2024-02-10T11:01:00Z")
        fold.apply(Self.use("seats", "9", at: "2024-02-10T10:20:00Z"), at: "2024-02-10T11:02:00Z")
        fold.apply(Self.use("email", "1", at: "2024-02-10T10:10:00Z"), at: "2024-02-10T12:31:00Z")
        #expect(fold.state.unprocessable.groups.first?.reason == .deletedSubscription)
        #expect(fold.state.unprocessable.count == 2)
        fold.ping(at: "2024-02-10T13:00:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-10T10=6", "seats@2024-02-10T10=4"])
        fold.apply(Messages.outcome(fold.state.pending[0], status: "Accepted"), at: "2024-02-10T13:01:00Z")
        fold.apply(Messages.outcome(fold.state.pending[0], status: "Accepted"), at: "2024-02-10T13:02:00Z")
        #expect(fold.state.subscriptionCount == 0)
        try expectReplays(fold)
    }

    @Test("switching back to enqueued-time attribution closes the hours that have ended at once")
    func switchBack() throws {
        var fold = Self.bought()
        fold.apply(Self.use("email", "105", at: "2024-02-10T09:30:00Z"), at: "2024-02-10T10:10:00Z")
        #expect(fold.pendingSummary == [])
        fold.apply(Messages.tick(lateGraceSeconds: nil), at: at("2024-02-10T10:20:00Z"))
        #expect(fold.state.attribution == .enqueued)
        #expect(fold.pendingSummary == ["emails@2024-02-10T09=5"])
        // From now on the enqueued time decides.
        fold.apply(Self.use("email", "1", at: "2024-02-10T09:30:00Z"), at: "2024-02-10T10:30:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        #expect(fold.pendingSummary == ["emails@2024-02-10T09=5", "emails@2024-02-10T10=1"])
        try expectReplays(fold)
    }
}
