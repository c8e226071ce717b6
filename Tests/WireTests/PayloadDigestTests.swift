import Testing

@testable import Wire

@Suite("Payload digests")
struct PayloadDigestTests {
    @Test("the digest of two pieces is the digest of them joined, wherever they are cut")
    func twoPiecesAsOne() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let whole = bytes.withUnsafeBytes { PayloadDigest.hash($0) }
            for cut in 0...length {
                let pieces = bytes.withUnsafeBytes {
                    PayloadDigest.hash(UnsafeRawBufferPointer(rebasing: $0[..<cut]), UnsafeRawBufferPointer(rebasing: $0[cut...]))
                }
                #expect(pieces == whole, "length \(length), cut at \(cut)")
            }
        }
    }

    @Test("the digest follows its rule word by word, for any length and any cut")
    func followsTheRule() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<90 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let expected = Self.byTheRule(bytes)
            for cut in [0, length / 3, length / 2, length - min(length, 5), length] {
                let digest = bytes.withUnsafeBytes {
                    PayloadDigest.hash(UnsafeRawBufferPointer(rebasing: $0[..<cut]), UnsafeRawBufferPointer(rebasing: $0[cut...]))
                }
                #expect(digest == expected, "length \(length), cut at \(cut)")
            }
        }
    }

    /// The digest's rule written out plainly, a byte at a time: two lanes over the little-endian
    /// 8-byte words (the last one zero-padded), each finished with SplitMix64's finalizer.
    static func byTheRule(_ bytes: [UInt8]) -> PayloadDigest {
        func rotate(_ value: UInt64, _ count: UInt64) -> UInt64 { (value << count) | (value >> (64 - count)) }
        func finalize(_ value: UInt64) -> UInt64 {
            var z = value
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var high: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(bytes.count)
        var low: UInt64 = 0xC2B2_AE3D_27D4_EB4F &+ UInt64(bytes.count)
        for start in stride(from: 0, to: bytes.count, by: 8) {
            var word: UInt64 = 0
            for (shift, byte) in bytes[start..<min(start + 8, bytes.count)].enumerated() { word |= UInt64(byte) << (8 * UInt64(shift)) }
            high = rotate((high ^ word) &* 0xFF51_AFD7_ED55_8CCD, 31)
            low = rotate((low &+ word) &* 0xC4CE_B9FE_1A85_EC53, 27) ^ rotate(high, 17)
        }
        return PayloadDigest(high: finalize(high), low: finalize(low &+ 0x1656_67B1_9E37_79F9))
    }

    @Test("the digest stays what logs and tables already hold")
    func stableValues() {
        let text = Array(#"{"id":"a","type":"UsageReported","value":{"meterName":"cpu","quantity":1}}"#.utf8)
        let digest = text.withUnsafeBytes { PayloadDigest.hash($0) }
        // Its value when this test was written: the index files and summaries on disk hold these.
        #expect(digest.description == "3540d98e5b28d855da7494ba06b2aa53")
        #expect(
            text.withUnsafeBytes {
                PayloadDigest.hash(UnsafeRawBufferPointer(rebasing: $0[..<13]), UnsafeRawBufferPointer(rebasing: $0[13...]))
            } == digest)
    }
}
