public import Daemon
import Foundation
import SystemIO
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A signed, expiring, read-only grant to one subscription's data: an ISV's backend mints one
/// for a signed-in customer, `meter-query` verifies it (docs/RUNRATE-PAGE.md).
///
/// The text form is `v1.<base64url(payload)>.<base64url(HMAC-SHA256(secret, "v1." + payload part))>`,
/// the payload `{"sub":..,"kind":"resourceId"|"resourceUri","scope":..,"exp":..,"iat":..}` with
/// times in Unix seconds. A JWT would do the same with more to get wrong (algorithm choice,
/// `alg: none`); this format has one algorithm and one version.
public struct AccessToken: Hashable, Sendable {
    /// The subscription a token names: a SaaS `resourceId` or a managed application's `resourceUri`.
    public enum Subject: Hashable, Sendable, CustomStringConvertible {
        case resourceId(String)
        case resourceUri(String)

        /// The name as the query side looks subscriptions up.
        public var resourceName: ResourceName {
            switch self {
            case .resourceId(let id): return ResourceName(resourceId: id)
            case .resourceUri(let uri): return ResourceName(resourceUri: uri)
            }
        }

        /// `resourceId` or `resourceUri`, as in the payload's `kind` and the query parameters.
        public var kind: String {
            switch self {
            case .resourceId: return "resourceId"
            case .resourceUri: return "resourceUri"
            }
        }

        /// The id or URI itself.
        public var name: String {
            switch self {
            case .resourceId(let id): return id
            case .resourceUri(let uri): return uri
            }
        }

        public var description: String { "\(kind) \(name)" }
    }

    public var subject: Subject
    /// What the token allows; `meter-query`'s page and API need `runRateScope`.
    public var scope: String
    /// Unix seconds.
    public var issuedAt: Int64
    /// Unix seconds; the token is valid strictly before this second.
    public var expiresAt: Int64

    /// The scope of the run-rate page and `/api/runrate`.
    public static let runRateScope = "runrate"
    /// The version prefix of the text form.
    public static let version = "v1"
    /// Longer texts are refused unread: a real token is a few hundred bytes.
    public static let maximumLength = 4096
    /// 9999-12-31T23:59:59Z: later times are refused, so every time a token holds can be printed.
    static let latestTime: Int64 = 253_402_300_799
    /// The longest lifetime `meterctl token` mints (a month and a day, for monthly links).
    public static let maximumLifetimeSeconds: Int64 = 31 * 86_400

    public init(subject: Subject, scope: String = AccessToken.runRateScope, issuedAt: Int64, expiresAt: Int64) {
        self.subject = subject
        self.scope = scope
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }

    /// The payload, members in the documented order.
    public var payload: JSONValue {
        .object(
            JSONObject([
                "sub": .string(subject.name), "kind": .string(subject.kind), "scope": .string(scope),
                "exp": .number(String(expiresAt)), "iat": .number(String(issuedAt)),
            ]))
    }

    /// The text form, signed with `secret`.
    public func signed(with secret: AccessTokenSecret) -> String {
        let signedPart = "\(Self.version)." + ByteText.base64URL(JSONWriter.bytes(payload))
        return signedPart + "." + ByteText.base64URL(HMACSHA256.code(key: secret.bytes, message: Array(signedPart.utf8)))
    }

    /// Reads and checks `text`: its form, then its signature (nothing unsigned reaches the JSON
    /// parser), then the payload, its expiry against `now` (Unix seconds) and its scope.
    public static func verify(_ text: String, secret: AccessTokenSecret, now: Int64, scope: String = runRateScope)
        throws(AccessTokenError) -> AccessToken
    {
        guard text.utf8.count <= maximumLength else {
            throw AccessTokenError(.malformed, "the token is longer than \(maximumLength) bytes")
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw AccessTokenError(.malformed, "a token has three parts separated by dots") }
        guard parts[0] == version else { throw AccessTokenError(.malformed, "the token does not start with \"\(version).\"") }
        guard let payloadBytes = canonicalBase64URL(parts[1]), !payloadBytes.isEmpty else {
            throw AccessTokenError(.malformed, "the payload is not base64url")
        }
        guard let signature = canonicalBase64URL(parts[2]), signature.count == 32 else {
            throw AccessTokenError(.malformed, "the signature is not 32 bytes of base64url")
        }
        let expected = HMACSHA256.code(key: secret.bytes, message: Array("\(version).\(parts[1])".utf8))
        guard HMACSHA256.constantTimeEqual(expected, signature) else {
            throw AccessTokenError(.badSignature, "the signature does not match (another secret, or a changed token)")
        }
        let token = try parsePayload(payloadBytes)
        guard now < token.expiresAt else {
            throw AccessTokenError(.expired, "the token expired at \(Timestamp(seconds: token.expiresAt).iso8601)", subject: token.subject)
        }
        guard token.scope == scope else {
            throw AccessTokenError(.wrongScope, "the token's scope is \"\(token.scope)\", not \"\(scope)\"", subject: token.subject)
        }
        return token
    }

    /// The bytes of `text` only when `text` is exactly what `ByteText.base64URL` writes for
    /// them: otherwise several texts would carry one signature.
    private static func canonicalBase64URL(_ text: Substring) -> [UInt8]? {
        guard let bytes = ByteText.bytes(base64URL: String(text)), ByteText.base64URL(bytes) == text else { return nil }
        return bytes
    }

    private static func parsePayload(_ bytes: [UInt8]) throws(AccessTokenError) -> AccessToken {
        guard let json = try? JSONParser.parse(bytes, maximumDepth: 2), let object = json.objectValue else {
            throw AccessTokenError(.malformed, "the payload is not a JSON object")
        }
        let known: Set<String> = ["sub", "kind", "scope", "exp", "iat"]
        guard Set(object.keys) == known else {
            throw AccessTokenError(.malformed, "the payload must have exactly the members sub, kind, scope, exp and iat")
        }
        guard let name = object["sub"]?.stringValue, isValidSubjectName(name) else {
            throw AccessTokenError(.malformed, "\"sub\" must be a non-empty string without control characters")
        }
        let subject: Subject
        switch object["kind"]?.stringValue {
        case "resourceId": subject = .resourceId(name)
        case "resourceUri": subject = .resourceUri(name)
        default: throw AccessTokenError(.malformed, "\"kind\" must be \"resourceId\" or \"resourceUri\"")
        }
        guard let scope = object["scope"]?.stringValue else { throw AccessTokenError(.malformed, "\"scope\" must be a string") }
        guard case .number(let expText)? = object["exp"], let expiresAt = Int64(expText), expiresAt >= 0,
            case .number(let iatText)? = object["iat"], let issuedAt = Int64(iatText), issuedAt >= 0, issuedAt <= expiresAt,
            expiresAt <= latestTime
        else {
            throw AccessTokenError(
                .malformed, "\"exp\" and \"iat\" must be whole Unix seconds before the year 10000, \"iat\" not after \"exp\"")
        }
        return AccessToken(subject: subject, scope: scope, issuedAt: issuedAt, expiresAt: expiresAt)
    }

    /// Whether `name` can be a token's `sub`: not empty, no control characters (it is logged).
    public static func isValidSubjectName(_ name: String) -> Bool {
        !name.isEmpty && !name.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    /// Unix seconds of the wall clock: token expiry is about people's time, not the log's.
    @Sendable public static func wallClock() -> Int64 { Int64(Date().timeIntervalSince1970) }
}

/// Why a token was refused. The message never contains the token; `subject` is set only when
/// the signature was valid, so it can be logged as the ISV's own statement.
public struct AccessTokenError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: String, Hashable, Sendable {
        /// Not a token of this format (including a missing one).
        case malformed
        /// Signed with another secret, or changed after signing.
        case badSignature = "bad_signature"
        case expired
        /// A valid token for something else than what was asked.
        case wrongScope = "wrong_scope"
    }

    public var reason: Reason
    public var message: String
    public var subject: AccessToken.Subject?

    public init(_ reason: Reason, _ message: String, subject: AccessToken.Subject? = nil) {
        self.reason = reason
        self.message = message
        self.subject = subject
    }

    public var description: String { "\(reason.rawValue): \(message)" }
}

/// Checks tokens with one secret against one clock: what `meter-query` holds.
public struct AccessTokenVerifier: Sendable {
    public let secret: AccessTokenSecret
    /// Unix seconds now; `AccessToken.wallClock` outside tests.
    public let now: @Sendable () -> Int64

    public init(secret: AccessTokenSecret, now: @escaping @Sendable () -> Int64 = AccessToken.wallClock) {
        self.secret = secret
        self.now = now
    }

    /// The token in `text` when it is valid now for `scope`.
    public func verify(_ text: String, scope: String = AccessToken.runRateScope) throws(AccessTokenError) -> AccessToken {
        try AccessToken.verify(text, secret: secret, now: now(), scope: scope)
    }
}

/// The HMAC key of access tokens. Its text never appears in descriptions, so it cannot reach a
/// log by accident.
public struct AccessTokenSecret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    let bytes: [UInt8]

    /// Shorter keys are refused: HMAC-SHA-256 is only as strong as its key.
    public static let minimumBytes = 32
    /// `METERING_QUERY_TOKEN_SECRET_FILE`.
    public static let fileVariable = "METERING_QUERY_TOKEN_SECRET_FILE"
    /// The flag of the same setting.
    public static let fileFlag = "token-secret-file"

    /// A secret of `bytes`; fails when they are fewer than `minimumBytes`.
    public init(bytes: [UInt8]) throws(SettingsError) {
        guard bytes.count >= Self.minimumBytes else {
            throw SettingsError("the access-token secret has \(bytes.count) bytes; it needs at least \(Self.minimumBytes)")
        }
        self.bytes = bytes
    }

    public var description: String { "AccessTokenSecret(\(bytes.count) bytes, redacted)" }
    public var debugDescription: String { description }

    /// The secret file's path: `--token-secret-file`, `METERING_QUERY_TOKEN_SECRET_FILE`, or
    /// `$METERING_HOME/secrets/query-token.key`.
    public static func path(_ settings: inout Settings, home: String) -> String {
        Settings.absolute(settings.string(fileFlag, fileVariable, default: home + "/secrets/query-token.key"))
    }

    /// The secret in the file at `path`, creating the file first (32 random bytes, hex, mode
    /// 0600, in a directory of mode 0700) when there is none. `meterctl token` and `meter-query`
    /// both call this, so whichever runs first makes the secret both use. The secret is the
    /// file's bytes without surrounding white space (a final newline is not part of it).
    public static func loadOrCreate(path: String) throws(SettingsError) -> AccessTokenSecret {
        let setting = "the access-token secret file \(path) (\(fileVariable))"
        func secret(_ bytes: [UInt8]) throws(SettingsError) -> AccessTokenSecret {
            let key = trimmed(bytes)
            guard key.count >= minimumBytes else {
                throw SettingsError("\(setting) is too short: it holds \(key.count) bytes, at least \(minimumBytes) are needed")
            }
            return try AccessTokenSecret(bytes: key)
        }
        switch readSecretFile(path) {
        case .success(let bytes):
            return try secret(bytes)
        case .failure(let error) where error.errno == ENOENT:
            break
        case .failure(let error):
            throw SettingsError("\(setting) cannot be read: \(error)")
        }
        do {
            if try create(path) { Log.notice("created a new access-token secret in \(path)") }
        } catch {
            throw SettingsError("\(setting) does not exist and cannot be created: \(error)")
        }
        switch readSecretFile(path) {
        case .success(let bytes): return try secret(bytes)
        case .failure(let error): throw SettingsError("\(setting) cannot be read after creating it: \(error)")
        }
    }

    /// Without leading and trailing ASCII white space (the set Python's `bytes.strip()` removes).
    private static func trimmed(_ bytes: [UInt8]) -> [UInt8] {
        let space: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]
        guard let first = bytes.firstIndex(where: { !space.contains($0) }), let last = bytes.lastIndex(where: { !space.contains($0) })
        else { return [] }
        return Array(bytes[first...last])
    }

    /// The file's bytes (at most 4 KiB: anything larger is not a secret file).
    private static func readSecretFile(_ path: String) -> Result<[UInt8], SystemError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(SystemError("open", path)) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return .failure(SystemError("fstat", path)) }
        guard status.st_mode & S_IFMT == S_IFREG, status.st_size <= 4096 else {
            return .failure(SystemError("read", "\(path) (not a regular file of at most 4096 bytes)", errno: EINVAL))
        }
        if status.st_mode & 0o077 != 0 {
            Log.warning(
                "the access-token secret file \(path) is open to other users (mode \(String(status.st_mode & 0o777, radix: 8))); chmod 600 it"
            )
        }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size) + 1)
        var count = 0
        while count < bytes.count {
            let read = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, $0.count - count) }
            if read < 0 && errno == EINTR { continue }
            guard read >= 0 else { return .failure(SystemError("read", path)) }
            if read == 0 { break }
            count += read
        }
        return .success(Array(bytes[..<count]))
    }

    /// Writes a fresh secret to a private temporary file, then links it into place: a process
    /// reading at the same moment sees no file or the whole secret, and of two processes
    /// creating at once the first link wins and both use its secret. True when this call's
    /// secret is the one in place.
    private static func create(_ path: String) throws -> Bool {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let text = Array((ByteText.hex(secret) + "\n").utf8)
        let temporary = "\(path).\(getpid()).\(UInt32.random(in: 0...UInt32.max, using: &generator)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open", temporary) }
        defer { unlink(temporary) }
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        guard written == text.count, fsync(fd) == 0 else {
            let error = SystemError("write", temporary)
            close(fd)
            throw error
        }
        close(fd)
        guard link(temporary, path) == 0 else {
            if errno == EEXIST { return false }
            throw SystemError("link", path)
        }
        // The new name must survive a crash, or tokens minted now would stop verifying after it.
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw SystemError("open", directory) }
        defer { close(directoryFD) }
        guard fsync(directoryFD) == 0 else { throw SystemError("fsync", directory) }
        return true
    }
}
