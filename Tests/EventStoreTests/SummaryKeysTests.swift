import Foundation
import SystemIO
import Testing
import Wire

@testable import EventStore

#if canImport(Glibc)
    import Glibc
#endif

@Suite("A restart that rebuilds the idempotency index reads the sealed segments' keys from their summaries")
struct SummaryKeysTests {
    /// A log of 64 KiB segments with 3,000 keyed records in partition 0 and 500 in partition 1,
    /// closed; its summary files, oldest first.
    static func sealedLog(_ directory: TemporaryDirectory) throws -> [String] {
        let log = try EventLog(directory: directory.path, options: options)
        try fill(log, partition: 0, count: 3_000, key: { "a\($0)" })
        try fill(log, partition: 1, count: 500, key: { "b\($0)" })
        log.settle()
        return try summaries(directory)
    }

    static var options: EventLog.Options {
        var options = EventLog.Options(partitionCount: 2)
        options.segmentBytes = 64 << 10
        return options
    }

    static func summaries(_ directory: TemporaryDirectory) throws -> [String] {
        let wal = directory.path + "/wal"
        return try FileManager.default.contentsOfDirectory(atPath: wal).filter { $0.hasSuffix(".idx") }.sorted().map { wal + "/" + $0 }
    }

    /// Flips the last byte of `path` (a summary's keys block ends there).
    static func damageLastByte(_ path: String) throws {
        let size = try FileIO.size(FileIO.open(path, O_RDONLY), path: path)
        let fd = try FileIO.open(path, O_RDWR)
        defer { close(fd) }
        let last = try FileIO.pread(fd, count: 1, at: size - 1, path: path)
        try FileIO.pwriteAll(fd, [last[0] ^ 0xFF], at: size - 1, path: path)
    }

    @Test("every key is handed over once, segment by segment in log order, and no more than announced")
    func everyKeyOnceInOrder() throws {
        let directory = TemporaryDirectory()
        #expect(try Self.sealedLog(directory).count >= 3)
        var handed: [SegmentSummary.Key] = []
        var batches = 0
        var announced = 0
        _ = try EventLog(
            directory: directory.path, options: Self.options, willVisit: { count, _ in announced = count },
            keys: {
                handed += $0
                batches += 1
            })
        #expect(handed.count == 3_500 && announced >= handed.count)
        #expect(batches > 3)
        for partition in 0..<2 {
            let sequences = handed.filter { $0.partition == partition }.map(\.sequence)
            #expect(sequences == Array(0..<UInt64(partition == 0 ? 3_000 : 500)))
        }
    }

    @Test("a summary whose keys are damaged has them read from its segment, and is written again")
    func damagedKeysAreReadFromTheSegment() throws {
        let directory = TemporaryDirectory()
        let files = try Self.sealedLog(directory)
        try Self.damageLastByte(files[1])
        var handed = 0
        do {
            let log = try EventLog(directory: directory.path, options: Self.options, keys: { handed += $0.count })
            #expect(handed == 3_500)
            #expect(log.notices.contains { $0.contains(files[1]) && $0.contains("keys were unreadable") }, "\(log.notices)")
            log.settle()
        }
        handed = 0
        let again = try EventLog(directory: directory.path, options: Self.options, keys: { handed += $0.count })
        #expect(handed == 3_500)
        #expect(!again.notices.contains { $0.contains("keys were unreadable") }, "\(again.notices)")
    }

    @Test("a summary whose keys are damaged, beside a damaged segment, stops the opening with an error naming the file")
    func damagedKeysAndSegmentRefuse() throws {
        let directory = TemporaryDirectory()
        let files = try Self.sealedLog(directory)
        try Self.damageLastByte(files[1])
        // A byte in the middle of the segment's records.
        let segment = String(files[1].dropLast(4)) + ".wal"
        let fd = try FileIO.open(segment, O_RDWR)
        let byte = try FileIO.pread(fd, count: 1, at: 30_000, path: segment)
        try FileIO.pwriteAll(fd, [byte[0] ^ 0xFF], at: 30_000, path: segment)
        close(fd)
        #expect {
            _ = try EventLog(directory: directory.path, options: Self.options, keys: { _ in })
        } throws: { error in
            "\(error)".contains(files[1]) && "\(error)".contains("keys are unreadable")
        }
    }

    @Test("summaries read ahead come in order, an unreadable one as nil, and stopping early does not wait for the rest")
    func readAheadInOrder() throws {
        let directory = TemporaryDirectory()
        let files = try Self.sealedLog(directory)
        let paths = files + [directory.path + "/missing.idx"] + files
        let ahead = SummaryReadAhead(paths: paths)
        for (position, path) in paths.enumerated() {
            let summary = ahead.take(position)
            if path.hasSuffix("missing.idx") {
                #expect(summary == nil)
            } else {
                #expect(summary == SegmentSummary.read(path: path, keys: true))
                #expect(summary.map { $0.keys.count == $0.keyCount && $0.keyCount > 0 } == true)
            }
        }
        ahead.stop()
        let stopped = SummaryReadAhead(paths: files)
        #expect(stopped.take(0) != nil)
        stopped.stop()
    }
}
