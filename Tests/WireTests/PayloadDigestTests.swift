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
