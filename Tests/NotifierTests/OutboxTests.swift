import Foundation
import Testing
import Wire

@testable import Notifier

@Suite("The notifier's outbox")
struct OutboxTests {
    static func directory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-\(UUID().uuidString.prefix(8))").path
        return path
    }

    static func note(_ id: String) -> JSONObject { JSONObject([.init("id", .string(id)), .init("type", "subscription.purchased")]) }

    @Test("a crash in the middle of a record's notifications is cut back to the last whole record, and numbering goes on")
    func tornTail() throws {
        let path = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let outbox = try Outbox(directory: path, partition: 0)
            try outbox.append([(3, [Self.note("a"), Self.note("b")]), (7, [Self.note("c")])])
            #expect(outbox.nextOrdinal == 3)
            #expect(outbox.lastSequence == 7)
        }
        // What a crash can leave: the first line of a two-line record, then half a line.
        let segment = path + "/" + String(repeating: "0", count: 20) + ".ndjson"
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"ordinal":3,"sequence":9,"last":false,"notification":{"id":"d"}}"#.utf8 + [0x0A]))
        handle.write(Data(#"{"ordinal":4,"seq"#.utf8))
        try handle.close()

        let reopened = try Outbox(directory: path, partition: 0)
        #expect(reopened.nextOrdinal == 3)
        #expect(reopened.lastSequence == 7)
        try reopened.append([(9, [Self.note("d"), Self.note("e")])])
        let all = try reopened.read(from: 0, maximum: 100)
        #expect(all.map(\.ordinal) == [0, 1, 2, 3, 4])
        #expect(all.map { $0.notification["id"]?.stringValue } == ["a", "b", "c", "d", "e"])
        #expect(try reopened.read(from: 4, maximum: 1).map(\.ordinal) == [4])
    }

    @Test("reading goes on across segments, and pruning deletes only segments every cursor has passed")
    func segmentsAndPruning() throws {
        let path = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outbox = try Outbox(directory: path, partition: 0)
        // Big enough notifications to fill a few segments.
        let padding = String(repeating: "x", count: 64 << 10)
        for sequence in 0..<200 {
            var note = Self.note("n\(sequence)")
            note["padding"] = .string(padding)
            try outbox.append([(UInt64(sequence), [note])])
        }
        let segments = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".ndjson") }
        #expect(segments.count > 2)
        // One call reads within one segment; calls from the next ordinal go on without a gap.
        var read: [(ordinal: UInt64, notification: JSONObject)] = []
        while read.count < 100 {
            let more = try outbox.read(from: 60 + UInt64(read.count), maximum: 100 - read.count)
            guard !more.isEmpty else { break }
            read += more
        }
        #expect(read.map(\.ordinal) == Array(60..<160).map(UInt64.init))
        #expect(read.map { $0.notification["id"]?.stringValue } == (60..<160).map { "n\($0)" })
        let removed = outbox.prune(below: 130)
        #expect(removed > 0)
        #expect(outbox.firstOrdinal <= 130)
        #expect(try outbox.read(from: 130, maximum: 1).first?.ordinal == 130)
        // Older than what is kept: reading starts at the oldest kept.
        #expect(try outbox.read(from: 0, maximum: 1).first?.ordinal == outbox.firstOrdinal)
        let reopened = try Outbox(directory: path, partition: 0)
        #expect(reopened.nextOrdinal == 200)
        #expect(reopened.firstOrdinal == outbox.firstOrdinal)
    }
}
