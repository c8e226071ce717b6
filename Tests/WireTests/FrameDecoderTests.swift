import Testing
import Wire

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

    @Test("after a failure the decoder stays failed")
    func staysFailed() throws {
        var decoder = FrameDecoder()
        #expect(throws: FrameDecoder.Failure.self) { try decoder.decode([0, 0, 0, 0]) }
        #expect(throws: FrameDecoder.Failure.self) { try decoder.decode(FrameEncoder.frame([1])) }
    }
}
