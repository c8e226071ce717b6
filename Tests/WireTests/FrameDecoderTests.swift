import Testing

@testable import Wire

@Suite("Frame decoder")
struct FrameDecoderTests {
    static func frames(_ payloads: [String]) -> [UInt8] {
        payloads.flatMap { FrameEncoder.frame(Array($0.utf8)) }
    }

    static let payloads = [#"{"op":"status"}"#, #"{"op":"read","partition":0}"#, String(repeating: "x", count: 70_000), "{}"]

    /// Feeds `bytes` in chunks of `size` and collects every frame.
    static func decode(_ bytes: [UInt8], chunk size: Int) throws -> [[UInt8]] {
        var decoder = FrameDecoder()
        var out: [[UInt8]] = []
        var index = 0
        while index < bytes.count {
            out += try decoder.decode(bytes[index..<min(bytes.count, index + size)])
            index += size
        }
        try decoder.finish()
        return out
    }

    @Test("bytes dripped one by one, all at once, and one frame per read decode identically")
    func identicalAcrossReadPatterns() throws {
        let bytes = Self.frames(Self.payloads)
        let expected = Self.payloads.map { Array($0.utf8) }
        #expect(try Self.decode(bytes, chunk: 1) == expected)
        #expect(try Self.decode(bytes, chunk: bytes.count) == expected)
        #expect(try Self.decode(bytes, chunk: 7) == expected)
        var decoder = FrameDecoder()
        var perFrame: [[UInt8]] = []
        for payload in Self.payloads { perFrame += try decoder.decode(FrameEncoder.frame(Array(payload.utf8))) }
        #expect(perFrame == expected)
    }

    @Test("a frame of exactly the maximum length is accepted")
    func maximumLengthIsAccepted() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1000)
        let payload = [UInt8](repeating: 0x20, count: 1000)
        #expect(try decoder.decode(FrameEncoder.frame(payload)) == [payload])
    }

    @Test("a length of zero is rejected")
    func zeroLengthIsRejected() {
        var decoder = FrameDecoder()
        #expect(throws: FrameDecoder.Failure.emptyFrame) { try decoder.decode([0, 0, 0, 0]) }
    }

    @Test(
        "a length above the maximum is rejected from the header alone",
        arguments: [UInt32(1001), UInt32(1) << 31, UInt32.max])
    func oversizedLengthIsRejected(length: UInt32) {
        var decoder = FrameDecoder(maximumFrameLength: 1000)
        let header = [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        #expect(throws: FrameDecoder.Failure.frameTooLarge(length: length, maximum: 1000)) { try decoder.decode(header) }
        #expect(decoder.bufferedByteCount <= 4)
    }

    @Test("the default maximum is 16 MiB and its successor is rejected")
    func defaultMaximum() {
        var decoder = FrameDecoder()
        let length = UInt32(16 << 20) + 1
        let header = [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        #expect(throws: FrameDecoder.Failure.self) { try decoder.decode(header) }
    }

    @Test("a stream ending inside a header or a payload is a truncated frame")
    func truncatedAtEOF() throws {
        var inHeader = FrameDecoder()
        _ = try inHeader.decode([0, 0])
        #expect(throws: FrameDecoder.Failure.truncated(have: 2, need: 4)) { try inHeader.finish() }
        var inPayload = FrameDecoder()
        _ = try inPayload.decode([0, 0, 0, 10, 1, 2, 3])
        #expect(throws: FrameDecoder.Failure.truncated(have: 3, need: 10)) { try inPayload.finish() }
    }

    @Test(
        "frames of every size cut at random places decode as they were sent, gathered in a buffer or each in its own array",
        arguments: [false, true])
    func randomCuts(reservesAnnouncedLength: Bool) throws {
        var random = SplitMix64(seed: 12)
        for round in 0..<20 {
            var payloads: [[UInt8]] = []
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                // Small, around one read of 64 KiB, and of several megabytes.
                let size = [
                    Int.random(in: 1...300, using: &random), Int.random(in: 65_530...65_540, using: &random),
                    Int.random(in: 1...3_000_000, using: &random),
                ][Int.random(in: 0...2, using: &random)]
                // Marked at both ends and in the middle, so a shifted or cut payload differs.
                var payload = [UInt8](repeating: UInt8(truncatingIfNeeded: round), count: size)
                payload[0] = UInt8(truncatingIfNeeded: payloads.count)
                payload[size / 2] = 0xAB
                payload[size - 1] = 0xCD
                payloads.append(payload)
            }
            let bytes = payloads.flatMap { FrameEncoder.frame($0) }
            var decoder = FrameDecoder(reservesAnnouncedLength: reservesAnnouncedLength)
            var decoded: [[UInt8]] = []
            var index = 0
            while index < bytes.count {
                let end = min(bytes.count, index + [3, 4, 4_093, 65_536, 200_000, 1_000_003][Int.random(in: 0...5, using: &random)])
                decoded += try decoder.decode(bytes[index..<end])
                index = end
            }
            try decoder.finish()
            #expect(decoded == payloads)
            #expect(decoder.bufferedByteCount == 0)
        }
    }

    @Test("a large length is not allocated on trust: the room grows with the bytes that come")
    func roomFollowsTheBytes() throws {
        var decoder = FrameDecoder()
        let length = 16 << 20
        let header = [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        #expect(try decoder.decode(header + [UInt8](repeating: 7, count: 10)).isEmpty)
        #expect(decoder.bufferedByteCount == 10)
        #expect(decoder.reservedByteCount <= 1 << 16)
        var sent = 10
        while sent < 2 << 20 {
            #expect(try decoder.decode([UInt8](repeating: 7, count: 60_000)).isEmpty)
            sent += 60_000
            // Twice what came at most (the buffer doubles), never the announced 16 MiB.
            #expect(decoder.reservedByteCount <= 2 * (sent + 4) + (1 << 16))
        }
        #expect(decoder.bufferedByteCount == sent)
        #expect(throws: FrameDecoder.Failure.truncated(have: sent, need: length)) { try decoder.finish() }
        let frames = try decoder.decode([UInt8](repeating: 7, count: length - sent) + FrameEncoder.frame([1, 2]))
        #expect(frames.map(\.count) == [length, 2])
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test("a client's decoder gathers a large frame in one array of its announced length, without growing it")
    func aClientGathersALargeFrameInItsOwnArray() throws {
        var decoder = FrameDecoder(reservesAnnouncedLength: true)
        let length = 1_400_000
        let header = [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        #expect(try decoder.decode(header + [UInt8](repeating: 7, count: 10)).isEmpty)
        #expect(decoder.bufferedByteCount == 10)
        let reserved = decoder.reservedByteCount
        #expect(reserved >= length)
        var sent = 10
        while sent < length - 100_000 {
            #expect(try decoder.decode([UInt8](repeating: 7, count: 65_536)).isEmpty)
            sent += 65_536
            #expect(decoder.reservedByteCount == reserved)
        }
        #expect(decoder.bufferedByteCount == sent)
        #expect(throws: FrameDecoder.Failure.truncated(have: sent, need: length)) { try decoder.finish() }
        // The rest of it, a small frame and half a header in one read.
        let frames = try decoder.decode([UInt8](repeating: 7, count: length - sent) + FrameEncoder.frame([1, 2]) + [0, 0])
        #expect(frames.map(\.count) == [length, 2])
        #expect(frames.first?.allSatisfy { $0 == 7 } == true)
        #expect(decoder.bufferedByteCount == 2)
        #expect(try decoder.decode([0, 1, 9]) == [[9]])
        // Small frames are never gathered apart, whatever the setting.
        #expect(try decoder.decode(FrameEncoder.frame([UInt8](repeating: 1, count: 1000)).prefix(500)).isEmpty)
        #expect(decoder.reservedByteCount < 1 << 16 + length)
    }

    @Test("a large frame's missing bytes can be received straight into its array, and nothing of the next frame")
    func aLargeFrameIsReceivedStraightIntoItsArray() throws {
        var decoder = FrameDecoder(reservesAnnouncedLength: true)
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let stream = FrameEncoder.frame(payload) + FrameEncoder.frame([4, 2])
        // Nothing to receive into before a large frame's header has been read.
        #expect(
            decoder.receiveIntoFrame { _ in
                Issue.record("called without a frame"); return 0
            } == nil)
        #expect(try decoder.decode(stream[0..<1_000]).isEmpty)
        var sent = 1_000
        // A failed or empty read changes nothing.
        #expect(decoder.receiveIntoFrame { _ in -1 }?.count == -1)
        #expect(decoder.receiveIntoFrame { _ in 0 }?.count == 0)
        #expect(decoder.bufferedByteCount == 996)
        var frame: [UInt8]?
        var rooms: [Int] = []
        while frame == nil {
            let missing = payload.count + 4 - sent
            let received = try #require(
                decoder.receiveIntoFrame { room in
                    // Exactly the frame's missing part: never room for the next frame's bytes.
                    #expect(room.count == missing)
                    rooms.append(room.count)
                    let count = min(room.count, 70_000)
                    room.copyBytes(from: stream[sent..<sent + count])
                    return count
                })
            sent += received.count
            frame = received.frame
        }
        #expect(rooms.count == 5)
        #expect(sent == payload.count + 4)
        #expect(frame == payload)
        #expect(decoder.bufferedByteCount == 0)
        #expect(decoder.receiveIntoFrame { _ in 0 } == nil)
        #expect(try decoder.decode(stream[sent...]) == [[4, 2]])
        try decoder.finish()
    }

    @Test("after a failure the decoder stays failed")
    func staysFailed() throws {
        var decoder = FrameDecoder()
        #expect(throws: FrameDecoder.Failure.self) { try decoder.decode([0, 0, 0, 0]) }
        #expect(throws: FrameDecoder.Failure.self) { try decoder.decode(FrameEncoder.frame([1])) }
    }
}
