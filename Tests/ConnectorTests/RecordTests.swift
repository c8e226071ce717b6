import Testing
import Wire

@testable import Connector

@Suite("Connector records and lines")
struct RecordTests {
    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test("A JSON line's fields are read as text: strings as they are, numbers as their literal, nested by dotted path")
    func jsonFields() throws {
        let record = try RecordParser.ndjson(bytes(#"{"a":"x","n":0.10,"ok":true,"none":null,"req":{"tenant":"t-1"},"list":[1]}"#)).get()
        #expect(record.text(FieldPath("a")) == "x")
        #expect(record.text(FieldPath("n")) == "0.10")
        #expect(record.text(FieldPath("ok")) == "true")
        #expect(record.text(FieldPath("none")) == nil)
        #expect(record.text(FieldPath("list")) == nil)
        #expect(record.text(FieldPath("req.tenant")) == "t-1")
        #expect(record.text(FieldPath("req.missing")) == nil)
        #expect(record.text(FieldPath("a.b")) == nil)
    }

    @Test("A JSON line that is not one object is refused with the reason")
    func jsonRefusals() {
        #expect(throws: RecordError.self) { try RecordParser.ndjson(self.bytes(#"[1,2]"#)).get() }
        #expect(throws: RecordError.self) { try RecordParser.ndjson(self.bytes(#"{"a":1} {"b":2}"#)).get() }
        #expect(throws: RecordError.self) { try RecordParser.ndjson(self.bytes(#"{"a":NaN}"#)).get() }
        #expect(throws: RecordError.self) { try RecordParser.ndjson([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]).get() }
        if case .failure(let error) = RecordParser.ndjson(bytes("[1]")) {
            #expect(error.reason == "a line must be a JSON object, got an array")
        }
    }

    @Test("CSV fields follow RFC 4180 quoting on one line")
    func csvQuoting() throws {
        #expect(
            try CSV.fields(bytes(#"a,"b,c","say ""hi""",,"""#), delimiter: UInt8(ascii: ",")).get() == ["a", "b,c", #"say "hi""#, "", ""])
        #expect(try CSV.fields(bytes("x\ty\t"), delimiter: 0x09).get() == ["x", "y", ""])
        #expect(try CSV.fields(bytes(""), delimiter: UInt8(ascii: ",")).get() == [""])
        #expect(throws: RecordError.self) { try CSV.fields(self.bytes(#"a,"open"#), delimiter: UInt8(ascii: ",")).get() }
        #expect(throws: RecordError.self) { try CSV.fields(self.bytes(#""closed"x,b"#), delimiter: UInt8(ascii: ",")).get() }
        #expect(throws: RecordError.self) { try CSV.fields([0x61, 0xC3], delimiter: UInt8(ascii: ",")).get() }
    }

    @Test("A CSV row needs as many fields as its header, whose names must be unique and non-empty")
    func csvHeader() throws {
        let header = try CSVHeader.parse(bytes("time, tenant ,calls"), delimiter: UInt8(ascii: ",")).get()
        #expect(header.names == ["time", "tenant", "calls"])
        let row = try RecordParser.csv(bytes("2024-05-01T10:00:00Z,t-1,3"), header: header, delimiter: UInt8(ascii: ",")).get()
        #expect(row.text(FieldPath("tenant")) == "t-1")
        #expect(row.text(FieldPath("other")) == nil)
        if case .failure(let error) = RecordParser.csv(bytes("a,b"), header: header, delimiter: UInt8(ascii: ",")) {
            #expect(error.reason == "2 fields where the header names 3")
        } else {
            Issue.record("a short row was accepted")
        }
        #expect(throws: RecordError.self) { try CSVHeader.parse(self.bytes("a,b,a"), delimiter: UInt8(ascii: ",")).get() }
        #expect(throws: RecordError.self) { try CSVHeader.parse(self.bytes("a,,b"), delimiter: UInt8(ascii: ",")).get() }
        if case .failure(let error) = RecordParser.csv(bytes("1"), header: .unusable, delimiter: UInt8(ascii: ",")) {
            #expect(error.reason == "the header line of this file is unusable")
        }
    }

    @Test("Lines are cut at newlines, CR LF included; an unfinished line waits unless the input has ended")
    func splitting() {
        let input = bytes("one\r\ntwo\n\nthree")
        let split = LineSplitter.split(input, discarding: false, maxLineBytes: 100, atEnd: false)
        #expect(split.pieces == [.line(0..<3), .line(5..<8), .line(9..<9)])
        #expect(split.consumed == 10)
        #expect(split.newlines == 3)
        let final = LineSplitter.split(input, discarding: false, maxLineBytes: 100, atEnd: true)
        #expect(final.pieces.last == .line(10..<15))
        #expect(final.consumed == input.count)
    }

    @Test("A line over the limit is reported and skipped to its end, even across reads")
    func tooLong() {
        let long = LineSplitter.split(bytes("ok\n0123456789\nok\n"), discarding: false, maxLineBytes: 5, atEnd: false)
        #expect(long.pieces == [.line(0..<2), .tooLong(3..<13), .line(14..<16)])
        // The start of a long line without its end: skipped, and the skipping goes on in the next read.
        let start = LineSplitter.split(bytes("ok\n0123456789"), discarding: false, maxLineBytes: 5, atEnd: false)
        #expect(start.pieces == [.line(0..<2), .tooLong(3..<13)])
        #expect(start.consumed == 13)
        #expect(start.discarding)
        let rest = LineSplitter.split(bytes("abc\nnext\n"), discarding: true, maxLineBytes: 5, atEnd: false)
        #expect(rest.pieces == [.line(4..<8)])
        #expect(rest.newlines == 2)
        #expect(!rest.discarding)
        let still = LineSplitter.split(bytes("abcdefgh"), discarding: true, maxLineBytes: 5, atEnd: false)
        #expect(still.pieces.isEmpty && still.consumed == 8 && still.discarding)
    }

    @Test("Reading dripped byte by byte, in odd chunks or at once gives the same lines (the follower's loop)")
    func dripEquivalence() {
        var generator = SplitMix64(seed: 7)
        var text: [UInt8] = []
        for index in 0..<300 {
            let length = Int(generator.next() % 12)
            text += Array(repeating: UInt8(ascii: "a") + UInt8(index % 26), count: length) + (index % 7 == 0 ? [0x0D, 0x0A] : [0x0A])
        }
        func lines(chunk: () -> Int) -> [String] {
            var out: [String] = []
            var offset = 0
            var end = 0
            var discarding = false
            while offset < text.count {
                end = min(text.count, max(end, offset) + chunk())
                let buffer = Array(text[offset..<end])
                let split = LineSplitter.split(buffer, discarding: discarding, maxLineBytes: 8, atEnd: false)
                for piece in split.pieces {
                    switch piece {
                    case .line(let range): out.append(String(decoding: buffer[range], as: UTF8.self))
                    case .tooLong: out.append("<too long>")
                    }
                }
                offset += split.consumed
                discarding = split.discarding
                if end == text.count && split.consumed == 0 { break }
            }
            return out
        }
        let whole = lines { text.count }
        #expect(whole.count == 300)
        #expect(lines { 1 } == whole)
        var chunks = SplitMix64(seed: 11)
        #expect(lines { Int(chunks.next() % 17) + 1 } == whole)
    }
}
