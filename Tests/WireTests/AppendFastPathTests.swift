import Foundation
import Testing
import Wire

/// The fast path reads appends straight from their bytes; it must never decide anything the
/// general parser and decoder would decide otherwise.
@Suite("Appends read on the fast path")
struct AppendFastPathTests {
    /// The general path's reading of a request frame.
    static func general(_ frame: [UInt8]) -> Result<AppendBatch, RequestError> {
        switch Request.decode(frame) {
        case .failure(let error): return .failure(error)
        case .success(let request): return AppendBatch.from(request)
        }
    }

    /// Both readings agree: same id, same events, byte for byte and digest for digest.
    static func expectSame(_ fast: AppendBatch, _ frame: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        guard case .success(let general) = general(frame) else {
            Issue.record(
                "the fast path read a request the general path refuses: \(String(decoding: frame, as: UTF8.self))",
                sourceLocation: sourceLocation)
            return
        }
        expectSameEvents(fast, general, sourceLocation: sourceLocation)
    }

    /// Two readings of a request agree: same id, same events, byte for byte and digest for digest.
    static func expectSameEvents(_ fast: AppendBatch, _ general: AppendBatch, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(fast.id == general.id, sourceLocation: sourceLocation)
        #expect(fast.events.count == general.events.count, sourceLocation: sourceLocation)
        for (left, right) in zip(fast.events, general.events) {
            switch (left, right) {
            case (.success(let a), .success(let b)):
                #expect(
                    a.payload == b.payload,
                    "\(String(decoding: a.payload, as: UTF8.self)) vs \(String(decoding: b.payload, as: UTF8.self))",
                    sourceLocation: sourceLocation)
                #expect(a.payloadDigest == b.payloadDigest && a.keyDigest == b.keyDigest, sourceLocation: sourceLocation)
                #expect(a.eventTime == b.eventTime, sourceLocation: sourceLocation)
                #expect(
                    a.idempotencyKey == b.idempotencyKey && a.resource == b.resource && a.routeHash == b.routeHash && a.type == b.type,
                    sourceLocation: sourceLocation)
                #expect(
                    a.hasIdempotencyKey == (a.idempotencyKey != nil) && a.namesResourceUri == (a.resource?.resourceUri != nil),
                    sourceLocation: sourceLocation)
                if let key = a.keyInPayload {
                    #expect(a.payload[key].elementsEqual((a.idempotencyKey ?? "").utf8), sourceLocation: sourceLocation)
                }
            case (.failure(let a), .failure(let b)):
                #expect(a == b, sourceLocation: sourceLocation)
            default:
                Issue.record("one path accepted what the other refused: \(left) / \(right)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("a usage report read on the fast path keeps its key and names in its payload instead of strings of its own")
    func keyAndNamesInThePayload() throws {
        let usage =
            #"{"id":"k-1","type":"UsageReported","value":{"resourceUri":"/apps/two","resourceId":"r-1","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":2}}"#
        let fast = try #require(AppendFastPath.readUsage(Array(usage.utf8)))
        let key = try #require(fast.keyInPayload)
        #expect(String(decoding: fast.payload[key], as: UTF8.self) == "k-1")
        #expect(fast.idempotencyKey == "k-1" && fast.hasIdempotencyKey)
        #expect(fast.resource == ResourceName(resourceId: "r-1", resourceUri: "/apps/two") && fast.namesResourceUri)
        #expect(fast.routeHash == ResourceName.routeHash(of: "r-1"))
        guard case .success(let general) = ValidatedEvent.decode(try JSONParser.parse(usage)) else {
            Issue.record("the general path refused the usage report")
            return
        }
        #expect(general.keyInPayload == nil && general.idempotencyKey == "k-1" && general.payload == fast.payload)
        let keyless = try #require(
            AppendFastPath.readUsage(
                Array(
                    #"{"type":"UsageReported","value":{"resourceId":"r-1","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":2}}"#
                        .utf8)))
        #expect(keyless.keyInPayload == nil && !keyless.hasIdempotencyKey && keyless.idempotencyKey == nil && !keyless.namesResourceUri)
    }

    /// A random usage report in one of many spellings (member order, white space, optional members).
    static func usage(_ random: inout SplitMix64) -> String {
        let spaces = ["", " ", "\n  ", "\t"]
        func space() -> String { spaces[Int(random.next() % UInt64(spaces.count))] }
        // Canonical spellings (copied as written) and others (written anew): leading and
        // trailing zeros, exponents, a sign, all the decimals a quantity keeps.
        let quantities = [
            "1", "0", "1.5", "1.50", "0.000000000000000001", "12e2", "1E-3", "170141183460469231731", "3.25", "100000", "0.5", "0.0",
            "10.0", "-0", "0e0", "1.000000000000000000", "0.123456789012345678", "2.500e1", "99999999999999999999.5",
        ]
        var value = [
            #""meterName":"\#(["cpu", "email", "égress"][Int(random.next() % 3)])""#,
            #""quantity":\#(quantities[Int(random.next() % UInt64(quantities.count))])"#,
            #""timestamp":"\#(["2022-09-19T13:26:22Z", "2022-09-19T13:26:22.123Z", "2022-09-19T13:26:22"][Int(random.next() % 3)])""#,
        ]
        switch random.next() % 3 {
        case 0: value.append(#""resourceId":"sub-\#(random.next() % 50)""#)
        case 1: value.append(#""resourceUri":"/subscriptions/x/app-\#(random.next() % 50)""#)
        default: value += [#""resourceId":"sub-\#(random.next() % 50)""#, #""resourceUri":"/subscriptions/y""#]
        }
        if random.next() % 2 == 0 {
            let keys = ["zone", "campaign", "a", "ab", "b"].shuffled(using: &random).prefix(Int(random.next() % 4))
            value.append(#""properties":{\#(keys.map { #""\#($0)":"v-\#($0)""# }.joined(separator: ","))}"#)
        }
        value.shuffle(using: &random)
        var envelope = [#""type":"UsageReported""#, #""value":{\#(value.joined(separator: "," + space()))}"#]
        if random.next() % 3 != 0 { envelope.append(#""id":"key-\#(random.next() % 1000)""#) }
        envelope.shuffle(using: &random)
        return "{" + space() + envelope.joined(separator: "," + space()) + space() + "}"
    }

    @Test("random usage reports in any spelling read the same on both paths, and most take the fast one")
    func randomSpellings() {
        var random = SplitMix64(seed: 7)
        var fastOnes = 0
        for round in 0..<3_000 {
            let message = Self.usage(&random)
            if let event = AppendFastPath.readUsage(Array(message.utf8)) {
                fastOnes += 1
                let frame = Array(#"{"op":"append","id":\#(round),"events":[\#(message)]}"#.utf8)
                guard let batch = AppendFastPath.read(frame) else {
                    Issue.record("a request of one fast message took the general path")
                    continue
                }
                Self.expectSame(batch, frame)
                if case .success(let read) = batch.events[0] { #expect(read.payload == event.payload) }
            }
        }
        #expect(fastOnes > 2_500)
    }

    @Test("a request mixing fast, general and invalid messages reads like the general path, in order")
    func mixedRequest() throws {
        let frame = Array(
            #"""
            {"id":{"n":[1,2]},"events":[
              {"type":"UsageReported","value":{"resourceId":"a","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":2}},
              {"type":"UsageReported","value":{"resourceId":"a","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":"2"}},
              {"type":"UsageReported","value":{"resourceId":"a\u0062","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":2}},
              {"type":"UsageReported","value":{"resourceId":"a","timestamp":"yesterday","meterName":"m","quantity":2}},
              {"type":"UsageReported","value":{"resourceId":"a","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":-2}},
              {"type":"UsageReported","value":{"resourceId":"","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":2}},
              {"type":"SubscriptionDeleted","value":{"resourceId":"a"},"id":"d"},
              {"type":"UsageReported","value":{"resourceId":"a","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":2,"extra":[true,null]}},
              {"type":"Ping","value":{"partitionId":"0"}}
            ],"op":"append","note":null}
            """#.utf8)
        let batch = try #require(AppendFastPath.read(frame))
        Self.expectSame(batch, frame)
        #expect(batch.events.count == 9)
        #expect(batch.id == ["n": [1, 2]])
        // Separated for the committer: the events moved out in order with their places, the refusals by place.
        let copy = batch
        let (events, places, refused) = batch.separated()
        #expect(
            Set(places + refused.map(\.place)) == Set(0..<9) && places == places.sorted()
                && refused.map(\.place) == refused.map(\.place).sorted())
        #expect(places.count == events.count && Set(places).isDisjoint(with: refused.map(\.place)))
        for (event, place) in zip(events, places) {
            guard case .success(let original) = copy.events[place] else {
                Issue.record("event \(place) was refused in the batch but separated as read")
                continue
            }
            #expect(event.payload == original.payload && event.idempotencyKey == original.idempotencyKey)
        }
        for (place, error) in refused {
            guard case .failure(let original) = copy.events[place] else {
                Issue.record("event \(place) was read in the batch but separated as refused")
                continue
            }
            #expect(error == original)
        }
    }

    @Test("what the fast path does not read alone goes to the general path: other ops, a byte-order mark, repeated keys, bad JSON")
    func declines() {
        for text in [
            #"{"op":"status"}"#, "\u{FEFF}" + #"{"op":"append","events":[]}"#, #"{"op":"append","op":"append","events":[]}"#,
            #"{"op":"append","events":[{"type":"UsageReported","type":"UsageReported"}]}"#, #"{"op":"append","events":[1,]}"#,
            #"{"op":"append","events":[]} x"#, #"{"op":"append"}"#, #"{"op":"append","events":{}}"#, "[]", "",
            #"{"op":"append","events":[{"type":"UsageReported","value":{"resourceId":"a","resourceId":"b","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":1}}]}"#,
        ] {
            let frame = Array(text.utf8)
            if let batch = AppendFastPath.read(frame) { Self.expectSame(batch, frame) }
        }
        #expect(AppendFastPath.read(Array(#"{"op":"status"}"#.utf8)) == nil)
        #expect(AppendFastPath.read(Array(#"{"op":"append","op":"append","events":[]}"#.utf8)) == nil)
    }

    @Test("damaged requests never read differently on the fast path: every byte changed, every prefix cut")
    func damagedRequests() {
        var random = SplitMix64(seed: 11)
        let message = Self.usage(&random)
        let frame = Array(#"{"op":"append","id":"r","events":[\#(message),\#(Self.usage(&random))]}"#.utf8)
        let replacements: [UInt8] = [0x22, 0x5C, 0x2C, 0x7B, 0x7D, 0x5B, 0x5D, 0x3A, 0x20, 0x31, 0x2D, 0x00, 0xFF, 0x61]
        for index in frame.indices {
            for replacement in replacements where replacement != frame[index] {
                var damaged = frame
                damaged[index] = replacement
                if let batch = AppendFastPath.read(damaged) { Self.expectSame(batch, damaged) }
            }
            let cut = Array(frame[..<index])
            if let batch = AppendFastPath.read(cut) { Self.expectSame(batch, cut) }
        }
    }
}

/// Large appends are read in two halves at once; the answer must be the one reading in order gives.
@Suite("Appends read in two halves")
struct ForkedAppendTests {
    /// Runs the second half, then the first: the halves never overlap, the order is the one least
    /// like reading in order.
    static func backwards(_ first: () -> Void, _ second: () -> Void) {
        second()
        first()
    }

    /// Runs the halves on two threads at once.
    static func concurrently(_ first: () -> Void, _ second: () -> Void) {
        withoutActuallyEscaping(first) { first in
            withoutActuallyEscaping(second) { second in
                let parts = Parts(first: first, second: second)
                DispatchQueue.concurrentPerform(iterations: 2) { if $0 == 0 { parts.first() } else { parts.second() } }
            }
        }
    }

    struct Parts: @unchecked Sendable {
        let first: () -> Void
        let second: () -> Void
    }

    /// The two readings are the same, event for event (or both nil).
    static func expectIdentical(_ forked: AppendBatch?, _ inOrder: AppendBatch?, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let forked, let inOrder else {
            #expect((forked == nil) == (inOrder == nil), "one reading failed, the other did not", sourceLocation: sourceLocation)
            return
        }
        AppendFastPathTests.expectSameEvents(forked, inOrder, sourceLocation: sourceLocation)
    }

    /// A request of `count` random messages: fast ones, general ones, invalid ones, and property
    /// values holding the `},{` the halves are guessed at.
    static func request(_ random: inout SplitMix64, count: Int) -> [UInt8] {
        var events: [String] = []
        for index in 0..<count {
            switch random.next() % 10 {
            case 0:
                events.append(
                    #"{"type":"UsageReported","value":{"resourceId":"r},{x","timestamp":"2022-01-01T00:00:00Z","meterName":"m},{","quantity":\#(index)},"id":"s\#(index)"}"#
                )
            case 1: events.append(#"{"type":"SubscriptionDeleted","value":{"resourceId":"a\#(index)"},"id":"d\#(index)"}"#)
            case 2:
                events.append(#"{"type":"UsageReported","value":{"resourceId":"a","timestamp":"yesterday","meterName":"m","quantity":2}}"#)
            default: events.append(AppendFastPathTests.usage(&random))
            }
        }
        return Array(#"{"op":"append","id":7,"events":[\#(events.joined(separator: ","))]}"#.utf8)
    }

    @Test("a large request read in two halves, backwards or at once, reads exactly as in order")
    func largeRequests() throws {
        var random = SplitMix64(seed: 21)
        for count in [1, 2, 3, 50, 700] {
            let frame = Self.request(&random, count: count)
            let inOrder = try #require(AppendFastPath.read(frame))
            #expect(inOrder.events.count == count)
            Self.expectIdentical(AppendFastPath.read(frame, fork: Self.backwards, forkFrom: 0), inOrder)
            Self.expectIdentical(AppendFastPath.read(frame, fork: Self.concurrently, forkFrom: 0), inOrder)
            Self.expectIdentical(AppendFastPath.read(frame, fork: Self.concurrently), inOrder)
        }
        // A request this large is read in two halves (the guess confirmed), not merely in order.
        var forks = 0
        let counted: AppendFastPath.Fork = { first, second in
            forks += 1
            Self.backwards(first, second)
        }
        let frame = Self.request(&random, count: 700)
        Self.expectIdentical(AppendFastPath.read(frame, fork: counted), AppendFastPath.read(frame))
        #expect(forks == 1)
    }

    @Test("a guess that falls inside a string, or past the last event, is dropped and the reading is the same")
    func wrongGuesses() throws {
        // One event whose long property holds `},{` in the middle of the request.
        let filler = String(repeating: "x", count: 5_000) + "},{" + String(repeating: "y", count: 5_000)
        let event =
            #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":1,"properties":{"p":"\#(filler)"}}}"#
        for events in [[event], [event, event], ["1", event, "2"]] {
            let frame = Array(#"{"op":"append","events":[\#(events.joined(separator: ","))]}"#.utf8)
            let inOrder = AppendFastPath.read(frame)
            Self.expectIdentical(AppendFastPath.read(frame, fork: Self.backwards, forkFrom: 0), inOrder)
            Self.expectIdentical(AppendFastPath.read(frame, fork: Self.concurrently, forkFrom: 0), inOrder)
        }
    }

    @Test("damaged requests read in two halves never read differently: every byte near the middle changed, every prefix cut")
    func damagedRequests() {
        var random = SplitMix64(seed: 5)
        let frame = Self.request(&random, count: 12)
        let replacements: [UInt8] = [0x22, 0x5C, 0x2C, 0x7B, 0x7D, 0x5B, 0x5D, 0x3A, 0x20, 0x31, 0x00, 0xFF]
        for index in frame.indices {
            let cut = Array(frame[..<index])
            Self.expectIdentical(AppendFastPath.read(cut, fork: Self.backwards, forkFrom: 0), AppendFastPath.read(cut))
            guard abs(index - frame.count / 2) < 400 else { continue }
            for replacement in replacements where replacement != frame[index] {
                var damaged = frame
                damaged[index] = replacement
                Self.expectIdentical(AppendFastPath.read(damaged, fork: Self.backwards, forkFrom: 0), AppendFastPath.read(damaged))
            }
        }
    }
}

/// The followers read `follow` answers on a fast path; it must read what the general one reads.
@Suite("Record frames read on the fast path")
struct RecordFrameReaderTests {
    static let purchase =
        #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"s","subscriptionStart":"2024-01-31T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"m":{"type":"simple","dimension":"d","included":10}}}}}}"#

    @Test("random records, usage in its canonical form and other messages, read as the general parser and decoder read them")
    func randomFrames() throws {
        var random = SplitMix64(seed: 5)
        for round in 0..<200 {
            var records: [String] = []
            for sequence in 0..<Int(random.next() % 20) {
                let event: String
                switch random.next() % 4 {
                case 0: event = Self.purchase
                case 1: event = #"{"type":"Ping","value":{"partitionId":"1","reason":"clock"}}"#
                default:
                    let usage = try JSONParser.parse(AppendFastPathTests.usage(&random))
                    event = String(decoding: CanonicalJSON.bytes(usage), as: UTF8.self)
                }
                records.append(
                    #"{"partition":1,"sequence":\#(sequence + round),"enqueuedTime":"2024-03-01T00:00:0\#(sequence % 10).5Z","event":\#(event)}"#
                )
            }
            let frame = Array(
                #"{"id":null,"ok":true,"records":[\#(records.joined(separator: ","))],"next":\#(round + records.count),"log":"abc"}"#.utf8)
            let fast = try #require(RecordFrameReader.read(frame))
            let general = try JSONParser.parse(frame)
            #expect(fast.log == "abc" && fast.next == UInt64(round + records.count))
            let expected = general["records"]?.arrayValue ?? []
            #expect(fast.records.count == expected.count)
            for (read, json) in zip(fast.records, expected) {
                #expect(read.partition == json["partition"]?.intValue && Int(read.sequence) == json["sequence"]?.intValue)
                #expect(read.enqueuedTime == Timestamp(iso8601: json["enqueuedTime"]?.stringValue ?? ""))
                guard case .success(let message) = read.message, case .success(let decoded) = Message.decode(json["event"]!) else {
                    Issue.record("a record did not decode")
                    continue
                }
                #expect(message == decoded)
            }
        }
    }

    @Test("error answers and other shapes are left to the general path")
    func declines() {
        for text in [
            #"{"id":1,"ok":false,"error":{"code":"internal","message":"x"}}"#, #"{"ok":true}"#, #"{"ok":true,"records":[{"partition":1}]}"#,
            #"{"ok":true,"records":[],"next":-1}"#, "[]", "",
            // Found by the fuzzer: JSON the general parser refuses (an unread member that is not
            // JSON, a repeated key) is not read here either.
            #"{"id":nuhl,"ok":true,"records":[],"next":3}"#, #"{"ok":true,"records":[],"next":3,"next":4}"#,
            #"{"ok":true,"records":[{"partition":1,"partition":1,"sequence":0,"enqueuedTime":"2024-03-01T00:00:00Z","event":{"type":"Ping","value":{"partitionId":"1","reason":"clock"}}}],"next":1}"#,
        ] {
            #expect(RecordFrameReader.read(Array(text.utf8)) == nil, "\(text)")
        }
        #expect(RecordFrameReader.read(Array(#"{"ok":true,"records":[],"next":3}"#.utf8))?.next == 3)
    }
}
