import Billing
import BillingTestSupport
import Foundation
import QueryModel
import Testing
import Wire

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
    static func busy() -> ViewFold {
        var fold = ViewFold()
        let plan: JSONValue = ["m": Messages.simple("dim", included: 1), "w": Messages.waterfall([("t1", "5"), ("t2", "5")])]
        fold.apply(Messages.purchase("a", start: "2024-01-31T00:00:00Z", dimensions: plan), at: "2024-01-31T00:00:00Z")
        fold.apply(Messages.usage("a", "m", "12.25", properties: ["region": "eu"]), at: "2024-02-01T10:00:00Z")
        fold.apply(Messages.usage("a", "w", "17"), at: "2024-02-01T10:30:00Z")
        fold.ping(at: "2024-02-01T11:00:00Z")
        if let item = fold.view.state.pending.first {
            fold.apply(Messages.outcome(item, status: "Accepted"), at: "2024-02-01T11:01:00Z")
        }
        fold.apply(Messages.usage("a", "m", "2"), at: "2024-02-01T11:30:00Z")
        return fold
    }

    @Test("a view restores from its query-view-4 bytes to the view its query-view-3 JSON restores to")
    func roundTrip() throws {
        let view = Self.busy().view
        let bytes = view.binarySnapshot()
        let fromBytes = try PartitionView(binarySnapshot: bytes)
        let fromJSON = try PartitionView(snapshot: try JSONParser.parse(JSONWriter.string(view.snapshot())))
        #expect(fromBytes.state == view.state)
        #expect(JSONWriter.string(fromBytes.snapshot()) == JSONWriter.string(fromJSON.snapshot()))
        #expect(JSONWriter.string(fromBytes.snapshot()) == JSONWriter.string(view.snapshot()))
        #expect(fromBytes.binarySnapshot() == bytes)
        let length = Int(bytes[..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        let json = try JSONParser.parse(bytes[8..<8 + length])
        #expect(json["format"] == "query-view-4" && json["state"] == nil)
    }

    @Test("a damaged query-view-4 snapshot is refused: cut anywhere, another format, a JSON part beyond the end, a damaged state")
    func damaged() throws {
        let bytes = Self.busy().view.binarySnapshot()
        for length in stride(from: 0, to: bytes.count, by: 7) {
            #expect(throws: ModelError.self, "cut at \(length)") { try PartitionView(binarySnapshot: Array(bytes[..<length])) }
        }
        let length = Int(bytes[..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        let json = String(decoding: bytes[8..<8 + length], as: UTF8.self)
        let otherFormat = Array(json.replacingOccurrences(of: "query-view-4", with: "query-view-3").utf8)
        #expect(otherFormat.count == length)
        #expect(throws: ModelError.self) { try PartitionView(binarySnapshot: Array(bytes[..<8]) + otherFormat + bytes[(8 + length)...]) }
        var tooLong = bytes
        tooLong[7] = 0x7F
        #expect(throws: ModelError.self) { try PartitionView(binarySnapshot: tooLong) }
        var damagedState = bytes
        damagedState[8 + length] ^= 0xFF
        #expect(throws: ModelError.self) { try PartitionView(binarySnapshot: damagedState) }
    }
}
