import Crypto
import Wire

/// The signature of one front-door request (docs/FRONTDOOR.md §4): what the client computes and
/// the server recomputes.
///
/// The signed text binds the method, the path, the client's clock, a one-time nonce and the
/// body's digest, so a captured request cannot be replayed (the nonce is remembered, the time
/// expires) or altered (any changed byte changes the digest) without the key.
public enum RequestSignature {
    /// The credential's id (`fdc_...`).
    public static let credentialHeader = "X-Metering-Credential"
    /// Whole seconds since 1970-01-01T00:00:00Z, by the client's clock.
    public static let timestampHeader = "X-Metering-Timestamp"
    /// 16 to 128 characters of `A-Z a-z 0-9 - _`, never reused.
    public static let nonceHeader = "X-Metering-Nonce"
    /// Lower-case hex of HMAC-SHA-256(signing key, canonical text).
    public static let signatureHeader = "X-Metering-Signature"

    /// The label the signing key is derived with; a new scheme gets a new label, so keys of one
    /// can never verify requests of another.
    public static let keyDerivationLabel = "metering-frontdoor-v1"

    /// The key requests are signed with: HMAC-SHA-256 keyed by the secret's text, of the label.
    /// The server stores only this, never the secret (see `Credential.verificationKey`).
    public static func signingKey(secret: String) -> [UInt8] {
        HMACSHA256.code(key: Array(secret.utf8), message: Array(keyDerivationLabel.utf8))
    }

    /// `METHOD \n PATH \n TIMESTAMP \n NONCE \n hex(SHA-256(body))`.
    public static func canonicalText(method: String, path: String, timestamp: String, nonce: String, body: [UInt8]) -> String {
        "\(method)\n\(path)\n\(timestamp)\n\(nonce)\n\(ByteText.hex(SHA256.hash(body)))"
    }

    /// The hex signature of a request under `key`.
    public static func sign(key: [UInt8], method: String, path: String, timestamp: String, nonce: String, body: [UInt8]) -> String {
        let text = canonicalText(method: method, path: path, timestamp: timestamp, nonce: nonce, body: body)
        return ByteText.hex(HMACSHA256.code(key: key, message: Array(text.utf8)))
    }

    /// Whether `signature` (hex, either case) is the request's signature under `key`; compared in
    /// constant time, so timing tells an attacker nothing about how close a guess was.
    public static func isValid(
        signature: String, key: [UInt8], method: String, path: String, timestamp: String, nonce: String, body: [UInt8]
    ) -> Bool {
        guard let given = Hex.bytes(signature), given.count == 32 else { return false }
        let text = canonicalText(method: method, path: path, timestamp: timestamp, nonce: nonce, body: body)
        return HMACSHA256.constantTimeEqual(given, HMACSHA256.code(key: key, message: Array(text.utf8)))
    }

    /// The four headers of a request signed now, for Swift clients and tests.
    public static func headers(
        key: CredentialKey, method: String, path: String, body: [UInt8], timestamp: Int64, nonce: String
    ) -> [(name: String, value: String)] {
        let time = String(timestamp)
        let signature = sign(key: signingKey(secret: key.secret), method: method, path: path, timestamp: time, nonce: nonce, body: body)
        return [
            (credentialHeader, key.id), (timestampHeader, time), (nonceHeader, nonce), (signatureHeader, signature),
        ]
    }

    /// Whether `nonce` has the allowed length and characters.
    public static func isWellFormedNonce(_ nonce: String) -> Bool {
        (16...128).contains(nonce.utf8.count) && nonce.utf8.allSatisfy(Self.isNonceByte)
    }

    private static func isNonceByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"):
            return true
        default:
            return false
        }
    }

    /// The seconds of a timestamp header: 1 to 12 decimal digits, nothing else.
    public static func seconds(_ text: String) -> Int64? {
        guard (1...12).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return Int64(text)
    }
}

/// Reading hexadecimal text (Wire's `ByteText` writes it).
public enum Hex {
    /// The bytes of an even-length hex string (either case), or nil.
    public static func bytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
