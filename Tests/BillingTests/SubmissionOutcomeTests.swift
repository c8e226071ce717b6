import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Submission outcomes")
struct SubmissionOutcomeTests {
    static let plan: JSONValue = [
        "m": Messages.simple("dim", included: 10), "a": Messages.simple("adim"), "b": Messages.simple("bdim"),
    ]

    /// A subscription with one pending item per dimension `dim`, `adim`, `bdim` for 10:00.
    func withPending() -> Fold {
        var fold = Fold()
        fold.apply(
            Messages.purchase("s", resourceUri: "/uri/s", start: "2024-01-10T00:00:00Z", dimensions: Self.plan),
            at: "2024-01-10T00:00:00Z")
        fold.apply(Messages.usage("s", "m", "15"), at: "2024-01-10T10:20:00Z")
        fold.apply(Messages.usage("s", "a", "2"), at: "2024-01-10T10:20:00Z")
        fold.apply(Messages.usage("s", "b", "3"), at: "2024-01-10T10:20:00Z")
        fold.ping(at: "2024-01-10T11:00:00Z")
        return fold
    }

    func item(_ fold: Fold, _ dimension: String) throws -> ReadyItem {
        try #require(fold.state.pending.first { $0.dimension == dimension })
    }

    @Test("Accepted settles the item once; the same outcome again changes nothing")
    func accepted() throws {
        var fold = withPending()
        let item = try item(fold, "dim")
        fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-01-10T11:01:00Z")
        #expect(fold.state.accepted == 1)
        #expect(fold.pendingSummary == ["adim@2024-01-10T10=2", "bdim@2024-01-10T10=3"])
        let settled = fold.state
        fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-01-10T11:02:00Z")
        fold.apply(Messages.outcome(item, status: "Expired"), at: "2024-01-10T11:03:00Z")
        fold.apply(Messages.outcome(item, status: "ResourceNotFound"), at: "2024-01-10T11:03:00Z")
        fold.apply(Messages.outcome(item, status: "Duplicate", acceptedQuantity: Quantity(1)), at: "2024-01-10T11:03:00Z")
        #expect(fold.state.accepted == 1)
        #expect(fold.state.expiredRebilled == 0)
        #expect(fold.state.pending == settled.pending)
        #expect(fold.state.rejected.isEmpty && fold.state.conflicts.isEmpty)
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["openHours"] == nil)
    }

    @Test("an outcome naming the resource by its other name matches, and effectiveStartTime without Z is the same hour")
    func otherName() throws {
        var fold = withPending()
        let item = try item(fold, "adim")
        fold.apply(Messages.outcome(item, status: "Accepted", resource: ResourceName(resourceUri: "/uri/s")), at: "2024-01-10T11:01:00Z")
        #expect(fold.state.accepted == 1)
        #expect(fold.state.pending.count == 2)
    }

    @Test("Duplicate with the same quantity is done; with another quantity it is done and recorded as a conflict")
    func duplicate() throws {
        var fold = withPending()
        let same = try item(fold, "adim")
        let other = try item(fold, "bdim")
        fold.apply(Messages.outcome(same, status: "Duplicate", acceptedQuantity: Quantity(2)), at: "2024-01-10T11:01:00Z")
        fold.apply(Messages.outcome(other, status: "Duplicate", acceptedQuantity: quantity("5.25")), at: "2024-01-10T11:02:00Z")
        #expect(fold.state.accepted == 1)
        #expect(fold.state.conflicts == [Conflict(item: other, acceptedQuantity: quantity("5.25"), at: at("2024-01-10T11:02:00Z"))])
        #expect(fold.pendingSummary == ["dim@2024-01-10T10=5"])
        fold.apply(Messages.outcome(other, status: "Duplicate", acceptedQuantity: quantity("5.25")), at: "2024-01-10T11:03:00Z")
        #expect(fold.state.conflicts.count == 1)
    }

    @Test("Expired bills the quantity again in the current open hour, never absorbed by a refilled included quantity")
    func expired() throws {
        var fold = withPending()
        let item = try item(fold, "dim")
        fold.apply(Messages.usage("s", "m", "4"), at: "2024-02-10T08:00:00Z")
        #expect(fold.meter("s", "m")?["remaining"] == 6)
        fold.apply(Messages.outcome(item, status: "Expired"), at: "2024-02-10T08:30:00Z")
        #expect(fold.state.expiredRebilled == 1)
        #expect(fold.meter("s", "m")?["remaining"] == 6)
        fold.apply(Messages.outcome(item, status: "Expired"), at: "2024-02-10T08:31:00Z")
        #expect(fold.state.expiredRebilled == 1)
        fold.ping(at: "2024-02-10T09:00:00Z")
        #expect(fold.pendingSummary == ["adim@2024-01-10T10=2", "bdim@2024-01-10T10=3", "dim@2024-02-10T08=5"])
    }

    @Test(
        "permanent refusals move the item to the rejected ledger with the marketplace's reason",
        arguments: ["ResourceNotFound", "ResourceNotActive", "ResourceNotAuthorized", "InvalidDimension", "InvalidQuantity", "BadArgument"])
    func rejected(status: String) throws {
        var fold = withPending()
        let item = try item(fold, "bdim")
        fold.apply(
            Messages.outcome(item, status: status, errorMessage: "The resourceId value provided cannot be found."),
            at: "2024-01-10T11:01:00Z")
        #expect(
            fold.state.rejected == [
                RejectedItem(
                    item: item, status: status,
                    reason: "One or more errors have occurred. resourceId: The resourceId value provided cannot be found.",
                    at: at("2024-01-10T11:01:00Z"))
            ])
        #expect(fold.state.pending.count == 2)
        #expect(fold.state.accepted == 0)
    }

    @Test("any other status leaves the item pending, to be tried again")
    func otherStatus() throws {
        var fold = withPending()
        let item = try item(fold, "bdim")
        fold.apply(Messages.outcome(item, status: "TooManyRequests"), at: "2024-01-10T11:01:00Z")
        fold.apply(Messages.outcome(item, status: "InternalServerError"), at: "2024-01-10T11:02:00Z")
        #expect(fold.state.pending.count == 3)
        #expect(fold.state.rejected.isEmpty)
    }

    @Test("an outcome for an item that was never pending is harmless")
    func unknownItem() throws {
        var fold = withPending()
        var item = try item(fold, "bdim")
        item.effectiveStartTime = at("2024-01-10T07:00:00Z")
        let before = fold.state.pending
        fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-01-10T11:01:00Z")
        item.resource = ResourceName(resourceId: "nobody")
        fold.apply(Messages.outcome(item, status: "Expired"), at: "2024-01-10T11:01:00Z")
        #expect(fold.state.pending == before)
        #expect(fold.state.accepted == 0 && fold.state.expiredRebilled == 0)
        #expect(fold.state.unprocessable.isEmpty)
    }
}
