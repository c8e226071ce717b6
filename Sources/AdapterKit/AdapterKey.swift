import Crypto
import Wire

/// What a billing adapter holds to read the usage API: the credential's id and its secret,
/// written as one bearer token `mad_<16 hex>.<43 base64url>` (`Authorization: Bearer …`).
public struct AdapterKey: Sendable, Hashable, CustomStringConvertible {
    /// Public: shown by `meterctl adapters list` and logged with refusals.
    public var id: String
    /// Private to the adapter; the query service keeps only its SHA-256.
    public var secret: String

    /// The start of every adapter credential's id (never that of a front-door credential, `fdc_`).
    public static let idPrefix = "mad_"

    public init(id: String, secret: String) {
        self.id = id
        self.secret = secret
    }

    /// Reads `<id>.<secret>`; nil when either part is malformed.
    public init?(text: String) {
        guard text.utf8.count <= 128, let dot = text.firstIndex(of: ".") else { return nil }
        let id = String(text[..<dot])
        let secret = String(text[text.index(after: dot)...])
        guard Self.isWellFormedId(id), secret.utf8.count == 43, ByteText.bytes(base64URL: secret)?.count == 32 else { return nil }
        self.init(id: id, secret: secret)
    }

    /// The one text an adapter is given.
    public var text: String { id + "." + secret }

    /// Never the secret: keys end up in logs through string interpolation otherwise.
    public var description: String { "adapter credential \(id)" }

    /// The lower-case hex SHA-256 of the secret: what the store keeps. A fast hash is enough
    /// because the secret is 256 random bits, not a password: there is nothing to guess.
    public var secretHash: String { ByteText.hex(SHA256.hash(Array(secret.utf8))) }

    /// A new id (64 random bits) and secret (256 random bits) from the system's generator
    /// (`getrandom(2)` on Linux).
    public static func generate() -> AdapterKey {
        var generator = SystemRandomNumberGenerator()
        let idBytes = (0..<8).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let secretBytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return AdapterKey(id: idPrefix + ByteText.hex(idBytes), secret: ByteText.base64URL(secretBytes))
    }

    /// `mad_` and 16 lower-case hex digits.
    public static func isWellFormedId(_ id: String) -> Bool {
        guard id.hasPrefix(idPrefix) else { return false }
        let digits = id.utf8.dropFirst(idPrefix.utf8.count)
        return digits.count == 16
            && digits.allSatisfy {
                ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "f"))
            }
    }
}
