import Billing
import BillingTestSupport
import Testing
import Wire

@testable import Projection

/// `RecordBatch`: a follow answer's records handed to a fold, each taken out once, in order.
@Suite("A batch of records handed to a fold")
struct RecordBatchTests {
    /// A usage record whose resource names its sequence (a string on the heap, so a record moved
    /// twice or freed early shows as a wrong or unreadable name).
    static func record(_ sequence: Int) throws -> BillingRecord {
        let name = "subscription-with-a-long-name-\(sequence)"
        return BillingRecord(
            partition: 0, sequence: UInt64(sequence), enqueuedTime: Timestamp(seconds: 1_700_000_000 + Int64(sequence)),
            message: try Message.decode(Messages.usage(name, "cpu", "1.5")).get())
    }

    static func name(_ record: BillingRecord) -> String? {
        guard case .usageReported(let usage) = record.message.body else { return nil }
        return usage.resource.resourceId
    }

    struct Stop: Error {}

    @Test("every record is taken once, in order, past the room it was made with, and the batch is left empty")
    func takenInOrder() throws {
        let batch = RecordBatch(capacity: 3)
        for sequence in 0..<100 { batch.append(try Self.record(sequence)) }
        #expect(batch.count == 100)
        var seen: [String] = []
        batch.takeEach { seen.append(Self.name($0) ?? "?") }
        #expect(seen == (0..<100).map { "subscription-with-a-long-name-\($0)" })
        #expect(batch.isEmpty && batch.records.isEmpty)
        // Taking again hands nothing.
        batch.takeEach { _ in Issue.record("a record handed twice") }
    }

    @Test("a fold that throws leaves the records after the one it threw on, whole, in the batch")
    func throwingLeavesTheRest() throws {
        let batch = RecordBatch(try (0..<10).map(Self.record))
        var taken: [UInt64] = []
        #expect(throws: Stop.self) {
            try batch.takeEach { record in
                taken.append(record.sequence)
                if record.sequence == 3 { throw Stop() }
            }
        }
        #expect(taken == [0, 1, 2, 3])
        #expect(batch.records.map(\.sequence) == [4, 5, 6, 7, 8, 9])
        #expect(batch.records.map { Self.name($0) } == (4..<10).map { "subscription-with-a-long-name-\($0)" })
    }

    @Test("reading ahead gives each record every step, in order, one record apart, before it is handed on", arguments: [0, 1, 2, 3, 4, 50])
    func readingAhead(records: Int) throws {
        let batch = RecordBatch(try (0..<records).map(Self.record))
        // Everything that happened, in order: ("ahead", sequence, step) or ("fold", sequence, -1).
        var events: [(kind: String, sequence: UInt64, step: Int)] = []
        batch.takeEach(readingAhead: 3) { record, step in
            #expect(Self.name(record.pointee) == "subscription-with-a-long-name-\(record.pointee.sequence)")
            events.append(("ahead", record.pointee.sequence, step))
        } _: { record in
            events.append(("fold", record.sequence, -1))
        }
        #expect(batch.isEmpty)
        #expect(events.filter { $0.kind == "fold" }.map(\.sequence) == (0..<records).map(UInt64.init))
        for sequence in (0..<records).map(UInt64.init) {
            let mine = events.enumerated().filter { $0.element.sequence == sequence }
            // Steps 0, 1, 2, then the fold, each once.
            #expect(mine.map(\.element.step) == [0, 1, 2, -1], "record \(sequence)")
            // Past the first records, the steps come while the three records before it are folded.
            if sequence >= 4, mine.count == 4 {
                for (step, event) in mine.prefix(3).enumerated() {
                    let foldBefore = events[..<event.offset].last { $0.kind == "fold" }?.sequence
                    #expect(foldBefore == sequence - UInt64(4 - step), "record \(sequence) step \(step)")
                }
            }
        }
    }

    @Test("records already folded are dropped from the front, and a gap after them is refused")
    func dropFolded() throws {
        let resend = RecordBatch(try (5..<12).map(Self.record))
        #expect(try PartitionFollower.dropFolded(resend, expected: 8) == 12)
        #expect(resend.records.map(\.sequence) == [8, 9, 10, 11])
        let past = RecordBatch(try (5..<8).map(Self.record))
        #expect(try PartitionFollower.dropFolded(past, expected: 20) == 20)
        #expect(past.isEmpty)
        let gap = RecordBatch(try [5, 6, 8].map(Self.record))
        #expect(throws: WireError.self) { try PartitionFollower.dropFolded(gap, expected: 5) }
    }
}
