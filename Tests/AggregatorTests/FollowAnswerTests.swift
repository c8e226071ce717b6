import Billing
import Testing
import Wire

@testable import Projection

/// A follower's reading of ingest's `follow` answers (`PartitionFollower.records`): the fast path
/// hands records over as it reads them, so an answer it gives up on half-way must not leave them
/// counted twice when the general path reads the answer again.
@Suite("Reading follow answers")
struct FollowAnswerTests {
    static func record(_ sequence: Int, quantity: String = "1.5") -> String {
        #"{"partition":2,"sequence":\#(sequence),"enqueuedTime":"2024-03-01T10:00:00Z","event":{"type":"UsageReported","value":{"meterName":"email","quantity":\#(quantity),"resourceId":"r-1","timestamp":"2024-03-01T10:00:00Z"}}}"#
    }

    @Test("an answer the fast path reads gives each record once, with the log's identity")
    func fastPath() throws {
        let frame = Array(#"{"ok":true,"records":[\#(Self.record(7)),\#(Self.record(8))],"next":9,"log":"abc"}"#.utf8)
        let (batch, log) = try PartitionFollower.records(frame, partition: 2)
        let records = batch.records
        #expect(records.map(\.sequence) == [7, 8])
        #expect(records.allSatisfy { $0.partition == 2 })
        #expect(log == "abc")
    }

    @Test("an answer the fast path gives up on after its records is read again whole, each record once")
    func fallbackAfterRecords() throws {
        // A `next` with a fraction is not the fast path's shape, and it notices only after the records.
        let frame = Array(#"{"ok":true,"records":[\#(Self.record(7)),\#(Self.record(8))],"next":9.0,"log":"abc"}"#.utf8)
        #expect(RecordFrameReader.read(frame) == nil)
        let (batch, log) = try PartitionFollower.records(frame, partition: 2)
        #expect(batch.records.map(\.sequence) == [7, 8])
        #expect(log == "abc")
    }

    @Test("a record that no longer decodes stops the follower with an error naming it")
    func undecodable() throws {
        let frame = Array(#"{"ok":true,"records":[\#(Self.record(7)),\#(Self.record(8, quantity: "-1"))],"next":9}"#.utf8)
        #expect(throws: WireError.self) { try PartitionFollower.records(frame, partition: 2) }
        do {
            _ = try PartitionFollower.records(frame, partition: 2)
        } catch {
            #expect("\(error)".contains("record 2/8 does not decode"))
        }
    }
}
