import Foundation
import SystemIO
import Testing
import Wire

@testable import EventStore

#if canImport(Glibc)
    import Glibc
#endif

@Suite("The idempotency index kept in a file")
struct IdempotencyTableTests {
    static let identity = "0123456789abcdef0123456789abcdef"

    static func position(_ sequence: Int, partition: Int = 0) -> IdempotencyIndex.Position {
        IdempotencyIndex.Position(
            partition: partition, sequence: UInt64(sequence), enqueuedTime: Timestamp(seconds: 1_000 + Int64(sequence)),
            payloadDigest: PayloadDigest(high: 0, low: UInt64(sequence) + 1))
    }

    /// Remembers keys k0..<k`count` in partition 0 of a file-backed index at `path` and records
    /// them as covered; the index is then dropped as a killed process would leave it.
    static func fillAndDrop(_ path: String, count: Int, covered: UInt64? = nil) -> [UInt64] {
        var opened = IdempotencyIndex.opening(path: path, identity: identity, partitions: 2, logNext: [0, 0])
        #expect(opened.index.isKeptInFile)
        for sequence in 0..<count { opened.index.remember("k\(sequence)", at: position(sequence)) }
        let next: [UInt64] = [covered ?? UInt64(count), 0]
        opened.index.cover(next)
        return next
    }

    /// The files in `directory` once background removals have left only the table (at most 3 s), or
    /// as they are then.
    static func filesOnceSettled(_ directory: String) throws -> [String] {
        var files: [String] = []
        for _ in 0..<300 {
            files = try FileManager.default.contentsOfDirectory(atPath: directory)
            if files == ["idempotency.table"] { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return files
    }

    static func overwrite(_ path: String, at offset: Int, with bytes: [UInt8]) throws {
        let fd = try FileIO.open(path, O_RDWR)
        defer { close(fd) }
        try FileIO.pwriteAll(fd, bytes, at: offset, path: path)
    }

    /// Opens the table file at `path` as ingest would and expects it rebuilt: nothing taken over,
    /// every key wanted from the log, and (with `reason`) a notice saying why.
    static func expectRebuilt(
        _ path: String, identity: String = identity, logNext: [UInt64] = [10, 0], retentionDays: Int = 7, reason: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let opened = IdempotencyIndex.opening(
            path: path, identity: identity, partitions: 2, logNext: logNext, retentionDays: retentionDays)
        #expect(opened.from == [0, 0] && opened.index.count == 0, sourceLocation: sourceLocation)
        if let reason {
            #expect(opened.notice?.contains(reason) == true, "\(opened.notice ?? "no notice")", sourceLocation: sourceLocation)
        }
    }

    @Test("a process started after another was killed takes the table over, and starts its keys where the table was covered")
    func takenOverAfterACrash() {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        // More keys than the first table holds: it grows (into a new file) on the way.
        let next = Self.fillAndDrop(path, count: 5_000)
        let reopened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [6_000, 0])
        #expect(reopened.notice == nil)
        #expect(reopened.from == next)
        #expect(reopened.index.count == 5_000)
        for sequence in [0, 1_234, 4_999] {
            let found = reopened.index.lookup("k\(sequence)")
            #expect(found == Self.position(sequence), "k\(sequence)")
        }
        #expect(reopened.index.lookup("k5000") == nil)
        #expect(!FileManager.default.fileExists(atPath: path + ".new"))
    }

    @Test("a table that cannot grow into a new file goes on in memory, keeps every key, and leaves no file to take over")
    func growthWithoutAFileGoesOnInMemory() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        var opened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [0, 0])
        // A directory where the grown file would be made: creating it fails, as on a full disk.
        try FileManager.default.createDirectory(atPath: path + ".new", withIntermediateDirectories: false)
        for sequence in 0..<2_000 { opened.index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(!opened.index.isKeptInFile)
        #expect(opened.index.count == 2_000)
        #expect(opened.index.lookup("k1999") == Self.position(1_999))
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a table opened for an expected count of keys is made that large and takes them all without growing")
    func madeForTheExpectedKeys() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        var opened = IdempotencyIndex.opening(
            path: path, identity: Self.identity, partitions: 2, logNext: [0, 0], expectedKeys: 50_000)
        // 50,000 keys at most 70% full: 131,072 slots (65,536 hold 45,875).
        #expect(opened.index.memoryBytes == 131_072 * 40)
        #expect(IdempotencyIndex.memoryBytes(forKeys: 50_000) == 131_072 * 40)
        let fileBytes = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(fileBytes >= 131_072 * 40)
        for sequence in 0..<50_000 { opened.index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(opened.index.memoryBytes == 131_072 * 40)
        #expect(!opened.index.hasSuccessor)
        #expect(opened.index.lookup("k49999") == Self.position(49_999))
    }

    @Test("a smaller table taken over grows to the expected count at start, keeping its keys for the takeover")
    func takenOverTableGrowsToTheExpectedKeys() {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        let next = Self.fillAndDrop(path, count: 500)
        let reopened = IdempotencyIndex.opening(
            path: path, identity: Self.identity, partitions: 2, logNext: [500, 0], expectedKeys: 50_000)
        #expect(reopened.notice == nil)
        #expect(reopened.from == next)
        #expect(reopened.index.memoryBytes == 131_072 * 40)
        #expect(reopened.index.count == 500)
        #expect(reopened.index.lookup("k499") == Self.position(499))
        // The grown table is the file now: the next start takes it over at that size.
        let again = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [500, 0])
        #expect(again.notice == nil && again.from == next)
        #expect(again.index.memoryBytes == 131_072 * 40)
        #expect(again.index.lookup("k0") == Self.position(0))
    }

    @Test("a file-backed table 60% full is given its successor in the background, and growing into it keeps every key for a restart")
    func successorMadeAheadForAFile() {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        var opened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [0, 0])
        // 65,536 slots from 22,938 keys on: 60% full at 39,318, full (70%) at 45,876.
        for sequence in 0..<39_000 { opened.index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(!opened.index.hasSuccessor)
        for sequence in 39_000..<40_000 { opened.index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(opened.index.hasSuccessor)
        for sequence in 40_000..<50_000 { opened.index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(!opened.index.hasSuccessor)
        #expect(opened.index.isKeptInFile)
        #expect(opened.index.memoryBytes == 131_072 * 40)
        opened.index.cover([50_000, 0])
        #expect(!FileManager.default.fileExists(atPath: path + ".new"))
        let reopened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [50_000, 0])
        #expect(reopened.notice == nil)
        #expect(reopened.index.count == 50_000)
        for sequence in [0, 22_937, 39_318, 45_876, 49_999] {
            #expect(reopened.index.lookup("k\(sequence)") == Self.position(sequence), "k\(sequence)")
        }
    }

    @Test("a successor left by a killed process is put aside at once by the next start and removed in the background")
    func leftoverSuccessorIsDiscarded() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        _ = Self.fillAndDrop(path, count: 100)
        // What a process killed after making its successor leaves, and one an earlier start put aside.
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: path + ".new"))
        try Data(count: 4096).write(to: URL(fileURLWithPath: path + ".discarded-1-2"))
        let reopened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [100, 0])
        #expect(reopened.notice == nil && reopened.index.count == 100)
        #expect(!FileManager.default.fileExists(atPath: path + ".new"))
        #expect(try Self.filesOnceSettled(directory.path) == ["idempotency.table"])
    }

    @Test("a successor made ahead is dropped, file and all, when a sweep takes the table back under half full")
    func successorDroppedAfterASweep() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        var opened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [0, 0])
        for sequence in 0..<40_000 { opened.index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(opened.index.hasSuccessor)
        // Eight days later every key has left the seven-day window.
        opened.index.expire(now: Timestamp(seconds: 1_000 + 8 * 86_400))
        #expect(opened.index.count == 0)
        #expect(!opened.index.hasSuccessor)
        #expect(try Self.filesOnceSettled(directory.path) == ["idempotency.table"])
        // Filled again, it is made again and used.
        for sequence in 0..<50_000 { opened.index.remember("n\(sequence)", at: Self.position(700_000 + sequence)) }
        #expect(opened.index.count == 50_000 && opened.index.memoryBytes == 131_072 * 40)
        #expect(opened.index.lookup("n49999") == Self.position(749_999))
    }

    @Test("an index in memory 60% full is given its successor too, and keeps every key through the growth")
    func successorMadeAheadInMemory() {
        var index = IdempotencyIndex(retentionDays: 7, capacity: 40_000)
        #expect(index.memoryBytes == 65_536 * 40)
        for sequence in 0..<40_000 { index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(index.hasSuccessor)
        for sequence in 40_000..<50_000 { index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(!index.hasSuccessor)
        #expect(index.memoryBytes == 131_072 * 40)
        #expect(index.count == 50_000)
        for sequence in stride(from: 0, to: 50_000, by: 997) {
            #expect(index.lookup("k\(sequence)") == Self.position(sequence), "k\(sequence)")
        }
    }

    @Test("a successor that cannot be made leaves growth to go on in memory as before, with every key")
    func successorThatFailsFallsBackToMemory() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        var opened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [0, 0])
        for sequence in 0..<32_000 { opened.index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(opened.index.isKeptInFile)
        // A directory where the successor's file would be made: making it fails, as on a full disk.
        try FileManager.default.createDirectory(atPath: path + ".new", withIntermediateDirectories: false)
        for sequence in 32_000..<50_000 { opened.index.remember("k\(sequence)", at: Self.position(sequence)) }
        #expect(!opened.index.isKeptInFile)
        #expect(opened.index.count == 50_000)
        for sequence in [0, 32_768, 49_999] {
            #expect(opened.index.lookup("k\(sequence)") == Self.position(sequence), "k\(sequence)")
        }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a table of another log, another retention window or another boot is rebuilt, never trusted")
    func refusedWhenItIsNotThisLogs() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        _ = Self.fillAndDrop(path, count: 10)
        Self.expectRebuilt(path, identity: "ffffffffffffffffffffffffffffffff", reason: "another log")

        _ = Self.fillAndDrop(path, count: 10)
        Self.expectRebuilt(path, retentionDays: 30, reason: "retention window")

        _ = Self.fillAndDrop(path, count: 10)
        try Self.overwrite(path, at: 128, with: Array("00000000-0000-0000-0000-000000000000".utf8))
        Self.expectRebuilt(path, reason: "machine restarted")
    }

    @Test("a table covering records the log does not have is rebuilt")
    func refusedWhenAheadOfTheLog() {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        _ = Self.fillAndDrop(path, count: 10)
        Self.expectRebuilt(path, logNext: [9, 0], reason: "does not have")
    }

    @Test("a copied table file is rebuilt: only the file the table was made as is trusted")
    func refusedWhenCopied() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        _ = Self.fillAndDrop(path, count: 10)
        try FileManager.default.copyItem(atPath: path, toPath: path + ".copy")
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.moveItem(atPath: path + ".copy", toPath: path)
        Self.expectRebuilt(path, reason: "copy")
    }

    @Test("a table left while a sweep was moving entries, or damaged in its header, is rebuilt")
    func refusedWhenCutShortOrDamaged() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        _ = Self.fillAndDrop(path, count: 10)
        try Self.overwrite(path, at: 56, with: [1])
        Self.expectRebuilt(path, reason: "moving entries")

        _ = Self.fillAndDrop(path, count: 10)
        try Self.overwrite(path, at: 16, with: [0xFF, 0xFF, 0xFF])
        Self.expectRebuilt(path, reason: "not an idempotency table")

        try Self.overwrite(path, at: 0, with: Array("garbage!".utf8))
        Self.expectRebuilt(path, reason: "not an idempotency table")
    }

    @Test("keys expired by a sweep stay expired in the file, and the file stays trusted after the sweep")
    func sweepKeepsTheFileTrusted() {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        do {
            var opened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 1, logNext: [0], retentionDays: 1)
            opened.index.remember("old", at: .init(partition: 0, sequence: 0, enqueuedTime: Timestamp(seconds: 0)))
            opened.index.remember("new", at: .init(partition: 0, sequence: 1, enqueuedTime: Timestamp(seconds: 2 * 86_400)))
            opened.index.expire(now: Timestamp(seconds: 2 * 86_400))
            opened.index.cover([2])
        }
        let reopened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 1, logNext: [2], retentionDays: 1)
        #expect(reopened.from == [2])
        #expect(reopened.index.lookup("old") == nil && reopened.index.lookup("new") != nil)
        #expect(reopened.index.count == 1)
    }

    @Test("opening a log hands over only the keys of records the table does not cover")
    func logGivesOnlyTheUncoveredKeys() throws {
        let directory = TemporaryDirectory()
        var options = EventLog.Options(partitionCount: 2)
        options.segmentBytes = 64 << 10
        do {
            let log = try EventLog(directory: directory.path, options: options)
            try fill(log, partition: 0, count: 3_000, key: { "a\($0)" })
            try fill(log, partition: 1, count: 500, key: { "b\($0)" })
            log.settle()
        }
        var handed: [SegmentSummary.Key] = []
        var told: (identity: String, next: [UInt64])?
        let log = try EventLog(
            directory: directory.path, options: options, keys: { handed += $0 },
            keysFrom: { identity, next in
                told = (identity, next)
                return [2_900, 100]
            })
        #expect(told?.identity == log.identity && told?.next == [3_000, 500])
        #expect(handed.count == 100 + 400)
        #expect(handed.allSatisfy { $0.sequence >= ($0.partition == 0 ? 2_900 : 100) })
        #expect(log.segments > 3)
    }

    @Test("a restart reads the sealed segments' summaries, and leaves them as they are, instead of reading the segments again")
    func summariesAreUsed() throws {
        let directory = TemporaryDirectory()
        var options = EventLog.Options(partitionCount: 2)
        options.segmentBytes = 64 << 10
        do {
            let log = try EventLog(directory: directory.path, options: options)
            try fill(log, partition: 0, count: 3_000, key: { "a\($0)" })
            log.settle()
        }
        let wal = directory.path + "/wal"
        func summaryFiles() throws -> [String: FileIO.Identity] {
            var files: [String: FileIO.Identity] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: wal) where name.hasSuffix(".idx") {
                files[name] = try FileIO.identity(of: wal + "/" + name)
            }
            return files
        }
        let before = try summaryFiles()
        #expect(before.count >= 3)
        var keysHanded = 0
        do {
            let log = try EventLog(directory: directory.path, options: options, keys: { keysHanded += $0.count })
            log.settle()
        }
        #expect(keysHanded == 3_000)
        // A summary rebuilt by reading its segment is written again (a new file); the segment that
        // was current when the log closed gets its first summary now.
        let after = try summaryFiles()
        #expect(before.allSatisfy { after[$0.key] == $0.value }, "\(after.filter { before[$0.key] != $0.value }.keys.sorted())")
    }

    @Test("damaged table headers and summary files of every kind are refused or read, never trapped on")
    func damagedBytesNeverTrap() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/idempotency.table"
        var generator = SystemRandomNumberGenerator()
        for round in 0..<200 {
            _ = Self.fillAndDrop(path, count: 5)
            // Random bytes over the header's fields (slots, header length, counts, partitions).
            let offset = [8, 12, 16, 24, 176, 200][round % 6]
            try Self.overwrite(path, at: offset, with: (0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let opened = IdempotencyIndex.opening(path: path, identity: Self.identity, partitions: 2, logNext: [5, 0])
            #expect(opened.index.count <= 5)
        }
        // A slot count that is a power of two so large that the file's size cannot be computed.
        _ = Self.fillAndDrop(path, count: 5)
        try Self.overwrite(path, at: 16, with: withUnsafeBytes(of: (UInt64(1) << 60).littleEndian) { Array($0) })
        Self.expectRebuilt(path, logNext: [5, 0], reason: "not an idempotency table")
        var summary = SegmentSummary(number: 2, dataEnd: 9_000)
        for sequence in 0..<40 {
            summary.note(
                partition: sequence % 3, sequence: UInt64(sequence / 3), time: Timestamp(seconds: Int64(sequence)),
                meta: RecordMeta(
                    purchasedResource: sequence % 7 == 0 ? ResourceName(resourceId: "r\(sequence)", resourceUri: "/u/\(sequence)") : nil,
                    payloadDigest: PayloadDigest(high: 3, low: UInt64(sequence)), keyDigest: PayloadDigest(high: 4, low: UInt64(sequence))),
                offset: 64 + sequence * 200, length: 200)
        }
        for original in [summary.bytes, summary.previousFormatBytes] {
            for _ in 0..<2_000 {
                var bytes = original
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
                case 1: bytes.removeLast(Int.random(in: 1..<bytes.count, using: &generator))
                default:
                    let at = Int.random(in: 8..<max(9, bytes.count - 8), using: &generator)
                    for index in at..<min(bytes.count, at + 8) { bytes[index] = 0xFF }
                }
                for keys in [true, false] {
                    // What reads back is whole: its keys, when read, are as many as it says.
                    if let read = SegmentSummary.decode(bytes, keys: keys), keys {
                        #expect(read.keys.count == read.keyCount)
                    }
                }
            }
        }
    }

    /// How many of the mapping's pages are resident.
    static func residentPages(_ table: IdempotencyTable) -> (resident: Int, pages: Int) {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (table.mappedLength + pageSize - 1) / pageSize
        var vector = [UInt8](repeating: 0, count: pages)
        #expect(mincore(table.base, table.mappedLength, &vector) == 0)
        return (vector.filter { $0 & 1 != 0 }.count, pages)
    }

    @Test("a large table's pages, file or anonymous, are all mapped in when it is made, both halves of it")
    func largeTablesArePopulated() throws {
        let directory = TemporaryDirectory()
        let slots = 1 << 21  // 80 MiB of slots: past the size whose halves are mapped in at once
        let owner = IdempotencyTable.Owner(identity: Self.identity, bootID: "boot", partitions: 2, retention: 86_400_000_000)
        let file = try IdempotencyTable.create(path: directory.path + "/idempotency.table", slots: slots, owner: owner)
        let anonymous = IdempotencyTable.anonymous(slots: slots, retention: 86_400_000_000, partitions: 2, populated: true)
        for table in [file, anonymous] {
            let (resident, pages) = Self.residentPages(table)
            #expect(table.mappedLength >= 64 << 20)
            #expect(resident == pages, "\(resident) of \(pages) pages resident")
        }
    }
}
