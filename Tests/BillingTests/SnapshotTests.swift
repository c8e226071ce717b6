import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Snapshots")
struct SnapshotTests {
    /// A state with a bit of everything: subscriptions by both names, an open hour, pending, rejected,
    /// conflicting and unprocessable items, a deleted subscription still held, gauges and tiers.
    static func busy() -> Fold {
        var fold = Fold()
        let plan: JSONValue = [
            "m": Messages.simple("dim", included: .number("10.5")), "g": Messages.simple("gdim", included: 1, aggregation: "last"),
            "w": Messages.waterfall([("t1", "5"), ("t2", "5")]), "i": Messages.simple("idim", included: "Infinite"),
        ]
        fold.apply(
            Messages.purchase("a", resourceUri: "/uri/a", start: "2024-01-31T00:00:00Z", dimensions: plan), at: "2024-01-31T00:00:00Z")
        fold.apply(
            Messages.purchase(nil, resourceUri: "/uri/b", start: "2024-02-29T00:00:00Z", dimensions: plan), at: "2024-02-01T00:00:00Z")
        fold.apply(Messages.usage("a", "m", "12.25"), at: "2024-02-01T10:00:00Z")
        fold.apply(Messages.usage(nil, resourceUri: "/uri/b", "w", "17"), at: "2024-02-01T10:00:00Z")
        fold.apply(Messages.usage(nil, resourceUri: "/uri/b", "g", "3"), at: "2024-02-01T10:00:00Z")
        fold.apply(Messages.usage(nil, resourceUri: "/uri/b", "i", "3"), at: "2024-02-01T10:00:00Z")
        fold.ping(at: "2024-02-01T11:00:00Z")
        let pending = fold.state.pending
        fold.apply(Messages.outcome(pending[0], status: "InvalidDimension", errorMessage: "no such dimension"), at: "2024-02-01T11:01:00Z")
        fold.apply(Messages.outcome(pending[1], status: "Duplicate", acceptedQuantity: Quantity(1)), at: "2024-02-01T11:02:00Z")
        fold.apply(Messages.usage("a", "m", "0.000000000000000001"), at: "2024-02-01T11:30:00Z")
        fold.apply(Messages.usage("nobody", "m", "1"), at: "2024-02-01T11:31:00Z")
        fold.apply(Messages.deletion("/uri/b"), at: "2024-02-01T11:32:00Z")
        return fold
    }

    @Test("a snapshot written as text and read back restores an equal state that folds on identically")
    func roundTrip() throws {
        var fold = Self.busy()
        let text = JSONWriter.string(fold.state.snapshot())
        var restored = try PartitionState(snapshot: try JSONParser.parse(text))
        #expect(restored == fold.state)
        #expect(JSONWriter.string(restored.snapshot()) == text)
        #expect(fold.state.subscriptionCount == 2)
        #expect(!fold.state.rejected.isEmpty && !fold.state.conflicts.isEmpty && !fold.state.unprocessable.isEmpty)

        Self.foldOn(&fold, &restored)
    }

    /// Folds a few more records (usage, two renewals) into `fold` and `restored`, and expects them
    /// to stay equal.
    static func foldOn(_ fold: inout Fold, _ restored: inout PartitionState, sourceLocation: SourceLocation = #_sourceLocation) {
        let more = [
            (Messages.usage("/uri/a", "m", "3"), "2024-02-01T12:10:00Z"), (Messages.ping(), "2024-02-29T00:00:00Z"),
            (Messages.ping(), "2024-03-31T00:00:00Z"),
        ]
        for (message, time) in more {
            guard let record = fold.apply(message, at: at(time)) else { continue }
            restored.apply(record)
        }
        #expect(restored == fold.state, sourceLocation: sourceLocation)
        #expect(restored.pending == fold.state.pending, sourceLocation: sourceLocation)
    }

    @Test("a damaged snapshot is refused with the member at fault")
    func damaged() throws {
        let snapshot = Self.busy().state.snapshot()
        guard case .object(var root) = snapshot else { throw SnapshotError("not an object") }
        root["format"] = "something else"
        #expect(throws: SnapshotError.self) { try PartitionState(snapshot: .object(root)) }

        guard case .object(var second) = snapshot, var subscriptions = second["subscriptions"]?.arrayValue,
            case .object(var first)? = subscriptions.first
        else { throw SnapshotError("no subscriptions") }
        first["renewalInterval"] = "Weekly"
        subscriptions[0] = .object(first)
        second["subscriptions"] = .array(subscriptions)
        do {
            _ = try PartitionState(snapshot: .object(second))
            Issue.record("a weekly interval was accepted")
        } catch {
            #expect(error.description.contains("snapshot.subscriptions[0].renewalInterval"))
        }

        guard case .object(var third) = snapshot, let pending = third["pending"]?.arrayValue, let item = pending.first else {
            throw SnapshotError("no pending")
        }
        third["pending"] = .array(pending + [item])
        #expect(throws: SnapshotError.self) { try PartitionState(snapshot: .object(third)) }
        #expect(throws: SnapshotError.self) { try PartitionState(snapshot: "nonsense") }
    }

    @Test("an empty partition's snapshot restores")
    func empty() throws {
        let state = PartitionState(partition: 3)
        let restored = try PartitionState(snapshot: state.snapshot())
        #expect(restored == state)
        #expect(restored.partition == 3 && restored.lastSequence == nil && restored.time == nil)
    }
}

@Suite("Snapshots of earlier formats")
struct EarlierSnapshotTests {
    /// `snapshot` as the format before plan changes, voids and attribution wrote it: no attribution,
    /// counters of late usage and voids or refunds; per subscription one `openHour`, no plan history
    /// or first sequence; per meter no first sequence or billed overage.
    static func singlePlanFormat(_ snapshot: JSONValue) -> JSONValue {
        guard case .object(var root) = snapshot else { return snapshot }
        root["format"] = "metering-billing-partition/2"
        for key in ["attribution", "lateUsage", "voids", "refunds"] { root[key] = nil }
        root["subscriptions"] = .array(
            (root["subscriptions"]?.arrayValue ?? []).map { value in
                guard case .object(var subscription) = value else { return value }
                for key in ["since", "plans", "deletion"] { subscription[key] = nil }
                if let hours = subscription["openHours"]?.arrayValue {
                    subscription["openHours"] = nil
                    subscription["openHour"] = hours.first
                }
                subscription["meters"] = .array(
                    (subscription["meters"]?.arrayValue ?? []).map { meter in
                        guard case .object(var object) = meter else { return meter }
                        object["since"] = nil
                        object["billed"] = nil
                        return .object(object)
                    })
                return .object(subscription)
            })
        return .object(root)
    }

    @Test("a snapshot of the single-plan format loads to the state that folded it, and folds on the same, plan changes and voids included")
    func singlePlan() throws {
        var fold = SnapshotTests.busy()
        let old = Self.singlePlanFormat(fold.state.snapshot())
        #expect(old["format"] == "metering-billing-partition/2")
        var restored = try PartitionState(snapshot: try JSONParser.parse(JSONWriter.string(old)))
        // What the old format could not hold is what a log of that time could not have made.
        #expect(JSONWriter.string(Self.singlePlanFormat(restored.snapshot())) == JSONWriter.string(old))
        let more: [JSONValue] = [
            Messages.usage("a", "m", "3", id: "late"),
            Messages.planChange("a", planId: "next", dimensions: ["m": Messages.simple("dim", included: 20)]),
        ]
        for message in more {
            let applied = fold.apply(message, at: at("2024-02-01T12:00:00Z"))
            let record = try #require(applied)
            restored.apply(record)
        }
        fold.void("late", at: "2024-02-01T12:10:00Z")
        restored.apply(fold.records.last!)
        fold.ping(at: "2024-02-02T00:00:00Z")
        restored.apply(fold.records.last!)
        #expect(restored.pending == fold.state.pending)
        #expect(restored.runRate(ResourceName(resourceId: "a")) == fold.state.runRate(ResourceName(resourceId: "a")))
    }
}
