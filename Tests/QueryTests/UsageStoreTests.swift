import Foundation
import QueryModel
import StackTestSupport
import Testing
import Wire

@testable import Query

/// The usage store on its own: ids that follow from the log whatever order the partitions are
/// folded in, across restarts, and a retention that refuses aged-out ids instead of skipping them.
@Suite("Usage ids from the log alone")
struct UsageStoreTests {
    /// One partition's records: (ordinal, closing hour) with the clock reached after each batch.
    struct Batch {
        var partition: Int
        var records: [(ordinal: UInt64, closed: Timestamp)]
        var clock: Timestamp
    }

    static func hour(_ hours: Int) -> Timestamp {
        Timestamp(iso8601: "2024-03-01T00:00:00Z")!.adding(microseconds: Int64(hours) * Timestamp.microsecondsPerHour)
    }

    /// Three partitions over 30 hours: partition p closes p + 1 records at every hour it has usage
    /// (partition 2 only every third hour), and its clock passes each hour by a few seconds.
    static func batches() -> [Batch] {
        var batches: [Batch] = []
        var ordinals = [UInt64](repeating: 0, count: 3)
        for hour in 1...30 {
            for partition in 0..<3 {
                var records: [(UInt64, Timestamp)] = []
                if partition != 2 || hour % 3 == 0 {
                    for _ in 0...partition {
                        records.append((ordinals[partition], Self.hour(hour)))
                        ordinals[partition] += 1
                    }
                }
                batches.append(Batch(partition: partition, records: records, clock: Self.hour(hour).adding(microseconds: 5_000_000)))
            }
        }
        return batches
    }

    /// Record `ordinal` of `batch`'s partition, of the hour before `closed`.
    static func record(_ batch: Batch, _ ordinal: UInt64, closed: Timestamp) -> UsageRecord {
        let subscription = "sub-\(batch.partition)"
        return UsageRecord(
            partition: batch.partition, ordinal: ordinal, subscription: subscription, resource: ResourceName(resourceId: subscription),
            planId: "plan", meterName: "email", dimension: "emails", hour: closed.adding(microseconds: -Timestamp.microsecondsPerHour),
            quantity: Quantity(1), billed: .zero)
    }

    /// Feeds `batches` to `store` in the given order, as the view workers do.
    static func feed(_ store: UsageStore, _ batches: [Batch]) throws {
        for batch in batches {
            var appended: [(ordinal: UInt64, closed: Timestamp)] = []
            for (ordinal, closed) in batch.records
            where store.append(partition: batch.partition, closed: closed, record: record(batch, ordinal, closed: closed)) {
                appended.append((ordinal, closed))
            }
            try store.journals[batch.partition].sync()
            store.journaled(partition: batch.partition, records: appended, clock: batch.clock)
        }
    }

    /// Every numbered record as "partition/ordinal" by id.
    static func ids(_ store: UsageStore) throws -> [String] {
        let position = store.position
        return try store.page(from: position.firstId, size: 100_000).map { entry in
            "\(entry.line["partition"]?.intValue ?? -1)/\(entry.line["ordinal"]?.intValue ?? -1)"
        }
    }

    @Test("two stores fed the partitions at different speeds give every record the same id, and number nothing past the slowest partition")
    func sameIdsWhateverTheOrder() throws {
        let home = StackHome()
        let batches = Self.batches()
        let inOrder = try UsageStore(directory: home.path + "/a", partitions: 3, retentionDays: 400)
        try Self.feed(inOrder, batches)
        // The other replica catches up partition by partition: all of 0, then all of 1, then 2.
        let byPartition = try UsageStore(directory: home.path + "/b", partitions: 3, retentionDays: 400)
        try Self.feed(byPartition, batches.filter { $0.partition == 0 })
        #expect(byPartition.position.nextId == 0, "nothing is numbered while partitions 1 and 2 have not started")
        try Self.feed(byPartition, batches.filter { $0.partition == 1 })
        #expect(byPartition.position.nextId == 0)
        let partial = batches.filter { $0.partition == 2 }
        try Self.feed(byPartition, Array(partial.prefix(10)))
        // Partition 2's clock is at hour 10 (plus seconds): exactly the hours up to 10 are numbered.
        let upToTen = batches.filter { $0.clock <= Self.hour(10).adding(microseconds: 5_000_000) }.reduce(0) { $0 + $1.records.count }
        #expect(byPartition.position.nextId == upToTen)
        #expect(try Self.ids(byPartition) == Array(try Self.ids(inOrder).prefix(upToTen)))
        try Self.feed(byPartition, Array(partial.dropFirst(10)))
        let expected = try Self.ids(inOrder)
        #expect(expected.count == 30 * 3 + 10 * 3)
        #expect(try Self.ids(byPartition) == expected)
        // Within an hour, lower partitions first; hours in order.
        #expect(Array(expected.prefix(6)) == ["0/0", "1/0", "1/1", "0/1", "1/2", "1/3"])
    }

    @Test("a reopened store gives the same ids once its partitions' clocks are known again, and numbers new records after them")
    func sameIdsAfterRestart() throws {
        let home = StackHome()
        let batches = Self.batches()
        let reference = try UsageStore(directory: home.path + "/ref", partitions: 3, retentionDays: 400)
        try Self.feed(reference, batches)
        var store = try UsageStore(directory: home.path + "/s", partitions: 3, retentionDays: 400)
        try Self.feed(store, Array(batches.prefix(40)))
        let before = try Self.ids(store)
        store = try UsageStore(directory: home.path + "/s", partitions: 3, retentionDays: 400)
        #expect(store.position.nextId == 0, "no clock known yet")
        // The restored snapshots' clocks (older than the journals' last lines), then the replay.
        for partition in 0..<3 { store.journaled(partition: partition, records: [], clock: Self.hour(5)) }
        #expect(Array(before.prefix(try Self.ids(store).count)) == (try Self.ids(store)))
        try Self.feed(store, Array(batches.dropFirst(12)))
        #expect(try Self.ids(store) == (try Self.ids(reference)))
    }

    @Test(
        "records older than the retention are refused as expired with the first readable id; their segment files go; the ids of the others stay"
    )
    func retention() throws {
        let home = StackHome()
        // 20 days of one record an hour on each of two partitions, kept 7 days.
        var batches: [Batch] = []
        for hour in 1...(20 * 24) {
            for partition in 0..<2 {
                let ordinal = UInt64(hour - 1)
                batches.append(
                    Batch(
                        partition: partition, records: [(ordinal, Self.hour(hour))], clock: Self.hour(hour).adding(microseconds: 1_000_000))
                )
            }
        }
        let reference = try UsageStore(directory: home.path + "/ref", partitions: 2, retentionDays: 1000)
        try Self.feed(reference, batches)
        let store = try UsageStore(directory: home.path + "/s", partitions: 2, retentionDays: 7)
        try Self.feed(store, batches)
        let position = store.position
        // The horizon is day 20 01:00; the cutoff the midnight 7 days before: 2024-03-14.
        #expect(position.expiredBefore == Timestamp(iso8601: "2024-03-14T00:00:00Z"))
        let expired = batches.filter { $0.records.allSatisfy { $0.closed < position.expiredBefore! } }.count
        #expect(position.firstId == expired)
        #expect(position.nextId == batches.count)
        #expect(throws: UsageStore.PageError.self) { try store.page(from: position.firstId - 1, size: 10) }
        do {
            _ = try store.page(from: 0, size: 10)
        } catch {
            guard case .expired(let first, let before) = error else { throw error }
            #expect(first == position.firstId)
            #expect(before == position.expiredBefore)
        }
        let kept = try store.page(from: position.firstId, size: 100_000).map { "\($0.id) \($0.line["partition"]!) \($0.line["ordinal"]!)" }
        let all = try reference.page(from: 0, size: 100_000).map { "\($0.id) \($0.line["partition"]!) \($0.line["ordinal"]!)" }
        #expect(kept == Array(all.suffix(kept.count)))
        // Whole weeks of segments are gone: only the newest weeks' files are left of each partition.
        let files = try FileManager.default.contentsOfDirectory(atPath: home.path + "/s/p000")
        #expect(files.count <= 3, "\(files)")
        // After a restart: the same first id and the same ids.
        let reopened = try UsageStore(directory: home.path + "/s", partitions: 2, retentionDays: 7)
        for partition in 0..<2 { reopened.journaled(partition: partition, records: [], clock: Self.hour(20 * 24)) }
        #expect(reopened.position.firstId == position.firstId)
        #expect(
            try reopened.page(from: position.firstId, size: 100_000).map { "\($0.id) \($0.line["partition"]!) \($0.line["ordinal"]!)" }
                == kept)
    }

    @Test("a week's segment that a crash left empty continues at its first ordinal, and the journal reopens whole")
    func emptySegmentAfterCrash() throws {
        let home = StackHome()
        let directory = home.path + "/usage"
        var store = try UsageStore(directory: directory, partitions: 1, retentionDays: 400)
        let batches = (1...5).map { hour in
            Batch(partition: 0, records: [(UInt64(hour - 1), Self.hour(hour))], clock: Self.hour(hour).adding(microseconds: 1))
        }
        try Self.feed(store, batches)
        // The next week's file, created just before a crash, without a line.
        _ = FileManager.default.createFile(atPath: directory + "/p000/" + PartitionUsageJournal.fileName(5), contents: nil)
        store = try UsageStore(directory: directory, partitions: 1, retentionDays: 400)
        #expect(store.journals[0].nextOrdinal == 5)
        let next = Batch(partition: 0, records: [(5, Self.hour(24 * 8))], clock: Self.hour(24 * 8).adding(microseconds: 1))
        try Self.feed(store, [next])
        store = try UsageStore(directory: directory, partitions: 1, retentionDays: 400)
        store.journaled(partition: 0, records: [], clock: Self.hour(24 * 8).adding(microseconds: 1))
        #expect(try Self.ids(store) == (0...5).map { "0/\($0)" })
    }
}
