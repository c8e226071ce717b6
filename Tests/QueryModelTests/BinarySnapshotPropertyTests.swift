import Billing
import BillingTestSupport
import Foundation
import Testing
import Wire

@testable import QueryModel

@Suite("Binary snapshots of random logs")
struct BinarySnapshotPropertyTests {
    /// What of the state's JSON snapshot a round trip exercised: the parts that are rarely there.
    static func features(_ snapshot: JSONValue) -> Set<String> {
        var seen: Set<String> = []
        if snapshot["attribution"]?["mode"] == "event" { seen.insert("event-time attribution") }
        for list in ["refunds", "rejected", "conflicts"] where !(snapshot[list]?.arrayValue ?? []).isEmpty { seen.insert(list) }
        if snapshot["unprocessable"]?["count"] != .number("0") { seen.insert("unprocessable") }
        for item in snapshot["pending"]?.arrayValue ?? [] {
            seen.insert("pending")
            if item["quantity"] == .number("0") { seen.insert("emptied items") }
        }
        for subscription in snapshot["subscriptions"]?.arrayValue ?? [] {
            if (subscription["plans"]?.arrayValue?.count ?? 0) > 1 { seen.insert("plan changes") }
            for member in ["credits", "previous", "openHours", "deletion", "firstUnusedHour", "earlyReported"]
            where subscription[member] != nil {
                seen.insert(member)
            }
            for meter in subscription["meters"]?.arrayValue ?? [] {
                if meter["previous"] != nil { seen.insert("meters' previous periods") }
                if meter["voided"] != nil { seen.insert("voids") }
                if meter["type"] == "waterfall", meter["consumed"] != .number("0") { seen.insert("waterfalls") }
                if meter["aggregation"] == "max" || meter["aggregation"] == "last", meter["value"] != .null { seen.insert("gauges") }
            }
        }
        return seen
    }

    @Test(
        "states of random logs with plan changes, voids, late usage and outcomes read back equal from their binary form, refunds, credits, emptied items, previous periods and event-time attribution among them"
    )
    func randomLogs() throws {
        var seen: Set<String> = []
        for seed in 0..<24 {
            var log = ChangesLog(seed: UInt64(seed))
            try log.run()
            var state = PartitionState(partition: 0)
            for (index, record) in log.records.enumerated() {
                state.apply(record)
                guard index % 5 == 0 || index == log.records.count - 1 else { continue }
                let restored = try PartitionState(binarySnapshot: state.binarySnapshot())
                let snapshot = state.snapshot()
                #expect(restored == state, "seed \(seed), record \(index)")
                #expect(JSONWriter.string(restored.snapshot()) == JSONWriter.string(snapshot), "seed \(seed), record \(index)")
                seen.formUnion(Self.features(snapshot))
            }
        }
        // Conflicts these logs do not make: the billing tests' random logs round-trip those.
        let expected: Set<String> = [
            "event-time attribution", "refunds", "rejected", "pending", "emptied items", "plan changes", "credits",
            "previous", "openHours", "deletion", "meters' previous periods", "voids", "waterfalls", "gauges",
        ]
        #expect(expected.subtracting(seen).isEmpty, "never exercised: \(expected.subtracting(seen).sorted())")
    }
}

@Suite("A view's binary snapshot")
struct ViewBinarySnapshotTests {
    /// A view with every part the read model keeps: settled slots, marketplace totals, a
    /// breakdown, a series, prices and open usage (and a subscription with only prices).
    static func busy() -> ViewFold {
        var fold = ViewFold()
        let plan: JSONValue = ["m": Messages.simple("dim", included: 1), "w": Messages.waterfall([("t1", "5"), ("t2", "5")])]
        fold.apply(Messages.purchase("a", start: "2024-01-31T00:00:00Z", dimensions: plan), at: "2024-01-31T00:00:00Z")
        fold.apply(DisplayPriceTests.purchase("priced", prices: DisplayPriceTests.usd), at: "2024-01-31T00:00:00Z")
        fold.apply(Messages.usage("a", "m", "12.25", properties: ["region": "eu"]), at: "2024-02-01T10:00:00Z")
        fold.apply(Messages.usage("a", "w", "17"), at: "2024-02-01T10:30:00Z")
        fold.ping(at: "2024-02-01T11:00:00Z")
        if let item = fold.view.state.pending.first {
            fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-02-01T11:01:00Z")
        }
        fold.apply(Messages.usage("a", "m", "2", properties: ["region": "us"]), at: "2024-02-01T11:30:00Z")
        fold.apply(Messages.usage("a", "m", "3"), at: "2024-02-02T11:30:00Z")
        return fold
    }

    /// The view part of a binary snapshot: the bytes between the length and the billing state.
    static func viewPart(_ bytes: [UInt8]) -> Range<Int> {
        8..<8 + Int(bytes[..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    @Test("the busy view has every part the read model keeps, so the round trips below cover each")
    func busyViewHasEveryPart() {
        let views = Self.busy().view.subscriptionViews
        #expect(
            views["a"].map { !$0.ledger.isEmpty && $0.market != nil && $0.breakdown != nil && $0.series != nil && !$0.open.isEmpty } == true
        )
        #expect(views["priced"]?.prices != nil)
    }

    @Test("a view restores from its binary snapshot to the view its JSON restores to, and gives the same bytes again")
    func roundTrip() throws {
        let view = Self.busy().view
        let bytes = view.binarySnapshot()
        let fromBytes = try PartitionView(binarySnapshot: bytes)
        let fromJSON = try PartitionView(snapshot: try JSONParser.parse(JSONWriter.string(view.snapshot())))
        #expect(fromBytes.state == view.state)
        #expect(fromBytes.subscriptionViews == view.subscriptionViews)
        #expect(fromBytes.openKeys == view.openKeys)
        #expect(
            fromBytes.settledOrder.map { "\($0.at) \($0.key) \($0.slot.dimension)" }
                == view.settledOrder.map { "\($0.at) \($0.key) \($0.slot.dimension)" })
        #expect(JSONWriter.string(fromBytes.snapshot()) == JSONWriter.string(fromJSON.snapshot()))
        #expect(JSONWriter.string(fromBytes.snapshot()) == JSONWriter.string(view.snapshot()))
        #expect(fromBytes.binarySnapshot() == bytes)
        #expect(bytes[Self.viewPart(bytes)].starts(with: Array("MBQV".utf8) + [1]))
    }

    @Test("a snapshot of the release before, its view part in JSON (query-view-4), restores to the same view")
    func jsonPartOfTheReleaseBefore() throws {
        let view = Self.busy().view
        let earlier = view.binarySnapshotWithJSONPart()
        let json = try JSONParser.parse(earlier[Self.viewPart(earlier)])
        #expect(json["format"] == "query-view-4" && json["state"] == nil)
        let restored = try PartitionView(binarySnapshot: earlier)
        #expect(restored.subscriptionViews == view.subscriptionViews)
        #expect(restored.binarySnapshot() == view.binarySnapshot(), "the next snapshot is written with the view part in bytes")
    }

    @Test("a damaged snapshot is refused: cut anywhere, another format, a view part beyond the end, a damaged state")
    func damaged() throws {
        let bytes = Self.busy().view.binarySnapshot()
        for length in 0..<bytes.count {
            #expect(throws: ModelError.self, "cut at \(length)") { try PartitionView(binarySnapshot: Array(bytes[..<length])) }
        }
        let earlier = Self.busy().view.binarySnapshotWithJSONPart()
        let part = Self.viewPart(earlier)
        let json = String(decoding: earlier[part], as: UTF8.self)
        let otherFormat = Array(json.replacingOccurrences(of: "query-view-4", with: "query-view-3").utf8)
        #expect(otherFormat.count == part.count)
        #expect(throws: ModelError.self) {
            try PartitionView(binarySnapshot: Array(earlier[..<8]) + otherFormat + earlier[part.upperBound...])
        }
        var tooLong = bytes
        tooLong[7] = 0x7F
        #expect(throws: ModelError.self) { try PartitionView(binarySnapshot: tooLong) }
        var damagedState = bytes
        damagedState[Self.viewPart(bytes).upperBound] ^= 0xFF
        #expect(throws: ModelError.self) { try PartitionView(binarySnapshot: damagedState) }
    }

    @Test("every byte of the view part flipped either is refused or restores a view that writes itself again, never a trap")
    func flippedViewPart() throws {
        let bytes = Self.busy().view.binarySnapshot()
        var restoredCount = 0
        for position in Self.viewPart(bytes) {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var flipped = bytes
                flipped[position] ^= mask
                guard let restored = try? PartitionView(binarySnapshot: flipped) else { continue }
                restoredCount += 1
                // What reads back is a view like any other: its own snapshot reads back to it.
                let again = try PartitionView(binarySnapshot: restored.binarySnapshot())
                #expect(again.subscriptionViews == restored.subscriptionViews, "flip \(mask) at \(position)")
            }
        }
        // Flips in quantities and times read back as other figures; most others are refused.
        #expect(restoredCount > 0)
    }

    @Test("a view part listing a subscription twice, or out of order, is refused")
    func subscriptionsInOrderOnce() throws {
        var fold = ViewFold()
        for key in ["sub-b", "sub-c"] {
            fold.apply(DisplayPriceTests.purchase(key, prices: DisplayPriceTests.usd), at: "2024-01-31T00:00:00Z")
        }
        let bytes = fold.view.binarySnapshot()
        let part = Self.viewPart(bytes)
        /// Where the string table holds `text` (its length byte, then its bytes).
        func entry(_ text: String) throws -> Int {
            let needle = [UInt8(text.utf8.count)] + Array(text.utf8)
            let at = part.lowerBound..<part.upperBound - needle.count
            return try #require(at.first { Array(bytes[$0..<$0 + needle.count]) == needle }) + needle.count - 1
        }
        let b = try entry("sub-b")
        let c = try entry("sub-c")
        #expect(try PartitionView(binarySnapshot: bytes).subscriptionViews.keys.sorted() == ["sub-b", "sub-c"])
        var swapped = bytes
        swapped.swapAt(b, c)
        #expect(throws: ModelError.self, "sub-c before sub-b") { try PartitionView(binarySnapshot: swapped) }
        var twice = bytes
        twice[c] = UInt8(ascii: "b")
        #expect(throws: ModelError.self, "sub-b twice") { try PartitionView(binarySnapshot: twice) }
    }
}
