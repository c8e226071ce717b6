import Billing
import BillingTestSupport
import QueryModel
import Testing
import Wire

@Suite("Marketplace slots in the read model and its snapshots")
struct SlotLedgerTests {
    /// A subscription with one slot settled (10:00, accepted) and one pending (11:00).
    static func settledAndPending() throws -> ViewFold {
        var fold = RunRateTests.bought()
        fold.apply(Messages.usage("sub-1", "sms", "4"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "sms", "6"), at: "2024-02-10T11:00:00Z")
        fold.ping(at: "2024-02-10T12:00:00Z")
        let first = try #require(fold.view.state.pending.first { $0.effectiveStartTime == at("2024-02-10T10:00:00Z") })
        fold.apply(Messages.outcome(first, status: "Accepted"), at: "2024-02-10T12:01:00Z")
        return fold
    }

    static func slots(_ snapshot: JSONValue) -> [JSONValue] { snapshot["slots"]?.arrayValue ?? [] }

    @Test("a pending slot is answered from the billing state and left out of the snapshot, which lists only settled slots")
    func pendingSlotsFromTheState() throws {
        let fold = try Self.settledAndPending()
        #expect(fold.view.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: at("2024-02-10T11:00:00Z")) == "pending")
        #expect(fold.view.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: at("2024-02-10T10:00:00Z")) == "accepted")
        #expect(fold.view.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: at("2024-02-10T09:00:00Z")) == nil)
        let slots = Self.slots(fold.view.snapshot())
        #expect(slots.count == 1)
        #expect(slots.first?["status"] == "accepted")
        #expect(slots.first?["settledAt"] == "2024-02-10T12:01:00Z")
        let restored = try PartitionView(snapshot: fold.view.snapshot())
        #expect(restored.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: at("2024-02-10T11:00:00Z")) == "pending")
        #expect(restored.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: at("2024-02-10T10:00:00Z")) == "accepted")
    }

    @Test("a snapshot of the earlier format, which lists pending slots too, still restores the same view")
    func earlierFormatStillRead() throws {
        let fold = try Self.settledAndPending()
        let current = fold.view.snapshot()
        guard case .object(var earlier) = current else {
            Issue.record("the snapshot is not an object")
            return
        }
        earlier["format"] = "query-view-2"
        earlier["slots"] = .array(
            [
                [
                    "subscription": "sub-1", "dimension": "sms-dim", "hour": "2024-02-10T11:00:00Z", "status": "pending",
                ]
            ] + Self.slots(current))
        let restored = try PartitionView(snapshot: .object(earlier))
        #expect(restored.marketplaceStatus(subscription: "sub-1", dimension: "sms-dim", hour: at("2024-02-10T11:00:00Z")) == "pending")
        #expect(JSONWriter.string(restored.snapshot()) == JSONWriter.string(current))
        #expect(restored.runRateJSON(ResourceName(resourceId: "sub-1")) == fold.runRate("sub-1"))
    }

    @Test("a snapshot of the current format that lists a pending slot, or a settled one without its time, is refused")
    func inconsistentSlotsRefused() throws {
        let fold = try Self.settledAndPending()
        guard case .object(var snapshot) = fold.view.snapshot() else {
            Issue.record("the snapshot is not an object")
            return
        }
        var withPending = snapshot
        withPending["slots"] = .array(
            Self.slots(.object(snapshot)) + [
                ["subscription": "sub-1", "dimension": "sms-dim", "hour": "2024-02-10T11:00:00Z", "status": "pending"]
            ])
        #expect(throws: ModelError.self) { try PartitionView(snapshot: .object(withPending)) }
        snapshot["slots"] = [["subscription": "sub-1", "dimension": "sms-dim", "hour": "2024-02-10T10:00:00Z", "status": "accepted"]]
        #expect(throws: ModelError.self) { try PartitionView(snapshot: .object(snapshot)) }
    }
}
