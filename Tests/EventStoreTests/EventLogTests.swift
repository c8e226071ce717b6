import EventStore
import Foundation
import SystemIO
import Testing
import Wire

/// A fresh directory per test, removed afterwards.
final class TemporaryDirectory {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "eventstore-tests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func payload(_ index: Int) -> [UInt8] {
    Array(
        #"{"type":"UsageReported","value":{"resourceId":"r\#(index % 7)","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":\#(index)}}"#
            .utf8)
}

/// Appends `count` records to partition `partition`, durable and published, `batch` at a time;
/// with `partitions`, in turn to the partitions from `partition` on. The records are numbered from
/// `first` (their payload, time and key).
func fill(
    _ log: EventLog, partition: Int = 0, partitions: Int = 1, from first: Int = 0, count: Int, batch: Int = 100,
    key: (Int) -> String? = { _ in nil }
) throws {
    var written = 0
    while written < count {
        let size = min(batch, count - written)
        let records = (first + written..<first + written + size).map { index in
            EventLog.Pending(
                partition: partition + index % partitions, time: Timestamp(seconds: Int64(1_000 + index)),
                meta: RecordMeta(
                    idempotencyKey: key(index), payloadDigest: key(index).map { _ in PayloadDigest(high: 1, low: UInt64(index)) },
                    keyDigest: key(index).map(PayloadDigest.hash)),
                payload: payload(index))
        }
        try log.commit(records)
        written += size
    }
}

/// The log's segment files, oldest first.
func segmentFiles(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory + "/wal").filter { $0.hasSuffix(".wal") }.sorted().map {
        directory + "/wal/" + $0
    }
}

/// The offset just after the last byte that is not zero in `path`.
func writtenEnd(_ path: String) throws -> Int {
    let bytes = try #require(FileManager.default.contents(atPath: path))
    var end = bytes.count
    while end > 0 && bytes[end - 1] == 0 { end -= 1 }
    return end
}

@Suite("Event log")
struct EventLogTests {
    @Test("CRC-32C matches the standard check value and masking round-trips")
    func crc() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.unmask(CRC32C.mask(0x1234_5678)) == 0x1234_5678)
    }

    @Test("the CPU instruction and the tables give the same CRC for every length and alignment, also when continued")
    func crcInstructionMatchesTables() {
        var generator = SplitMix64(seed: 42)
        let bytes = (0..<4099).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        bytes.withUnsafeBytes { all in
            for start in 0..<9 {
                for count in [0, 1, 7, 8, 9, 23, 24, 25, 63, 64, 65, 1000, 4090] where start + count <= all.count {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<start + count])
                    #expect(CRC32C.checksum(slice) == CRC32C.checksumByTables(slice), "start \(start), count \(count)")
                    let half = count / 2
                    let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slice[..<half]))
                    #expect(
                        CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slice[half...]), continuing: first)
                            == CRC32C.checksumByTables(slice))
                }
            }
        }
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32C.checksumByTables($0) } == 0xE306_9283)
    }

    @Test("records round-trip through the binary codec with their meta, and the salt and CRC catch every flipped bit")
    func codecRoundTrip() throws {
        var bytes: [UInt8] = []
        let meta = RecordMeta(
            idempotencyKey: "k", purchasedResource: ResourceName(resourceId: "id", resourceUri: "/uri"),
            payloadDigest: PayloadDigest(high: 3, low: 4), keyDigest: PayloadDigest.hash("k"))
        payload(1).withUnsafeBytes {
            RecordCodec.encode(partition: 2, sequence: 7, time: Timestamp(seconds: 99), meta: meta, payload: $0, salt: 77, to: &bytes)
        }
        #expect(bytes.count == RecordCodec.length(meta: meta, payloadCount: payload(1).count))
        let decoded = bytes.withUnsafeBytes { RecordCodec.decode($0, at: 0, salt: 77) }
        guard case .record(let record, let length) = decoded else {
            Issue.record("not decoded: \(decoded)")
            return
        }
        #expect(length == bytes.count)
        #expect(record.partition == 2 && record.sequence == 7 && record.enqueuedTime == Timestamp(seconds: 99))
        #expect(record.meta == meta)
        #expect(record.payload == payload(1))
        if case .record = bytes.withUnsafeBytes({ RecordCodec.decode($0, at: 0, salt: 78) }) {
            Issue.record("a record of another segment's salt passed")
        }
        for index in 0..<bytes.count {
            var damaged = bytes
            damaged[index] ^= 0x04
            let result = damaged.withUnsafeBytes { RecordCodec.decode($0, at: 0, salt: 77) }
            if case .record = result { Issue.record("a flipped bit at \(index) went unnoticed") }
        }
        #expect([UInt8](repeating: 0, count: 64).withUnsafeBytes { RecordCodec.decode($0, at: 0, salt: 77) }.isEnd)
    }

    @Test("a record's bytes are those of the log's format, written into an array or in place, nothing past its length")
    func codecBytesAreTheFormat() {
        // Written by the release before records were encoded in place (the format is unchanged).
        let keyed = RecordMeta(
            idempotencyKey: "key-é", purchasedResource: ResourceName(resourceId: "id-1", resourceUri: "/subscriptions/x"),
            payloadDigest: PayloadDigest(high: 0x0102_0304_0506_0708, low: 0x1112_1314_1516_1718),
            keyDigest: PayloadDigest(high: 5, low: 6), definesPlan: true)
        let cases: [(meta: RecordMeta, partition: Int, sequence: UInt64, time: Int64, payload: String, salt: UInt32, hex: String)] = [
            (
                keyed, 3, 0x1_0000_0002, 1_700_000_000_123_456, #"{"type":"X"}"#, 0xDEAD_BEEF,
                "7be93d9a62000000020000000100000040222018240a060003000f00060004001000000008070605040302011817161514131211"
                    + "050000000000000006000000000000006b65792dc3a969642d312f737562736372697074696f6e732f787b2274797065223a2258227d"
            ),
            (RecordMeta(), 0, 9, 5, "{}", 1, "fbaf86b31e000000090000000000000005000000000000000000000000000000000000007b7d"),
        ]
        for example in cases {
            let payload = Array(example.payload.utf8)
            let time = Timestamp(microseconds: example.time)
            var bytes: [UInt8] = [0xAA]
            payload.withUnsafeBytes {
                RecordCodec.encode(
                    partition: example.partition, sequence: example.sequence, time: time, meta: example.meta, payload: $0,
                    salt: example.salt, to: &bytes)
            }
            #expect(bytes.first == 0xAA, "what was in the array before stays")
            #expect(hex(bytes.dropFirst()) == example.hex)
            let length = RecordCodec.length(meta: example.meta, payloadCount: payload.count)
            var room = [UInt8](repeating: 0x55, count: length + 16)
            let written = room.withUnsafeMutableBytes { out in
                payload.withUnsafeBytes {
                    RecordCodec.encode(
                        partition: example.partition, sequence: example.sequence, time: time, meta: example.meta, payload: $0,
                        salt: example.salt, into: UnsafeMutableRawBufferPointer(rebasing: out[8...]))
                }
            }
            #expect(written == length)
            #expect(room[..<8].allSatisfy { $0 == 0x55 } && room[(8 + length)...].allSatisfy { $0 == 0x55 }, "nothing outside the record")
            #expect(hex(room[8..<(8 + length)]) == example.hex)
        }
    }

    @Test("a record whose key is kept in its payload is written byte for byte as one whose meta holds the key, and reads back with it")
    func keyInPayloadIsTheSameRecord() throws {
        let payload = Array(#"{"id":"key-é","type":"UsageReported","value":{}}"#.utf8)
        let key = 7..<13  // the key's UTF-8 bytes in the payload (é is two)
        #expect(String(decoding: payload[key], as: UTF8.self) == "key-é")
        let digests = (payload: PayloadDigest(high: 1, low: 2), key: PayloadDigest.hash("key-é"))
        let asString = EventLog.Pending(
            partition: 1, time: Timestamp(seconds: 1_000),
            meta: RecordMeta(idempotencyKey: "key-é", payloadDigest: digests.payload, keyDigest: digests.key), payload: payload)
        let inPayload = EventLog.Pending(
            partition: 1, time: Timestamp(seconds: 1_000), meta: RecordMeta(payloadDigest: digests.payload, keyDigest: digests.key),
            payload: payload, keyInPayload: key)
        #expect(inPayload.encodedLength == asString.encodedLength)
        func bytes(_ record: EventLog.Pending) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: record.encodedLength)
            let written = out.withUnsafeMutableBytes { record.encode(sequence: 4, salt: 99, into: $0) }
            #expect(written == out.count)
            return out
        }
        #expect(bytes(inPayload) == bytes(asString))

        let directory = TemporaryDirectory()
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 2)
            try log.commit([inPayload, asString])
        }
        var keys: [PayloadDigest?] = []
        let reopened = try EventLog(directory: directory.path, partitionCount: 2, visit: { _, _, _, meta in keys.append(meta.keyDigest) })
        #expect(keys == [digests.key, digests.key])
        let records = try reopened.partitions[1].read(from: 0, maxRecords: 10, maxBytes: 1 << 20)
        #expect(records.map(\.meta.idempotencyKey) == ["key-é", "key-é"])
        #expect(records.map(\.meta.keyDigest) == [digests.key, digests.key])
        #expect(records.allSatisfy { $0.payload == payload })
    }

    @Test("large commit groups of keyed records in two partitions read back whole, in order, and after reopening")
    func largeGroupsReadBack() throws {
        let directory = TemporaryDirectory()
        let count = 6_000
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 2, segmentBytes: 1 << 20)
            // Groups of about a thousand keyed records, alternating partitions, across segments.
            var written = 0
            for size in [999, 999, 1_000, 255, 1_747, 1_000] {
                try fill(log, partitions: 2, from: written, count: size, batch: size, key: { "key-\($0)" })
                written += size
            }
            #expect(written == count)
            log.settle()
            #expect(log.partitions[0].storage.segments > 1)
        }
        var visited = 0
        let reopened = try EventLog(directory: directory.path, partitionCount: 2, visit: { _, _, _, _ in visited += 1 })
        #expect(visited == count)
        for partition in 0..<2 {
            let all = try reopened.partitions[partition].read(from: 0, maxRecords: count, maxBytes: 1 << 30)
            #expect(all.map(\.sequence) == Array(0..<UInt64(count / 2)))
            for (position, record) in all.enumerated() where record.payload != payload(position * 2 + partition) {
                Issue.record("partition \(partition), record \(position): another payload")
                break
            }
        }
    }

    @Test("appended records read back in order from any sequence, across segments and after reopening")
    func appendReadReopen() throws {
        let directory = TemporaryDirectory()
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 2, segmentBytes: 64 << 10)
            try fill(log, count: 3_000, key: { "k\($0)" })
            #expect(log.partitions[0].storage.segments > 1)
            log.settle()
            let all = try log.partitions[0].read(from: 0, maxRecords: 10_000, maxBytes: 1 << 30)
            #expect(all.map(\.sequence) == Array(0..<3_000))
            #expect(all[1234].payload == payload(1234))
            let middle = try log.partitions[0].read(from: 1_777, maxRecords: 5)
            #expect(middle.map(\.sequence) == [1_777, 1_778, 1_779, 1_780, 1_781])
            #expect(try log.partitions[0].read(from: 3_000, maxRecords: 5).isEmpty)
            #expect(try log.partitions[1].read(from: 0, maxRecords: 5).isEmpty)
        }
        var visited = 0
        var announced: (Int, Timestamp?) = (0, nil)
        let reopened = try EventLog(directory: directory.path, partitionCount: 2, willVisit: { announced = ($0, $1) }) { _, _, _, _ in
            visited += 1
        }
        #expect(visited == 3_000)
        #expect(announced.0 == 3_000 && announced.1 == Timestamp(seconds: 3_999))
        #expect(reopened.partitions[0].durableNextSequence == 3_000)
        #expect(reopened.partitions[0].lastTime == Timestamp(seconds: 3_999))
        try fill(reopened, count: 10)
        #expect(try reopened.partitions[0].read(from: 2_999, maxRecords: 3).map(\.sequence) == [2_999, 3_000, 3_001])
    }

    @Test("segments zero-filled in the background, written back a megabyte at a time, hold every record across extensions and spares")
    func zeroFilledInTheBackground() throws {
        let directory = TemporaryDirectory()
        // 2 MiB segments: the first grows from 1 MiB in a background extension, the later ones are
        // spares zero-filled whole (more than a megabyte: written back as they are filled).
        let count = 40_000
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 1, segmentBytes: 2 << 20)
            try fill(log, count: count, batch: 500)
            log.settle()
            #expect(log.partitions[0].storage.segments >= 3)
        }
        for file in try segmentFiles(directory.path).dropLast() {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
            #expect(size <= 2 << 20 && size > 1 << 20, "\(file): \(size) bytes")
        }
        let reopened = try EventLog(directory: directory.path, partitionCount: 1)
        #expect(reopened.partitions[0].durableNextSequence == UInt64(count))
        let all = try reopened.partitions[0].read(from: 0, maxRecords: count + 1, maxBytes: 1 << 30)
        #expect(all.map(\.sequence) == Array(0..<UInt64(count)))
        #expect(all[count - 1].payload == payload(count - 1))
    }

    @Test("a file of several megabytes written atomically reads back byte for byte, and nothing is left beside it")
    func largeAtomicWrite() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/large"
        var generator = SplitMix64(seed: 7)
        let bytes = (0..<(3 << 20) + 12_345).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        try FileIO.writeAtomically([1, 2, 3], to: path)
        try FileIO.writeAtomically(bytes, to: path)
        #expect(FileManager.default.contents(atPath: path) == Data(bytes))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["large"])
        #expect(throws: SystemError.self) { try FileIO.writeBack(-1, from: 0, count: 1, path: path) }
    }

    @Test("only one process may own a log")
    func lockIsExclusive() throws {
        let directory = TemporaryDirectory()
        let first = try EventLog(directory: directory.path, partitionCount: 1)
        #expect(throws: EventLogError.self) { try EventLog(directory: directory.path, partitionCount: 1) }
        _ = first
    }

    @Test("an explicit partition count that contradicts the log is refused, a default one is not")
    func partitionCountIsFixed() throws {
        let directory = TemporaryDirectory()
        _ = try EventLog(directory: directory.path, partitionCount: 3)
        let error = #expect(throws: EventLogError.self) {
            try EventLog(directory: directory.path, partitionCount: 5, partitionCountIsExplicit: true)
        }
        #expect(error?.message.contains("created with 3 partitions") == true)
        #expect(try EventLog(directory: directory.path, partitionCount: 4).partitions.count == 3)
    }

    @Test("a torn tail is cut on recovery and its bytes are kept aside", arguments: [1, 9, 40, 77])
    func tornTail(cut: Int) throws {
        let directory = TemporaryDirectory()
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 1)
            try fill(log, count: 50)
            log.settle()
        }
        let path = try #require(try segmentFiles(directory.path).first)
        let end = try writtenEnd(path)
        // A crash mid-write: the last record lost its last `cut` bytes (they were never written).
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(end - cut))
        handle.write(Data(repeating: 0, count: cut))
        try handle.close()
        let log = try EventLog(directory: directory.path, partitionCount: 1)
        #expect(log.partitions[0].durableNextSequence == 49)
        let aside = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/wal").filter { $0.contains(".torn-") }
        #expect(aside.count == 1)
        try fill(log, count: 1)
        #expect(try log.partitions[0].read(from: 48, maxRecords: 5).map(\.sequence) == [48, 49])
    }

    @Test("corruption before the tail refuses to start with a message naming the file and offset")
    func corruptionInTheMiddle() throws {
        let directory = TemporaryDirectory()
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 1)
            try fill(log, count: 50)
            log.settle()
        }
        let path = try #require(try segmentFiles(directory.path).first)
        let end = try writtenEnd(path)
        var bytes = try #require(FileManager.default.contents(atPath: path))
        bytes[end / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: EventLogError.self) { try EventLog(directory: directory.path, partitionCount: 1) }
        #expect(error?.message.contains(path) == true)
        #expect(error?.message.contains("not a torn write") == true)
    }

    @Test("a missing segment in the middle is refused, naming it")
    func missingSegment() throws {
        let directory = TemporaryDirectory()
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 1, segmentBytes: 64 << 10)
            try fill(log, count: 2_000)
            try log.writeHighWaterMarks()
            log.settle()
        }
        let names = try segmentFiles(directory.path)
        #expect(names.count >= 3)
        try FileManager.default.removeItem(atPath: names[1])
        let error = #expect(throws: EventLogError.self) { try EventLog(directory: directory.path, partitionCount: 1) }
        #expect(error?.message.contains("segments 1 of") == true)
    }

    @Test("one commit group writes every partition it touches with one sync, and summaries make a reopen skip the reading")
    func groupsAcrossPartitions() throws {
        let directory = TemporaryDirectory()
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 4, segmentBytes: 64 << 10)
            for round in 0..<300 {
                try log.commit(
                    (0..<4).map { partition in
                        EventLog.Pending(
                            partition: partition, time: Timestamp(seconds: Int64(round)), meta: RecordMeta(), payload: payload(round))
                    })
            }
            #expect(log.partitions.map(\.durableNextSequence) == [300, 300, 300, 300])
            log.settle()
        }
        let summaries = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/wal").filter { $0.hasSuffix(".idx") }
        #expect(summaries.count >= 2)
        let log = try EventLog(directory: directory.path, partitionCount: 4)
        for partition in 0..<4 {
            let records = try log.partitions[partition].read(from: 0, maxRecords: 1000, maxBytes: 1 << 30)
            #expect(records.map(\.sequence) == Array(0..<300))
            #expect(records.allSatisfy { $0.partition == partition })
            #expect(records[123].payload == payload(123))
        }
    }

    @Test("a large group's records, noted while it syncs, read back in order live and after a reopen, across segments")
    func largeGroupsNotedWhileSyncing() throws {
        let directory = TemporaryDirectory()
        let size = (EventLog.notedWhileSyncingFrom / 3 + 7) * 3  // a whole number of records per partition
        let rounds = 20
        func check(_ log: EventLog) throws {
            #expect(log.partitions.map(\.durableNextSequence) == Array(repeating: UInt64(rounds * size / 3), count: 3))
            for partition in 0..<3 {
                let records = try log.partitions[partition].read(from: 0, maxRecords: 100_000, maxBytes: 1 << 30)
                #expect(records.count == rounds * size / 3 && records.indices.allSatisfy { records[$0].sequence == UInt64($0) })
                #expect(records.indices.allSatisfy { records[$0].payload == payload($0 * 3 + partition) })
                #expect(records.indices.allSatisfy { records[$0].enqueuedTime == Timestamp(seconds: Int64(($0 * 3 + partition) / size)) })
            }
        }
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 3, segmentBytes: 256 << 10)
            for round in 0..<rounds {
                try log.commit(
                    (0..<size).map { index in
                        EventLog.Pending(
                            partition: index % 3, time: Timestamp(seconds: Int64(round)), meta: RecordMeta(),
                            payload: payload(round * size + index))
                    })
            }
            try check(log)
            log.settle()
        }
        try check(try EventLog(directory: directory.path, partitionCount: 3))
    }
}

@Suite("Plan definitions in the log")
struct PlanDefinitionIndexTests {
    @Test(
        "records that define a plan keep their flag through the codec, and a reopen visits each with its sequence from the sealed summaries and the tail"
    )
    func definitionsVisited() throws {
        var bytes: [UInt8] = []
        payload(0).withUnsafeBytes {
            RecordCodec.encode(
                partition: 0, sequence: 1, time: Timestamp(seconds: 1), meta: RecordMeta(definesPlan: true), payload: $0, salt: 5,
                to: &bytes)
        }
        guard case .record(let record, _) = bytes.withUnsafeBytes({ RecordCodec.decode($0, at: 0, salt: 5) }) else {
            Issue.record("not decoded")
            return
        }
        #expect(record.meta.definesPlan)
        #expect(bytes.withUnsafeBytes { RecordCodec.digestsOnly($0, at: 0) } == nil, "a definition is decoded whole")

        let directory = TemporaryDirectory()
        var defined: [(Int, UInt64)] = []
        do {
            let log = try EventLog(directory: directory.path, partitionCount: 2, segmentBytes: 64 << 10)
            for round in 0..<1500 {
                let definesPlan = round % 293 == 0
                try log.commit([
                    EventLog.Pending(
                        partition: definesPlan ? 0 : 1, time: Timestamp(seconds: Int64(round)), meta: RecordMeta(definesPlan: definesPlan),
                        payload: payload(round))
                ])
                if definesPlan { defined.append((0, UInt64(defined.count))) }
            }
            log.settle()
        }
        let summaries = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/wal").filter { $0.hasSuffix(".idx") }
        #expect(summaries.count >= 2)
        var visited: [(Int, UInt64)] = []
        _ = try EventLog(
            directory: directory.path, partitionCount: 2,
            visit: { partition, sequence, _, meta in if meta.definesPlan { visited.append((partition, sequence)) } })
        #expect(visited.map(\.0) == defined.map(\.0) && visited.map(\.1) == defined.map(\.1), "\(visited)")
    }

    @Test("a summary file is read with its keys, or without reading them; the format before still reads either way")
    func summaryReadWithoutKeys() throws {
        var summary = SegmentSummary(number: 7, dataEnd: 4096)
        for sequence in 0..<100 {
            summary.note(
                partition: sequence % 2, sequence: UInt64(sequence / 2), time: Timestamp(seconds: Int64(sequence)),
                meta: RecordMeta(
                    purchasedResource: sequence == 3 ? ResourceName(resourceId: "r", resourceUri: nil) : nil,
                    payloadDigest: PayloadDigest(high: 1, low: UInt64(sequence)), keyDigest: PayloadDigest(high: 2, low: UInt64(sequence))),
                offset: 64 + sequence * 40, length: 40)
        }
        let directory = TemporaryDirectory()
        for (name, bytes) in [("current.idx", summary.bytes), ("previous.idx", summary.previousFormatBytes)] {
            let path = directory.path + "/" + name
            try FileIO.writeAtomically(bytes, to: path)
            #expect(SegmentSummary.read(path: path, keys: true) == summary)
            let withoutKeys = try #require(SegmentSummary.read(path: path, keys: false))
            #expect(withoutKeys.keys.isEmpty && withoutKeys.keyCount == 100)
            #expect(withoutKeys.extents == summary.extents && withoutKeys.purchases == summary.purchases)
        }
        // A damaged key is noticed when the keys are read, and only then.
        var damaged = summary.bytes
        damaged[damaged.count - 3] ^= 0x40
        let path = directory.path + "/damaged.idx"
        try FileIO.writeAtomically(damaged, to: path)
        #expect(SegmentSummary.read(path: path, keys: true) == nil)
        #expect(SegmentSummary.read(path: path, keys: false) != nil)
        // A file cut short is refused even without its keys.
        try FileIO.writeAtomically(Array(summary.bytes.dropLast(52)), to: path)
        #expect(SegmentSummary.read(path: path, keys: false) == nil)
    }

    @Test("a summary holds its definitions, and a summary of the format before them still reads, with none")
    func summaryFormats() throws {
        var summary = SegmentSummary(number: 3, dataEnd: 32)
        summary.definitions = [SegmentSummary.Definition(partition: 0, sequence: 9)]
        #expect(SegmentSummary.decode(summary.bytes) == summary)
        // The format before: MTRIDX02 and no definitions list at the end.
        var earlier = SegmentSummary(number: 3, dataEnd: 32).previousFormatBytes
        earlier.removeLast(4)
        earlier.replaceSubrange(0..<8, with: Array("MTRIDX02".utf8))
        let body = Array(earlier[12...])
        let crc = body.withUnsafeBytes { CRC32C.mask(CRC32C.checksum($0)) }
        withUnsafeBytes(of: crc.littleEndian) { earlier.replaceSubrange(8..<12, with: $0) }
        let read = try #require(SegmentSummary.decode(earlier))
        #expect(read.number == 3 && read.definitions.isEmpty)
    }

    @Test(
        "follow answers written from the log read back as its records, from any sequence, a large first record and changing times included")
    func followAnswersReadAsTheRecords() throws {
        let directory = TemporaryDirectory()
        let log = try EventLog(directory: directory.path, partitionCount: 2, segmentBytes: 256 << 10)
        // A large record first (as a plan can be), then small ones whose time changes every third.
        let large = Array(#"{"type":"Ping","value":{"note":"\#(String(repeating: "p", count: 100_000))"}}"#.utf8)
        var payloads = [large]
        var times = [Timestamp(seconds: 1_000)]
        for index in 1..<2_000 {
            payloads.append(payload(index))
            let group = Int64(index / 3)
            times.append(Timestamp(microseconds: (1_000 + group) * 1_000_000 + (group % 2 == 0 ? 0 : 500_000)))
        }
        for start in stride(from: 0, to: payloads.count, by: 250) {
            try log.commit(
                (start..<min(start + 250, payloads.count)).map {
                    EventLog.Pending(partition: 1, time: times[$0], meta: RecordMeta(), payload: payloads[$0])
                })
        }
        log.settle()
        for (from, maximum, budget) in [
            (0, 5_000, 4 << 20), (0, 3, 4 << 20), (1, 1_000, 4 << 20), (1_998, 10, 4 << 20), (500, 5_000, 10_000),
        ] {
            var out = Array("[".utf8)
            let (count, next) = try log.partitions[1].appendJSON(from: UInt64(from), maxRecords: maximum, maxBytes: budget, to: &out)
            out += Array("]".utf8)
            let records = try #require(try JSONParser.parse(out).arrayValue)
            #expect(records.count == count && next == UInt64(from + count))
            if budget == 10_000 {
                // About 10 kB of records: some, not all that were asked for.
                #expect(count > 0 && count < 100)
            } else {
                #expect(count == min(maximum, payloads.count - from))
            }
            for (offset, record) in records.enumerated() {
                let index = from + offset
                #expect(record["partition"]?.intValue == 1 && record["sequence"]?.intValue == index)
                #expect(record["enqueuedTime"]?.stringValue == times[index].iso8601)
                #expect(try record["event"] == JSONParser.parse(payloads[index]))
            }
        }
    }
}

extension RecordCodec.Decoded {
    var isEnd: Bool {
        if case .end = self { return true }
        return false
    }
}

@Suite("Partition routing and idempotency")
struct RoutingTests {
    @Test("a subscription's messages land in one partition whichever name they use, once a purchase named both")
    func routesByEitherName() {
        var router = PartitionRouter(partitionCount: 16)
        let both = ResourceName(resourceId: "8151a707", resourceUri: "/subscriptions/x/resources/app")
        router.learnPurchase(both)
        let expected = router.partition(for: both)
        #expect(router.partition(for: ResourceName(resourceId: "8151a707")) == expected)
        #expect(router.partition(for: ResourceName(resourceUri: "/subscriptions/x/resources/app")) == expected)
        let managedApp = ResourceName(resourceUri: "/subscriptions/y/resources/managed")
        router.learnPurchase(managedApp)
        let managedPartition = router.partition(for: managedApp)
        #expect(router.partition(for: ResourceName(resourceId: "later-id", resourceUri: managedApp.resourceUri)) == managedPartition)
    }

    @Test("a message read with its route hash lands where a lookup of its names puts it, with purchases known or pending")
    func routeHashAgreesWithLookups() throws {
        var known = PartitionRouter(partitionCount: 7)
        var pending = PartitionRouter(partitionCount: 7)
        known.learnPurchase(ResourceName(resourceId: "saas-1", resourceUri: "/apps/one"))
        known.learnPurchase(ResourceName(resourceUri: "/apps/managed"))
        pending.learnPurchase(ResourceName(resourceId: "saas-2", resourceUri: "/apps/two"))
        pending.learnPurchase(ResourceName(resourceId: "saas-1", resourceUri: "/apps/moved"))
        /// Every name's key as the purchases give it, `pending`'s first: the routing rule written out.
        func expected(_ resource: ResourceName?) -> Int {
            let keys: [String: String] = [
                "id:saas-1": "saas-1", "id:saas-2": "saas-2", "uri:/apps/one": "saas-1", "uri:/apps/managed": "/apps/managed",
                "uri:/apps/two": "saas-2", "uri:/apps/moved": "saas-1",
            ]
            let key =
                resource?.resourceId.flatMap { keys["id:\($0)"] } ?? resource?.resourceUri.flatMap { keys["uri:\($0)"] }
                ?? resource?.resourceId ?? resource?.resourceUri ?? ""
            return PartitionRouter.partition(of: key, count: 7)
        }
        let ids: [String?] = [nil, "saas-1", "saas-2", "never-bought", "ünïcödé-id"]
        let uris: [String?] = [nil, "/apps/one", "/apps/managed", "/apps/two", "/apps/moved", "/apps/unknown"]
        var names: [ResourceName?] = [nil]
        for id in ids {
            for uri in uris where id != nil || uri != nil { names.append(ResourceName(resourceId: id, resourceUri: uri)) }
        }
        for name in names {
            let hash = name?.routeHash ?? ResourceName.routeHash(of: "")
            #expect(known.partition(for: name, routeHash: hash, pending: pending) == expected(name), "\(String(describing: name))")
        }
        // An event carries its name's hash from where it was read (the general path and the fast one).
        let usage =
            #"{"type":"UsageReported","value":{"resourceUri":"/apps/two","timestamp":"2026-12-06T10:00:00Z","meterName":"m","quantity":1}}"#
        guard case .success(let event) = ValidatedEvent.decode(try JSONParser.parse(usage)) else {
            Issue.record("the usage was refused")
            return
        }
        let fast = try #require(AppendFastPath.readUsage(Array(usage.utf8)))
        #expect(fast.routeHash == event.routeHash)
        #expect(event.routeHash == ResourceName.routeHash(of: "/apps/two"))
        #expect(
            known.partition(for: event.resource, routeHash: event.routeHash, pending: pending)
                == PartitionRouter.partition(of: "saas-2", count: 7))
    }

    @Test("the partition hash is stable across runs and spreads keys")
    func stableHash() {
        #expect(
            PartitionRouter.partition(of: "fdc778a6-1281-40e4-cade-4a5fc11f5440", count: 4)
                == PartitionRouter.partition(of: "fdc778a6-1281-40e4-cade-4a5fc11f5440", count: 4))
        let used = Set((0..<1000).map { PartitionRouter.partition(of: "sub-\($0)", count: 8) })
        #expect(used.count == 8)
    }

    @Test("a rebuilt index sorted by age expires keys recorded partition after partition")
    func rebuiltIndexExpires() {
        var index = IdempotencyIndex(retentionDays: 1)
        let day = Timestamp.microsecondsPerDay
        // Partition 0's records all come first, partition 1's after: not in time order.
        index.remember("p0-new", at: .init(partition: 0, sequence: 1, enqueuedTime: Timestamp(microseconds: 5 * day)))
        index.remember("p1-old", at: .init(partition: 1, sequence: 1, enqueuedTime: Timestamp(microseconds: 1 * day)))
        index.expire(now: Timestamp(microseconds: 5 * day))
        #expect(index.lookup("p1-old") == nil)
        #expect(index.lookup("p0-new") != nil)
        #expect(index.count == 1)
    }

    @Test("distinct keys, also long and near-identical ones, never share a digest in a million tries")
    func digestsDiffer() {
        var index = IdempotencyIndex(retentionDays: 7)
        let long = String(repeating: "x", count: 150)
        var collisions = 0
        for number in 0..<1_000_000 {
            let key = number % 2 == 0 ? "k-\(number)" : long + String(number)
            if index.lookup(key) != nil { collisions += 1 }
            index.remember(key, at: .init(partition: 0, sequence: UInt64(number), enqueuedTime: Timestamp(microseconds: 0)))
        }
        #expect(collisions == 0)
        #expect(index.count == 1_000_000)
    }

    @Test("idempotency keys are remembered for the retention window of log time, then forgotten")
    func idempotencyWindow() {
        var index = IdempotencyIndex(retentionDays: 7)
        let day = Timestamp.microsecondsPerDay
        index.remember("a", at: .init(partition: 0, sequence: 1, enqueuedTime: Timestamp(microseconds: 0)))
        index.remember("b", at: .init(partition: 1, sequence: 1, enqueuedTime: Timestamp(microseconds: 3 * day)))
        index.remember("a", at: .init(partition: 2, sequence: 9, enqueuedTime: Timestamp(microseconds: 3 * day)))
        #expect(index.lookup("a")?.partition == 0)
        index.expire(now: Timestamp(microseconds: 7 * day))
        #expect(index.lookup("a") != nil)
        index.expire(now: Timestamp(microseconds: 7 * day + 1))
        #expect(index.lookup("a") == nil)
        #expect(index.lookup("b") != nil)
    }
}

/// Bytes as lowercase hexadecimal.
func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}
