import Crypto
import FrontDoorKit
import Testing
import Wire

@Suite("Request signing")
struct SigningTests {
    // Expected values computed independently with `openssl dgst -sha256 -mac HMAC`.
    static let secret = "l5yr22q8JSIMoGNFmWo6DAwWB5T8IZ3r5w-1h4ExIQk"
    static let signingKeyHex = "c3eb8f27c866511e4ebe6fd08a0bb1727c9f9236ed94f79e4127b2d7a0395675"
    static let body = Array(#"[{"type":"x"}]"#.utf8)
    static let signature = "1190f79d1f8ee643ce93e40cb59b065d8366df0e528cc9c5a02e9d88d875f1bb"

    static func isValid(
        _ signature: String = signature, method: String = "POST", path: String = "/v1/messages", timestamp: String = "1700000000",
        nonce: String = "nonce-0123456789abcdef", body: [UInt8] = body
    ) -> Bool {
        RequestSignature.isValid(
            signature: signature, key: Hex.bytes(signingKeyHex)!, method: method, path: path, timestamp: timestamp, nonce: nonce, body: body
        )
    }

    @Test("the signing key is HMAC-SHA-256 of the label keyed by the secret, as openssl computes it")
    func signingKeyMatchesOpenSSL() {
        #expect(ByteText.hex(RequestSignature.signingKey(secret: Self.secret)) == Self.signingKeyHex)
    }

    @Test("the signature of a request matches openssl's, over method, path, timestamp, nonce and the body's SHA-256")
    func signatureMatchesOpenSSL() {
        let text = RequestSignature.canonicalText(
            method: "POST", path: "/v1/messages", timestamp: "1700000000", nonce: "nonce-0123456789abcdef", body: Self.body)
        #expect(
            text
                == "POST\n/v1/messages\n1700000000\nnonce-0123456789abcdef\nd3b89d368528f8a83b4ebd125bb252a36ad0a8b212778aed5768e3341ebfbc3d"
        )
        let signed = RequestSignature.sign(
            key: RequestSignature.signingKey(secret: Self.secret), method: "POST", path: "/v1/messages", timestamp: "1700000000",
            nonce: "nonce-0123456789abcdef", body: Self.body)
        #expect(signed == Self.signature)
        #expect(Self.isValid())
        #expect(Self.isValid(Self.signature.uppercased()))
    }

    @Test("changing any signed part, or the signature, fails verification")
    func tamperingFails() {
        #expect(!Self.isValid(method: "PUT"))
        #expect(!Self.isValid(path: "/v1/messages/"))
        #expect(!Self.isValid(timestamp: "1700000001"))
        #expect(!Self.isValid(nonce: "nonce-0123456789abcdeF"))
        #expect(!Self.isValid(body: Array(#"[{"type":"y"}]"#.utf8)))
        #expect(!Self.isValid(body: Self.body + [0x20]))
        var flipped = Array(Self.signature)
        flipped[10] = flipped[10] == "0" ? "1" : "0"
        #expect(!Self.isValid(String(flipped)))
        #expect(!Self.isValid(String(Self.signature.dropLast(2))))
        #expect(!Self.isValid(Self.signature + "00"))
        #expect(!Self.isValid("zz" + Self.signature.dropFirst(2)))
        #expect(!Self.isValid(""))
        let otherKey = RequestSignature.signingKey(secret: Self.secret + "x")
        #expect(
            !RequestSignature.isValid(
                signature: Self.signature, key: otherKey, method: "POST", path: "/v1/messages", timestamp: "1700000000",
                nonce: "nonce-0123456789abcdef", body: Self.body))
    }

    @Test("headers for a key carry its id, the time, the nonce and a signature that verifies")
    func headersVerify() throws {
        let key = CredentialKey.generate()
        let headers = RequestSignature.headers(
            key: key, method: "POST", path: "/v1/messages", body: Self.body, timestamp: 1_234_567_890, nonce: "abcdefghijklmnop")
        let byName = Dictionary(uniqueKeysWithValues: headers.map { ($0.name, $0.value) })
        #expect(byName[RequestSignature.credentialHeader] == key.id)
        #expect(byName[RequestSignature.timestampHeader] == "1234567890")
        #expect(byName[RequestSignature.nonceHeader] == "abcdefghijklmnop")
        let signature = try #require(byName[RequestSignature.signatureHeader])
        #expect(
            RequestSignature.isValid(
                signature: signature, key: RequestSignature.signingKey(secret: key.secret), method: "POST", path: "/v1/messages",
                timestamp: "1234567890", nonce: "abcdefghijklmnop", body: Self.body))
    }

    @Test("nonces and timestamps are checked for shape")
    func headerShapes() {
        #expect(RequestSignature.isWellFormedNonce("0123456789abcdef"))
        #expect(RequestSignature.isWellFormedNonce(String(repeating: "a_-Z9", count: 25)))
        #expect(!RequestSignature.isWellFormedNonce("0123456789abcde"))
        #expect(!RequestSignature.isWellFormedNonce(String(repeating: "a", count: 129)))
        #expect(!RequestSignature.isWellFormedNonce("0123456789abcdef "))
        #expect(!RequestSignature.isWellFormedNonce("0123456789abcdef\n"))
        #expect(RequestSignature.seconds("1700000000") == 1_700_000_000)
        #expect(RequestSignature.seconds("") == nil)
        #expect(RequestSignature.seconds("-1") == nil)
        #expect(RequestSignature.seconds("+1") == nil)
        #expect(RequestSignature.seconds("1.5") == nil)
        #expect(RequestSignature.seconds("1234567890123") == nil)
    }

    @Test("a key's text splits into id and secret; malformed texts are refused; the description hides the secret")
    func keyText() throws {
        let key = CredentialKey.generate()
        #expect(Credential.isWellFormedId(key.id))
        #expect(ByteText.bytes(base64URL: key.secret)?.count == 32)
        let parsed = try #require(CredentialKey(text: key.text))
        #expect(parsed == key)
        #expect(!"\(key)".contains(key.secret))
        #expect(CredentialKey(text: key.id) == nil)
        #expect(CredentialKey(text: key.id + ".") == nil)
        #expect(CredentialKey(text: key.id + ".short") == nil)
        #expect(CredentialKey(text: "fdc_XYZ." + key.secret) == nil)
        #expect(CredentialKey(text: key.id + "." + key.secret + "=") == nil)
        #expect(CredentialKey.generate() != key)
    }

    @Test("hex text decodes in either case and refuses odd lengths and other characters")
    func hex() {
        #expect(Hex.bytes("00ff7Fa0") == [0x00, 0xff, 0x7f, 0xa0])
        #expect(Hex.bytes("") == [])
        #expect(Hex.bytes("abc") == nil)
        #expect(Hex.bytes("0g") == nil)
    }
}
