import BillingTestSupport
import Testing
import Wire

@testable import Billing

@Suite("Binary snapshots")
struct BinarySnapshotTests {
    /// `state` through its binary form and back: equal, with the same JSON snapshot.
    static func expectRoundTrip(_ state: PartitionState, _ comment: Comment? = nil) throws {
        let bytes = state.binarySnapshot()
        let restored = try PartitionState(binarySnapshot: bytes)
        #expect(restored == state, comment)
        #expect(JSONWriter.string(restored.snapshot()) == JSONWriter.string(state.snapshot()), comment)
        #expect(restored.binarySnapshot() == bytes, comment)
    }

    @Test("a binary snapshot restores an equal state, with the same JSON snapshot, that folds on identically")
    func roundTrip() throws {
        var fold = SnapshotTests.busy()
        try Self.expectRoundTrip(fold.state)
        var restored = try PartitionState(binarySnapshot: fold.state.binarySnapshot())
        SnapshotTests.foldOn(&fold, &restored)
        try Self.expectRoundTrip(fold.state)
        try Self.expectRoundTrip(PartitionState(partition: 7))
    }

    @Test("the derived indexes are rebuilt as the JSON restore rebuilds them: renewals, graces and open hours come due alike")
    func derivedIndexes() throws {
        var fold = SnapshotTests.busy()
        fold.apply(Messages.tick(lateGraceSeconds: 1800), at: "2024-02-01T11:40:00Z")
        fold.apply(Messages.usage("a", "m", "4", timestamp: "2024-02-01T11:50:00Z"), at: "2024-02-01T11:55:00Z")
        var fromJSON = try PartitionState(snapshot: try JSONParser.parse(JSONWriter.string(fold.state.snapshot())))
        var fromBytes = try PartitionState(binarySnapshot: fold.state.binarySnapshot())
        for time in ["2024-02-01T12:40:00Z", "2024-02-29T00:10:00Z", "2024-02-29T00:40:00Z", "2024-03-31T01:00:00Z"] {
            guard let record = fold.apply(Messages.ping(), at: at(time)) else { continue }
            fromJSON.apply(record)
            fromBytes.apply(record)
            #expect(fromBytes == fromJSON && fromBytes == fold.state, "at \(time)")
            #expect(fromBytes.pending == fold.state.pending, "at \(time)")
        }
    }

    /// Bytes of `state` after `damage`, which breaks a rule a restore checks.
    static func damaged(_ damage: (inout PartitionState) throws -> Void) rethrows -> PartitionState {
        var state = SnapshotTests.busy().state
        try damage(&state)
        return state
    }

    @Test("every check of the JSON restore refuses the same damage in the binary form")
    func checks() throws {
        let busy = SnapshotTests.busy().state
        let key = try #require(busy.subscriptions.keys.sorted().first)
        let subscription = try #require(busy.subscriptions[key])
        let (slot, item) = try #require(busy.pendingItems.entries.first { _ in true })
        let cases: [(String, PartitionState)] = [
            ("a key that is not one of the subscription's names", Self.damaged { $0.subscriptions["elsewhere"] = subscription }),
            (
                "a name that belongs to two subscriptions",
                Self.damaged {
                    var twin = subscription
                    twin.resource = ResourceName(resourceId: "twin", resourceUri: subscription.resource.resourceUri)
                    $0.subscriptions["twin"] = twin
                }
            ),
            (
                "a pending item of no subscription",
                Self.damaged { $0.pendingItems[PartitionState.Slot(subscription: "ghost", dimension: "d", hour: slot.hour)] = item }
            ),
            (
                "an item of nothing",
                Self.damaged {
                    $0.pendingItems[slot]?.quantity = .zero
                    $0.pendingItems[slot]?.withdrawn = .zero
                }
            ),
            ("a negative period", Self.damaged { $0.subscriptions[key]?.period.index = -1 }),
            ("a period beyond the years a snapshot holds", Self.damaged { $0.subscriptions[key]?.period.index = 1 << 40 }),
            ("no plan in force", Self.damaged { $0.subscriptions[key]?.plans = [] }),
            ("an empty plan id", Self.damaged { $0.subscriptions[key]?.planId = "" }),
            (
                "an open hour without overage",
                Self.damaged { $0.subscriptions[key]?.openHours.append(OpenHour(start: at("2024-03-01T00:00:00Z"))) }
            ),
            (
                "open hours out of order",
                Self.damaged {
                    var hour = OpenHour(start: at("2020-01-01T00:00:00Z"))
                    hour.overage = [DimensionQuantity(dimension: "dim", quantity: Quantity(1))]
                    $0.subscriptions[key]?.openHours += [hour, hour]
                }
            ),
            (
                "a credit of nothing",
                Self.damaged { $0.subscriptions[key]?.credits = [DimensionQuantity(dimension: "dim", quantity: .zero)] }
            ),
            (
                "a dimension credited twice",
                Self.damaged {
                    $0.subscriptions[key]?.credits = Array(repeating: DimensionQuantity(dimension: "dim", quantity: Quantity(1)), count: 2)
                }
            ),
            ("a waterfall meter without tiers", Self.damaged { $0.subscriptions[key]?.meters[0].rule = .waterfall(tiers: []) }),
            ("a negative consumption", Self.damaged { $0.subscriptions[key]?.meters[0].usage.consumed = Quantity(-1) }),
            ("a rejected item without a name", Self.damaged { $0.rejected[0].item.resource = ResourceName() }),
            ("a rejection without a status", Self.damaged { $0.rejected[0].status = "" }),
            ("a late grace out of range", Self.damaged { $0.attribution = .event(lateGrace: Attribution.maximumLateGrace + 1_000_000) }),
            ("a time out of range", Self.damaged { $0.time = Timestamp(microseconds: .max) }),
            ("an unprocessable count that does not add up", Self.damaged { $0.unprocessable.count += 1 }),
            (
                "an empty unprocessable group",
                try Self.damaged {
                    let groupKey = try #require($0.unprocessable.groupsByKey.keys.first)
                    $0.unprocessable.groupsByKey[groupKey]?.count = 0
                }
            ),
            (
                "too many unprocessable examples",
                Self.damaged { $0.unprocessable.examples += Array(repeating: $0.unprocessable.examples[0], count: 100) }
            ),
        ]
        for (problem, state) in cases {
            #expect(throws: SnapshotError.self, "binary: \(problem)") { try PartitionState(binarySnapshot: state.binarySnapshot()) }
            // The JSON form of a time out of range cannot be written; every other damage it refuses too.
            guard problem != "a time out of range" else { continue }
            #expect(throws: SnapshotError.self, "JSON: \(problem)") {
                try PartitionState(snapshot: try JSONParser.parse(JSONWriter.string(state.snapshot())))
            }
        }
    }

    @Test("pending items share their subscription's one copy of its names and plan, also restored")
    func pendingItemsShareTheirTerms() throws {
        var fold = Fold()
        let plan: JSONValue = ["w": Messages.waterfall([("t1", "5"), ("t2", "5")]), "m": Messages.simple("dim")]
        for key in ["a", "b"] {
            fold.apply(Messages.purchase(key, start: "2024-01-31T00:00:00Z", dimensions: plan), at: "2024-02-01T09:00:00Z")
            fold.apply(Messages.usage(key, "w", "17"), at: "2024-02-01T10:00:00Z")
            fold.apply(Messages.usage(key, "m", "1"), at: "2024-02-01T10:00:00Z")
        }
        fold.ping(at: "2024-02-01T11:00:00Z")
        // A rename replaces the subscription's copy; the items keep the names they were made under.
        fold.apply(
            Messages.purchase("a", resourceUri: "/uri/a", start: "2024-01-31T00:00:00Z", dimensions: plan), at: "2024-02-01T11:05:00Z")
        let renamed = try #require(fold.state.subscriptions["a"])
        #expect(renamed.resource == ResourceName(resourceId: "a", resourceUri: "/uri/a"))
        #expect(
            fold.state.pendingItems.entries.filter { $0.key.subscription == "a" }.allSatisfy { $0.value.terms !== renamed.namesAndPlan })
        #expect(fold.state.pending.filter { $0.resource.resourceId == "a" }.allSatisfy { $0.resource.resourceUri == nil })
        for state in [fold.state, try PartitionState(binarySnapshot: fold.state.binarySnapshot())] {
            for key in ["a", "b"] {
                let items = state.pendingItems.entries.filter { $0.key.subscription == key }.map(\.value)
                #expect(items.count == 3)
                #expect(items.allSatisfy { $0.terms === items[0].terms }, "one copy for the three")
                #expect(items[0].terms.value.resource == ResourceName(resourceId: key))
                #expect(
                    (items[0].terms === state.subscriptions[key]?.namesAndPlan) == (key == "b"),
                    "the subscription's own, unless renamed since")
            }
        }
        #expect(
            fold.state.pending.map { "\($0.resource) \($0.dimension) \($0.quantity)" } == [
                "a dim 1", "a t1 5", "a t2 7", "b dim 1", "b t1 5", "b t2 7",
            ])
    }

    @Test("a pending item takes 48 bytes beside its 48-byte slot (its hash stored), and a subscription 104 bytes in its table")
    func layout() {
        #expect(MemoryLayout<PartitionState.PendingItem>.stride == 48)
        #expect(MemoryLayout<PartitionState.Slot>.stride == 48)
        #expect(MemoryLayout<Subscription>.stride == 104)
    }

    @Test("a second item for one slot is refused, in the JSON form and by the restore both forms share")
    func secondItemForOneSlot() throws {
        let busy = SnapshotTests.busy().state
        // The slot is the item's key in the state: two items for one slot come only from damaged bytes.
        var snapshot = try #require(busy.snapshot().objectValue)
        let pending = try #require(snapshot["pending"]?.arrayValue?.first)
        snapshot["pending"] = .array((snapshot["pending"]?.arrayValue ?? []) + [pending])
        #expect(throws: SnapshotError.self) { try PartitionState(snapshot: try JSONParser.parse(JSONWriter.string(.object(snapshot)))) }
        let (slot, item) = try #require(busy.pendingItems.entries.first { _ in true })
        var state = busy
        state.pendingItems = PartitionState.PendingTable()
        state.pendingPerSubscription = [:]
        #expect(throws: SnapshotError.self) {
            try state.restore(pending: [item.ready(slot), item.ready(slot)], key: slot.subscription) { "pending[\($0)]" }
        }
    }

    @Test("bytes that are not a snapshot are refused: another magic, invalid UTF-8, a string or count beyond the input, trailing bytes")
    func malformed() throws {
        let magic = PartitionState.binaryMagic
        let valid = SnapshotTests.busy().state.binarySnapshot()
        let cases: [(String, [UInt8])] = [
            ("nothing", []), ("another magic", Array("MBPS".utf8) + [2] + valid.dropFirst(5)),
            ("a string that is not UTF-8", magic + [1, 1, 0xFF]),
            ("a string longer than the input", magic + [1, 0x80, 0x80, 0x04]),
            ("a count beyond the input", magic + [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            ("a varint beyond 64 bits", magic + Array(repeating: 0xFF, count: 10) + [0x01]),
            // No strings, partition 0, no sequence or time, enqueued, four counters, one subscription keyed by string 5.
            ("a string index beyond the table", magic + [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5] + Array(repeating: 0, count: 40)),
            ("an unknown attribution", magic + [0, 0, 0, 0, 7]), ("a flag that is not 0 or 1", magic + [0, 0, 2]),
            ("trailing bytes", valid + [0]),
        ]
        for (problem, bytes) in cases {
            #expect(throws: SnapshotError.self, "\(problem)") { try PartitionState(binarySnapshot: bytes) }
        }
    }

    @Test("a snapshot cut at any byte, with bits flipped anywhere, or random bytes after the magic never traps; cut, it always throws")
    func hostileBytes() throws {
        var fold = SnapshotTests.busy()
        fold.apply(Messages.tick(lateGraceSeconds: 1800), at: "2024-02-01T11:40:00Z")
        let bytes = fold.state.binarySnapshot()
        for length in 0..<bytes.count {
            #expect(throws: SnapshotError.self, "cut at \(length)") { try PartitionState(binarySnapshot: Array(bytes[..<length])) }
        }
        var random = SplitMix64(seed: 12)
        for _ in 0..<3000 {
            var flipped = bytes
            for _ in 0..<Int(random.next() % 3 + 1) {
                let index = Int(random.next() % UInt64(flipped.count))
                flipped[index] ^= UInt8(1) << (random.next() % 8)
            }
            if let restored = try? PartitionState(binarySnapshot: flipped) {
                // A flip the checks cannot see (a digit of a quantity, a time) gives another valid state.
                _ = restored.snapshot()
            }
            let noise = PartitionState.binaryMagic + (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            _ = try? PartitionState(binarySnapshot: noise)
        }
    }
}
