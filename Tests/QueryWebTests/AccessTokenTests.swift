import Crypto
import Daemon
import Dispatch
import Foundation
import StackTestSupport
import Synchronization
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Signed run-rate access tokens: the format, every way a token is refused, and the secret file.
@Suite("Access tokens")
struct AccessTokenTests {
    static let secretText = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    static let secret = try! AccessTokenSecret(bytes: Array(secretText.utf8))
    static let subject = AccessToken.Subject.resourceId("8151a707-467c-4105-df0b-44c3fca5880d")

    /// Made by the Python recipe of docs/RUNRATE-PAGE.md with `secretText`, for this subject,
    /// `iat` 1700000000 and `exp` 1900000000.
    static let pythonToken =
        "v1.eyJzdWIiOiI4MTUxYTcwNy00NjdjLTQxMDUtZGYwYi00NGMzZmNhNTg4MGQiLCJraW5kIjoicmVzb3VyY2VJZCIsInNjb3BlIjoicnVucmF0ZSIsImV4cCI6MTkwMDAwMDAwMCwiaWF0IjoxNzAwMDAwMDAwfQ.4kU0tXcCoYFRSaf0IZ3Oo4cZ_0wcsMoLQKVLBxkZD6w"

    /// The token text of `payload` (any bytes) signed with `secret`, as a buggy or hostile minter could make it.
    static func sign(_ payload: String, secret: AccessTokenSecret = secret) -> String {
        let signed = "v1." + ByteText.base64URL(Array(payload.utf8))
        return signed + "." + ByteText.base64URL(HMACSHA256.code(key: Array(secretText.utf8), message: Array(signed.utf8)))
    }

    static func reason(_ text: String, now: Int64 = 1_800_000_000, scope: String = AccessToken.runRateScope) -> AccessTokenError.Reason? {
        do {
            _ = try AccessToken.verify(text, secret: secret, now: now, scope: scope)
            return nil
        } catch {
            return error.reason
        }
    }

    @Test("a minted token verifies to the same subject, scope and times, for a resourceId and a resourceUri")
    func roundTrip() throws {
        for subject in [Self.subject, .resourceUri("/subscriptions/a/resourceGroups/b/providers/Microsoft.Solutions/applications/c")] {
            let token = AccessToken(subject: subject, issuedAt: 1_700_000_000, expiresAt: 1_700_003_600)
            let verified = try AccessToken.verify(token.signed(with: Self.secret), secret: Self.secret, now: 1_700_000_001)
            #expect(verified == token)
        }
        let uri = AccessToken.Subject.resourceUri("/subscriptions/x")
        #expect(uri.resourceName == ResourceName(resourceUri: "/subscriptions/x"))
        #expect(Self.subject.resourceName == ResourceName(resourceId: "8151a707-467c-4105-df0b-44c3fca5880d"))
    }

    @Test("a token made by the documented Python recipe is byte-for-byte what Swift mints, and verifies")
    func pythonRecipe() throws {
        let token = AccessToken(subject: Self.subject, issuedAt: 1_700_000_000, expiresAt: 1_900_000_000)
        #expect(token.signed(with: Self.secret) == Self.pythonToken)
        #expect(try AccessToken.verify(Self.pythonToken, secret: Self.secret, now: 1_800_000_000) == token)
    }

    @Test("a payload changed after signing is refused as a bad signature")
    func tamperedPayload() {
        let parts = Self.pythonToken.split(separator: ".").map(String.init)
        let forged = #"{"sub":"someone-else","kind":"resourceId","scope":"runrate","exp":1900000000,"iat":1700000000}"#
        let tampered = [parts[0], ByteText.base64URL(Array(forged.utf8)), parts[2]].joined(separator: ".")
        #expect(Self.reason(tampered) == .badSignature)
    }

    @Test("a changed signature, or one made with another secret, is refused as a bad signature")
    func tamperedSignature() throws {
        var parts = Self.pythonToken.split(separator: ".").map(String.init)
        var signature = try #require(ByteText.bytes(base64URL: parts[2]))
        signature[7] ^= 0x01
        parts[2] = ByteText.base64URL(signature)
        #expect(Self.reason(parts.joined(separator: ".")) == .badSignature)

        let other = try AccessTokenSecret(bytes: Array(repeating: UInt8(ascii: "x"), count: 32))
        let token = AccessToken(subject: Self.subject, issuedAt: 1_700_000_000, expiresAt: 1_900_000_000).signed(with: other)
        #expect(Self.reason(token) == .badSignature)
    }

    @Test("a signature in non-canonical base64url (other trailing bits) is malformed, so one signature has one text")
    func nonCanonicalSignature() {
        // 32 bytes are 43 characters, the last carrying 4 bits and 2 unused ones: set one.
        var parts = Self.pythonToken.split(separator: ".").map(String.init)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let last = alphabet.firstIndex(of: parts[2].last!)!
        parts[2] = String(parts[2].dropLast()) + String(alphabet[last ^ 0x01])
        #expect(ByteText.bytes(base64URL: parts[2]) == ByteText.bytes(base64URL: Self.pythonToken.split(separator: ".")[2].description))
        #expect(Self.reason(parts.joined(separator: ".")) == .malformed)
    }

    @Test("a token is valid up to the second before exp and expired from exp on")
    func expiry() {
        #expect(Self.reason(Self.pythonToken, now: 1_899_999_999) == nil)
        #expect(Self.reason(Self.pythonToken, now: 1_900_000_000) == .expired)
        #expect(Self.reason(Self.pythonToken, now: 2_000_000_000) == .expired)
        let verifier = AccessTokenVerifier(secret: Self.secret, now: { 1_900_000_001 })
        #expect(throws: AccessTokenError.self) { try verifier.verify(Self.pythonToken) }
        do {
            _ = try verifier.verify(Self.pythonToken)
        } catch {
            #expect(error.subject == Self.subject)
            #expect(error.message.contains("2030-03-17T17:46:40Z"))
            #expect(!error.description.contains(Self.pythonToken))
        }
    }

    @Test("a valid token for another scope is refused as the wrong scope")
    func wrongScope() {
        let token = AccessToken(subject: Self.subject, scope: "admin", issuedAt: 1_700_000_000, expiresAt: 1_900_000_000)
        #expect(Self.reason(token.signed(with: Self.secret)) == .wrongScope)
        #expect(Self.reason(Self.pythonToken, scope: "usage") == .wrongScope)
    }

    @Test("a secret shorter than 32 bytes is refused, 32 bytes are enough, and a secret never shows in a description")
    func secretLength() throws {
        #expect(throws: SettingsError.self) { try AccessTokenSecret(bytes: Array(repeating: 1, count: 31)) }
        #expect(throws: SettingsError.self) { try AccessTokenSecret(bytes: []) }
        let secret = try AccessTokenSecret(bytes: Array(Self.secretText.utf8.prefix(32)))
        #expect(!"\(secret)".contains("0123456789abcdef"))
        #expect(!String(reflecting: Self.secret).contains("0123456789abcdef"))
    }

    static let malformed: [(String, String)] = [
        ("empty", ""),
        ("version only", "v1"),
        ("empty parts", "v1.."),
        ("two parts", "v1.eyJ9"),
        ("four parts", pythonToken + ".x"),
        ("another version", "v2" + pythonToken.dropFirst(2)),
        ("a padded payload", pythonToken.replacingOccurrences(of: "fQ.", with: "fQ==.")),
        ("a character outside base64url", pythonToken.replacingOccurrences(of: "eyJ", with: "ey+")),
        ("a short signature", String(pythonToken.dropLast(4))),
        ("a signature too long", pythonToken + "AAAA"),
        ("too long", "v1." + String(repeating: "A", count: 5000) + ".x"),
        ("payload not JSON", sign("not json")),
        ("payload an array", sign("[1]")),
        ("payload empty", sign("")),
        ("sub missing", sign(#"{"kind":"resourceId","scope":"runrate","exp":1900000000,"iat":1700000000}"#)),
        ("an extra member", sign(#"{"sub":"a","kind":"resourceId","scope":"runrate","exp":1900000000,"iat":1700000000,"admin":true}"#)),
        ("sub empty", sign(#"{"sub":"","kind":"resourceId","scope":"runrate","exp":1900000000,"iat":1700000000}"#)),
        ("sub a number", sign(#"{"sub":5,"kind":"resourceId","scope":"runrate","exp":1900000000,"iat":1700000000}"#)),
        ("sub with a newline", sign(#"{"sub":"a\nb","kind":"resourceId","scope":"runrate","exp":1900000000,"iat":1700000000}"#)),
        ("kind unknown", sign(#"{"sub":"a","kind":"tenant","scope":"runrate","exp":1900000000,"iat":1700000000}"#)),
        ("scope not a string", sign(#"{"sub":"a","kind":"resourceId","scope":["runrate"],"exp":1900000000,"iat":1700000000}"#)),
        ("exp a string", sign(#"{"sub":"a","kind":"resourceId","scope":"runrate","exp":"1900000000","iat":1700000000}"#)),
        ("exp a fraction", sign(#"{"sub":"a","kind":"resourceId","scope":"runrate","exp":1900000000.5,"iat":1700000000}"#)),
        ("exp with an exponent", sign(#"{"sub":"a","kind":"resourceId","scope":"runrate","exp":19e8,"iat":1700000000}"#)),
        ("exp beyond year 9999", sign(#"{"sub":"a","kind":"resourceId","scope":"runrate","exp":99999999999999,"iat":1700000000}"#)),
        ("iat negative", sign(#"{"sub":"a","kind":"resourceId","scope":"runrate","exp":1900000000,"iat":-1}"#)),
        ("iat after exp", sign(#"{"sub":"a","kind":"resourceId","scope":"runrate","exp":1900000000,"iat":1900000001}"#)),
        ("a repeated member", sign(#"{"sub":"a","sub":"b","kind":"resourceId","scope":"runrate","exp":1900000000,"iat":1700000000}"#)),
    ]

    @Test("malformed tokens and payloads are refused as malformed", arguments: malformed)
    func malformedPieces(_ example: (name: String, text: String)) {
        #expect(Self.reason(example.text) == .malformed, "\(example.name)")
    }

    @Test("the secret file is created once with 32 random bytes in hex, mode 0600, and read back the same by every caller")
    func secretFileCreation() throws {
        let home = StackHome()
        let path = home.path + "/secrets/query-token.key"
        let first = try AccessTokenSecret.loadOrCreate(path: path)
        let second = try AccessTokenSecret.loadOrCreate(path: path)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.count == 65 && text.hasSuffix("\n"))
        #expect(text.dropLast().allSatisfy { "0123456789abcdef".contains($0) })
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
        #expect(stat(home.path + "/secrets", &status) == 0)
        #expect(status.st_mode & 0o777 == 0o700)
        let token = AccessToken(subject: Self.subject, issuedAt: 1_700_000_000, expiresAt: 1_900_000_000)
        #expect(try AccessToken.verify(token.signed(with: first), secret: second, now: 1_800_000_000) == token)
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path + "/secrets") == ["query-token.key"])
    }

    @Test("concurrent first callers all end up with the one secret that was linked into place")
    func concurrentCreation() throws {
        let home = StackHome()
        let path = home.path + "/secrets/query-token.key"
        let token = AccessToken(subject: Self.subject, issuedAt: 1_700_000_000, expiresAt: 1_900_000_000)
        let signed = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            if let secret = try? AccessTokenSecret.loadOrCreate(path: path) { signed.withLock { $0.append(token.signed(with: secret)) } }
        }
        let texts = signed.withLock { $0 }
        #expect(texts.count == 8)
        #expect(Set(texts).count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path + "/secrets") == ["query-token.key"])
    }

    @Test("an existing secret file is used without its surrounding white space; a short one is refused naming the file")
    func existingSecretFile() throws {
        let home = StackHome()
        let path = home.path + "/key"
        try Data(("  \(Self.secretText)\r\n").utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        let secret = try AccessTokenSecret.loadOrCreate(path: path)
        #expect(try AccessToken.verify(Self.pythonToken, secret: secret, now: 1_800_000_000).subject == Self.subject)

        try Data("too-short-secret\n".utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try AccessTokenSecret.loadOrCreate(path: path)
            Issue.record("a 16-byte secret was accepted")
        } catch {
            #expect(error.message.contains(path))
            #expect(error.message.contains("METERING_QUERY_TOKEN_SECRET_FILE"))
            #expect(!error.message.contains("too-short-secret"))
        }
        #expect(throws: SettingsError.self) { try AccessTokenSecret.loadOrCreate(path: home.path) }
    }

    @Test("the secret file's path comes from the flag, the variable, or METERING_HOME")
    func secretFilePath() throws {
        var settings = try Settings(arguments: [], environment: [:])
        #expect(AccessTokenSecret.path(&settings, home: "/srv/m") == "/srv/m/secrets/query-token.key")
        settings = try Settings(arguments: [], environment: ["METERING_QUERY_TOKEN_SECRET_FILE": "/etc/m/key"])
        #expect(AccessTokenSecret.path(&settings, home: "/srv/m") == "/etc/m/key")
        settings = try Settings(
            arguments: ["--token-secret-file", "/run/k"], environment: ["METERING_QUERY_TOKEN_SECRET_FILE": "/etc/m/key"])
        #expect(AccessTokenSecret.path(&settings, home: "/srv/m") == "/run/k")
    }
}
