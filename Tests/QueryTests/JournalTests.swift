import Foundation
import QueryModel
import StackTestSupport
import Testing
import Wire

@testable import Query

/// The journal read back at start-up: every line's header checked, in reads of a mebibyte whose
/// ends cut lines anywhere.
@Suite("Journal files read back at start-up")
struct JournalTests {
    /// Lines of a few hundred bytes each, so that a few thousand cross several read boundaries.
    static func fill(_ path: String, lines: Int) throws {
        let journal = try Journal(path: path)
        let padding = String(repeating: "x", count: 300)
        for ordinal in 0..<lines {
            journal.append(
                partition: ordinal % 3, ordinal: UInt64(ordinal / 3), closed: 1_700_000_000 + Int64(ordinal),
                JSONObject(["padding": .string(padding), "n": .number(String(ordinal))]))
        }
        try journal.sync()
    }

    @Test("a journal of several reads reopens with every line, id and ordinal, and a torn last line is cut")
    func reopensAcrossReads() throws {
        let home = StackHome()
        let path = home.path + "/usage.journal"
        let lines = 12_000
        try Self.fill(path, lines: lines)
        let whole = try #require(FileManager.default.contents(atPath: path))
        #expect(whole.count > 3 << 20, "the file spans several reads")
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"id":12000,"partition":0,"ordinal":4000,"closed":1"#.utf8))
        handle.closeFile()

        var headers: [Journal.Header] = []
        let journal = try Journal(path: path) { headers.append($0) }
        #expect(headers.count == lines)
        #expect(headers.map(\.id) == Array(0..<lines))
        #expect(headers.map(\.ordinal) == (0..<lines).map { UInt64($0 / 3) })
        #expect(headers.map(\.closed) == (0..<lines).map { 1_700_000_000 + Int64($0) })
        #expect(journal.nextId == lines)
        #expect(journal.nextOrdinal(partition: 2) == UInt64(lines / 3))
        #expect(FileManager.default.contents(atPath: path)?.count == whole.count, "the torn line is cut")
        let last = try journal.read(from: lines - 1, maximum: 5)
        #expect(last.count == 1)
        #expect(last.first?["n"] == .number(String(lines - 1)))
    }

    @Test("lines appended between syncs are written ahead in pieces, readable only once synced, at the right offsets")
    func linesAreWrittenAheadAndReadableOnlyOnceSynced() throws {
        let home = StackHome()
        let path = home.path + "/usage.journal"
        let journal = try Journal(path: path)
        let padding = String(repeating: "y", count: 200)
        // More than several write-ahead pieces, lines of different lengths.
        let lines = 5 * Journal.writeAheadBytes / 200
        for ordinal in 0..<lines {
            journal.append(
                partition: 0, ordinal: UInt64(ordinal), closed: 1_700_000_000,
                JSONObject(["padding": .string(String(padding.prefix(ordinal % 150))), "n": .number(String(ordinal))]))
        }
        let written = try #require(FileManager.default.contents(atPath: path)).count
        #expect(written >= 2 * Journal.writeAheadBytes, "written ahead before the sync")
        #expect(journal.count == 0)
        #expect(try journal.read(from: 0, maximum: 10).isEmpty, "nothing readable before the sync")
        try journal.sync()
        #expect(journal.count == lines)
        #expect(try #require(FileManager.default.contents(atPath: path)).count > written)
        // Reads from anywhere find their lines through the index of offsets.
        for start in [0, 1, 127, 128, 1_000, lines - 3] {
            let read = try journal.read(from: start, maximum: 3)
            #expect(read.map { $0["n"] } == (start..<min(lines, start + 3)).map { .number(String($0)) })
            #expect(read.first?["id"] == .number(String(start)))
        }
        // Appended after the sync, written ahead, never synced: a restart finds them (as after a
        // crash between write and sync), and the next ordinal follows them.
        for ordinal in lines..<(lines + Journal.writeAheadBytes / 100) {
            journal.append(
                partition: 0, ordinal: UInt64(ordinal), closed: 1_700_000_001,
                JSONObject(["padding": .string(padding), "n": .number(String(ordinal))]))
        }
        let reopened = try Journal(path: path)
        #expect(reopened.count > lines)
        #expect(reopened.nextOrdinal(partition: 0) == UInt64(reopened.count))
        #expect(try reopened.read(from: lines - 1, maximum: 2).map { $0["n"] } == [.number(String(lines - 1)), .number(String(lines))])
    }

    @Test("the indexes a journal keeps as lines are appended and synced are the ones a reopening builds line by line")
    func indexesKeptWhileAppendingMatchTheRebuiltOnes() throws {
        let home = StackHome()
        let path = home.path + "/submissions.journal"
        let journal = try Journal(path: path)
        var generator = SplitMix64(seed: 12)
        var next: [UInt64] = [0, 0, 0, 0]
        var synced = 0
        // Runs of one partition's records, long and short, some skipping ordinals, four partitions
        // interleaved, and syncs between and within runs.
        while journal.nextId < 5_000 {
            let partition = Int.random(in: 0..<4, using: &generator)
            if Bool.random(using: &generator) { next[partition] += UInt64.random(in: 1...3, using: &generator) }
            for _ in 0..<[1, 2, 127, 128, 129, 300].randomElement(using: &generator)! {
                journal.append(partition: partition, ordinal: next[partition], JSONObject(["p": .number(String(partition))]))
                next[partition] += 1
                if Int.random(in: 0..<200, using: &generator) == 0 {
                    try journal.sync()
                    synced = journal.count
                }
            }
            // What is found is durable: a line at or before any ordinal is a synced one.
            for partition in 0..<4 {
                #expect(journal.line(partition: partition, atOrBefore: next[partition] / 2) <= synced)
            }
        }
        try journal.sync()
        let reopened = try Journal(path: path)
        #expect(reopened.count == journal.count)
        for partition in 0..<4 {
            #expect(reopened.nextOrdinal(partition: partition) == journal.nextOrdinal(partition: partition))
            for ordinal in stride(from: UInt64(0), through: next[partition] + 1, by: 7) {
                #expect(
                    journal.line(partition: partition, atOrBefore: ordinal) == reopened.line(partition: partition, atOrBefore: ordinal),
                    "partition \(partition), ordinal \(ordinal)")
            }
        }
        for start in stride(from: 0, to: journal.count, by: 61) {
            #expect(try journal.read(from: start, maximum: 2) == reopened.read(from: start, maximum: 2))
        }
    }

    @Test("a usage segment of full-form lines (earlier releases) takes compact lines after it, and every line reads back in the full form")
    func fullFormSegmentsUpgradeToCompactLines() throws {
        let home = StackHome()
        let directory = home.path + "/usage/p001"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func record(_ ordinal: Int) -> UsageRecord {
            var record = UsageRecord(
                partition: 1, ordinal: UInt64(ordinal), subscription: ordinal % 5 == 0 ? "alias-\(ordinal)" : "q-\(ordinal % 40)",
                resource: ordinal % 7 == 0
                    ? ResourceName(resourceId: nil, resourceUri: "/subscriptions/\(ordinal % 40)")
                    : ResourceName(resourceId: "q-\(ordinal % 40)", resourceUri: nil),
                planId: "bench-5", meterName: "email", dimension: "emails",
                hour: Timestamp(seconds: 1_709_262_000 + Int64(ordinal / 100) * 3_600), quantity: Quantity(ordinal),
                billed: Quantity(ordinal % 3))
            if ordinal % 11 == 0 { record.voided = Quantity(2) }
            return record
        }
        func closed(_ ordinal: Int) -> Int64 { 1_709_265_600 + Int64(ordinal / 100) * 3_600 }
        // An earlier release's segment: every line in the full form.
        let earlier = try Journal(path: directory + "/" + PartitionUsageJournal.fileName(0))
        for ordinal in 0..<300 {
            earlier.append(partition: 1, ordinal: UInt64(ordinal), closed: closed(ordinal)) { record(ordinal).appendFields(to: &$0) }
        }
        try earlier.sync()
        var visited = 0
        let journal = try PartitionUsageJournal(directory: directory, partition: 1) { _, _ in visited += 1 }
        #expect(visited == 300)
        for ordinal in 300..<600 {
            #expect(journal.append(ordinal: UInt64(ordinal), closed: closed(ordinal)) { record(ordinal).appendCompactFields(to: &$0) })
        }
        try journal.sync()
        let expected = try (0..<600).map { ordinal in
            var line = Array(#"{"id":\#(ordinal),"partition":1,"ordinal":\#(ordinal),"closed":\#(closed(ordinal))"#.utf8)
            record(ordinal).appendFields(to: &line)
            line.append(0x7D)
            return try #require(JSONParser.parse(line).objectValue)
        }
        #expect(try journal.read(from: 0, maximum: 600) == expected)
        let text = try #require(FileManager.default.contents(atPath: directory + "/" + PartitionUsageJournal.fileName(0)))
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 600)
        #expect(lines[299].hasPrefix(#"{"id":299,"partition":1,"ordinal":299,"closed":"#))
        #expect(lines[300].hasPrefix(#"{"id":300,"closed":"#))
        #expect(lines[300].count * 2 < lines[299].count + 40, "a compact line is about half as long")
        // Both forms again after a restart.
        visited = 0
        let reopened = try PartitionUsageJournal(directory: directory, partition: 1) { _, _ in visited += 1 }
        #expect(visited == 600)
        #expect(reopened.nextOrdinal == 600)
        #expect(try reopened.read(from: 250, maximum: 100) == Array(expected[250..<350]))
    }

    @Test("a usage line whose id or close time does not fit the integers stops the opening, without a trap")
    func oversizedNumbersAreDamage() throws {
        let home = StackHome()
        for line in [
            #"{"id":9999999999999999999,"closed":1,"h":1}"#, #"{"id":0,"closed":9999999999999999999,"h":1}"#,
            #"{"id":0,"partition":9999999999999999999,"ordinal":0,"closed":1,"h":1}"#,
        ] {
            let path = home.path + "/bad-\(line.count).journal"
            try Data((line + "\n").utf8).write(to: URL(fileURLWithPath: path))
            #expect(throws: Journal.Failure.self) { _ = try Journal(path: path, impliedPartition: 0) }
        }
    }

    @Test("damaged lines of both forms give a header or none, and a compact line any object or none, never a trap")
    func damagedLinesNeverTrap() {
        var random = SplitMix64(seed: 5)
        let valid = [
            Array(#"{"id":12,"partition":3,"ordinal":40,"closed":1709269200,"subscription":"q-1","hour":"2024-03-01T04:00:00Z"}"#.utf8),
            Array(#"{"id":12,"closed":1709269200,"k":"a","r":"q-1","u":"/s/1","h":1709265600,"q":1,"b":0,"s":["quantity"]}"#.utf8),
        ]
        // Digits (long runs of them), the bytes the forms are made of, and any byte at all.
        let bytes = Array(#"0123456789{}[]",:-.ehkrupmdqbnvxs"#.utf8)
        var headers = 0
        for _ in 0..<20_000 {
            var line = valid[Int(random.next() % 2)]
            for _ in 0..<(1 + random.next() % 4) {
                let position = Int(random.next() % UInt64(line.count))
                switch random.next() % 4 {
                case 0: line[position] = UInt8(truncatingIfNeeded: random.next())
                case 1: line.insert(contentsOf: repeatElement(UInt8(ascii: "9"), count: Int(random.next() % 25)), at: position)
                case 2: if line.count > 1 { line.remove(at: position) }
                default: line[position] = bytes[Int(random.next() % UInt64(bytes.count))]
                }
            }
            for implied in [nil, 3] as [Int?] {
                if let header = Journal.header(line[...], impliedPartition: implied) {
                    #expect(header.id >= 0 && header.partition >= 0)
                    headers += 1
                }
            }
            if let object = try? JSONParser.parse(line[...]).objectValue, let full = UsageRecord.expandingCompact(object, partition: 3) {
                #expect(full["partition"] == .number("3"))
            }
        }
        #expect(headers > 1_000, "some damage leaves a line that still reads")
    }

    @Test("a damaged line after the first read stops the opening, naming the line")
    func damagedLineRefused() throws {
        let home = StackHome()
        let path = home.path + "/usage.journal"
        try Self.fill(path, lines: 6_000)
        var bytes = try #require(FileManager.default.contents(atPath: path))
        // The id of line 5001 (id 5000) is changed: the ids are no longer consecutive.
        let target = Data(#"{"id":5000,"#.utf8)
        let range = try #require(bytes.range(of: target))
        bytes.replaceSubrange(range, with: Data(#"{"id":5001,"#.utf8))
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try Journal(path: path)
        } throws: { error in
            "\(error)".contains("line 5001 at byte")
        }
    }
}
