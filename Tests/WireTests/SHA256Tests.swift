import Crypto
import Testing
import Wire

@Suite("SHA-256, HMAC-SHA-256 and the text forms of bytes")
struct SHA256Tests {
    @Test(
        "digests match the NIST test vectors, across block boundaries",
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
        ])
    func matchesNIST(message: String, digest: String) {
        #expect(ByteText.hex(SHA256.hash(Array(message.utf8))) == digest)
    }

    @Test("the digest of a million a's matches NIST's long-message vector")
    func matchesNISTMillion() {
        #expect(
            ByteText.hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("feeding a message in pieces gives the same digest as feeding it whole")
    func incrementalEqualsWhole() {
        let message = Array((0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        for split in [0, 1, 55, 56, 63, 64, 65, 999] {
            var hasher = SHA256()
            hasher.update(message[..<split])
            hasher.update(message[split...])
            #expect(hasher.finalize() == SHA256.hash(message))
        }
    }

    @Test("HMAC matches RFC 4231 test cases 1, 2 and 6 (a key longer than a block)")
    func hmacMatchesRFC4231() {
        #expect(
            ByteText.hex(HMACSHA256.code(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8)))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(
            ByteText.hex(HMACSHA256.code(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(
            ByteText.hex(
                HMACSHA256.code(
                    key: [UInt8](repeating: 0xaa, count: 131), message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)
                ))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test("constant-time comparison tells equal from different codes, including different lengths")
    func constantTimeComparison() {
        #expect(HMACSHA256.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!HMACSHA256.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!HMACSHA256.constantTimeEqual([1, 2, 3], [1, 2]))
    }

    @Test("base64url round-trips every length and refuses padding and foreign characters")
    func base64URLRoundTrips() {
        for count in 0..<70 {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 73 &+ 5) }
            #expect(ByteText.bytes(base64URL: ByteText.base64URL(bytes)) == bytes)
        }
        #expect(ByteText.base64URL(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(ByteText.base64URL([0xfb, 0xff]) == "-_8")
        #expect(ByteText.bytes(base64URL: "Zm9vYg==") == nil)
        #expect(ByteText.bytes(base64URL: "Zm9v+mFy") == nil)
        #expect(ByteText.bytes(base64URL: "Z") == nil)
    }
}
