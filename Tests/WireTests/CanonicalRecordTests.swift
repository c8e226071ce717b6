import Testing

@testable import Wire

/// Followers read records exactly as ingest writes them by comparing the fixed parts byte for
/// byte; everything else goes member by member. Both must read what the general parser and
/// decoder read, and the byte-for-byte path must be the one taken for ingest's records.
@Suite("Records read byte for byte as ingest writes them")
struct CanonicalRecordTests {
    /// A record in ingest's layout around `event`.
    static func record(_ event: String, sequence: Int = 7, time: String = "2024-03-01T00:00:05.5Z") -> String {
        #"{"partition":1,"sequence":\#(sequence),"enqueuedTime":"\#(time)","event":\#(event)}"#
    }

    /// What the byte-for-byte path makes of `record`: nil when it declines.
    static func canonical(_ record: String) -> (partition: Int, sequence: UInt64, time: Timestamp, message: Message)? {
        let bytes = Array(record.utf8)
        return bytes.withUnsafeBufferPointer { buffer in
            var reader = FastMessageReader(bytes: buffer, maximumDepth: JSONParser.defaultMaximumDepth)
            var read: (Int, UInt64, Timestamp, Message)?
            guard reader.canonicalRecord({ read = ($0, $1, $2, $3) }), reader.index == buffer.count else { return nil }
            return read
        }
    }

    /// The general parser's and decoder's reading of one record's event.
    static func decoded(_ record: String) throws -> Result<Message, MessageError> {
        let json = try JSONParser.parse(Array(record.utf8))
        return Message.decode(try #require(json["event"]))
    }

    /// A one-record answer around `record`, read by the reader the followers use.
    static func frameRead(_ record: String) -> RecordFrameReader.Frame? {
        RecordFrameReader.read(Array(#"{"id":null,"ok":true,"records":[\#(record)],"next":8,"log":"abc"}"#.utf8))
    }

    @Test("usage in its canonical form, in ingest's record layout, takes the byte-for-byte path and reads as the decoder reads it")
    func canonicalUsageIsReadByteForByte() throws {
        var random = SplitMix64(seed: 23)
        var withProperties = 0
        var withId = 0
        for round in 0..<2_000 {
            let usage = try JSONParser.parse(Array(AppendFastPathTests.usage(&random).utf8))
            let event = String(decoding: CanonicalJSON.bytes(usage), as: UTF8.self)
            let record = Self.record(event, sequence: round)
            let read = try #require(Self.canonical(record), "\(record)")
            #expect(read.partition == 1 && read.sequence == UInt64(round))
            #expect(read.time == Timestamp(iso8601: "2024-03-01T00:00:05.5Z"))
            #expect(try Self.decoded(record) == .success(read.message), "\(record)")
            if event.contains("\"properties\"") { withProperties += 1 }
            if event.hasPrefix(#"{"id""#) { withId += 1 }
        }
        // The random reports cover the optional members.
        #expect(withProperties > 500 && withId > 500)
    }

    @Test(
        "another member order, whitespace, another message or a non-canonical usage report is declined, and read member by member as the decoder reads it",
        arguments: [
            #"{"sequence":7,"partition":1,"enqueuedTime":"2024-03-01T00:00:05.5Z","event":{"type":"UsageReported","value":{"meterName":"m","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}}"#,
            #"{"partition":1, "sequence":7,"enqueuedTime":"2024-03-01T00:00:05.5Z","event":{"type":"UsageReported","value":{"meterName":"m","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}}"#,
            record(#"{"type":"UsageReported","value":{"quantity":1,"meterName":"m","resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#),
            record(#"{"value":{"meterName":"m","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"},"type":"UsageReported"}"#),
            record(
                #"{"type":"UsageReported","value":{"meterName":"m","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z","zone":"x"}}"#
            ),
            record(#"{"type":"Ping","value":{"partitionId":"1","reason":"clock"}}"#),
            record(
                #"{"type":"UsageReported","value":{"meterName":"m\u0041","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#
            ),
        ])
    func otherSpellingsAreReadMemberByMember(record: String) throws {
        #expect(Self.canonical(record) == nil)
        let frame = try #require(Self.frameRead(record))
        #expect(frame.records.count == 1 && frame.records.first?.sequence == 7 && frame.records.first?.partition == 1)
        #expect(try frame.records.first?.message == Self.decoded(record))
    }

    @Test(
        "canonical-looking usage the decoder refuses is refused byte for byte too, and the decoder's error is what the follower sees",
        arguments: [
            #"{"type":"UsageReported","value":{"meterName":"","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#,
            #"{"type":"UsageReported","value":{"meterName":"m","quantity":-1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#,
            #"{"type":"UsageReported","value":{"meterName":"m","quantity":1e99,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#,
            #"{"type":"UsageReported","value":{"meterName":"m","quantity":1,"resourceId":"","timestamp":"2024-01-01T00:00:00Z"}}"#,
            #"{"type":"UsageReported","value":{"meterName":"m","quantity":1,"timestamp":"2024-01-01T00:00:00Z"}}"#,
            #"{"type":"UsageReported","value":{"meterName":"m","quantity":1,"resourceId":"s","timestamp":"yesterday"}}"#,
            #"{"id":"","type":"UsageReported","value":{"meterName":"m","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#,
            #"{"id":"\#(String(repeating: "k", count: 201))","type":"UsageReported","value":{"meterName":"m","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#,
            #"{"type":"UsageReported","value":{"meterName":"m","properties":{"a":"1","a":"2"},"quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#,
        ])
    func refusalsAgree(event: String) throws {
        let record = Self.record(event)
        #expect(Self.canonical(record) == nil)
        // The whole answer then reads as the general parser reads it: a decode error, or (for a
        // repeated key the parser itself refuses) not at all on the fast path.
        let general = try? Self.decoded(record)
        let frame = Self.frameRead(record)
        if let general {
            #expect(frame?.records.first?.message == general)
            if case .success = general { Issue.record("the decoder accepted \(event)") }
        } else {
            #expect(frame == nil)
        }
    }

    @Test("records of one answer repeating properties, more sets of them than are kept, each read as the decoder reads it")
    func repeatedPropertiesReadAsDecoded() throws {
        var random = SplitMix64(seed: 41)
        var records: [String] = []
        for index in 0..<400 {
            // Twelve sets in a random order, some spelled as a prefix of another, some empty.
            let set = Int(random.next() % 12)
            let properties = set == 0 ? [] : (0...(set % 3)).map { #""k\#($0)":"v\#(set)""# }
            let event =
                #"{"type":"UsageReported","value":{"meterName":"m","properties":{\#(properties.joined(separator: ","))},"quantity":1,"resourceId":"s-\#(index)","timestamp":"2024-01-01T00:00:00Z"}}"#
            records.append(Self.record(event, sequence: index))
        }
        let answer = Array(#"{"id":null,"ok":true,"records":[\#(records.joined(separator: ","))],"next":400,"log":"abc"}"#.utf8)
        guard let frame = RecordFrameReader.read(answer) else {
            Issue.record("the answer was not read")
            return
        }
        #expect(frame.records.count == records.count)
        for (record, read) in zip(records, frame.records) {
            guard case .success(let expected) = try Self.decoded(record), case .success(let message) = read.message else {
                Issue.record("not read: \(record)")
                continue
            }
            #expect(message == expected, "\(record)")
            #expect(Self.canonical(record) != nil, "the byte-for-byte path reads \(record)")
        }
    }

    @Test("the id's longest allowed length still takes the byte-for-byte path")
    func longestIdIsCanonical() throws {
        let event =
            #"{"id":"\#(String(repeating: "k", count: Message.maximumIdLength))","type":"UsageReported","value":{"meterName":"m","quantity":1,"resourceId":"s","timestamp":"2024-01-01T00:00:00Z"}}"#
        let read = try #require(Self.canonical(Self.record(event)))
        #expect(read.message.id?.count == Message.maximumIdLength)
    }

    @Test("every cut of a canonical record is declined, never read as a shorter one")
    func cutsAreDeclined() {
        let record = Self.record(
            #"{"id":"k-1","type":"UsageReported","value":{"meterName":"égress","properties":{"a":"1","b":"2"},"quantity":1.25,"resourceId":"s","resourceUri":"/x","timestamp":"2024-01-01T00:00:00Z"}}"#
        )
        #expect(Self.canonical(record) != nil)
        let bytes = Array(record.utf8)
        for end in 0..<bytes.count {
            let cut = String(decoding: bytes[..<end], as: UTF8.self)
            #expect(Self.canonical(cut) == nil, "\(cut)")
        }
    }

    @Test(
        "strings stop at their first quote, and refuse an escape, a control character or broken UTF-8, wherever it falls in an 8-byte word")
    func stringsAgreeWithAByteByByteReading() {
        /// The reading byte by byte: the string's bytes up to the first quote, or nil.
        func expected(_ bytes: [UInt8]) -> [UInt8]? {
            guard let end = bytes.firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            let body = Array(bytes[..<end])
            guard !body.contains(where: { $0 == UInt8(ascii: "\\") || $0 < 0x20 }) else { return nil }
            guard String(validating: body, as: UTF8.self) != nil else { return nil }
            return body
        }
        let specials: [[UInt8]] = [[0x22], [0x5C], [0x01], [0x1F], [0xC3, 0xA9], [0xFF], [0xE2, 0x82], [0x7F], [0x20]]
        for length in 0..<24 {
            for position in 0...length {
                for special in specials {
                    var body = Array(repeating: UInt8(ascii: "a"), count: length)
                    body.insert(contentsOf: special, at: position)
                    let input = [UInt8(ascii: "\"")] + body + [UInt8(ascii: "\""), UInt8(ascii: "x")]
                    let read: [UInt8]? = input.withUnsafeBufferPointer { buffer in
                        var reader = FastMessageReader(bytes: buffer, maximumDepth: 8)
                        return reader.plainString().map { Array(buffer[$0]) }
                    }
                    #expect(read == expected(body + [UInt8(ascii: "\"")]), "\(body)")
                }
            }
        }
    }

    @Test(
        "next is a whole number without sign, fraction, exponent or leading zero, up to the largest 64-bit one",
        arguments: [
            ("0", UInt64?.some(0)), ("7", 7), ("18446744073709551615", .max), ("18446744073709551616", nil), ("00", nil), ("01", nil),
            ("1.0", nil), ("1e3", nil), ("-1", nil), ("0.5", nil),
        ])
    func nextIsAWholeNumber(text: String, value: UInt64?) {
        let frame = RecordFrameReader.read(Array(#"{"ok":true,"records":[],"next":\#(text)}"#.utf8))
        #expect(frame?.next == value)
        #expect((frame == nil) == (value == nil))
    }
}
