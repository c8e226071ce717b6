import Daemon
import Foundation
import Synchronization
import SystemIO
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The billing adapters' credentials, in one JSON file (`$METERING_HOME/data/adapters/
/// credentials.json`, `METERING_ADAPTER_CREDENTIALS`): written by `meterctl adapters`, read by
/// every `meter-query` replica that serves the usage API.
///
/// A change is a read-modify-write under an exclusive `flock` on a lock file beside it and lands
/// atomically (temporary file, fsync, rename, directory fsync), so readers see the old file or the
/// new one and two `meterctl` runs never lose each other's change. The file and its directory are
/// private to their owner (0600, 0700).
public struct AdapterCredentialStore: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// The variable naming the file.
    public static let variable = "METERING_ADAPTER_CREDENTIALS"

    /// The file under a stack's home.
    public static func defaultPath(home: String) -> String { home + "/data/adapters/credentials.json" }

    /// The credentials in the file; none when there is no file yet.
    public func load() throws(AdapterCredentialError) -> [AdapterCredential] {
        guard let data = FileManager.default.contents(atPath: path) else {
            if access(path, F_OK) != 0 && errno == ENOENT { return [] }
            throw AdapterCredentialError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(Array(data))
        } catch {
            throw AdapterCredentialError("\(path) is not valid JSON: \(error)")
        }
        guard json["format"]?.intValue == 1, let array = json["adapters"]?.arrayValue else {
            throw AdapterCredentialError("\(path) is not an adapter credential file (expected {\"format\":1,\"adapters\":[...]})")
        }
        var credentials: [AdapterCredential] = []
        var seen: Set<String> = []
        for element in array {
            let credential: AdapterCredential
            do {
                credential = try AdapterCredential(json: element)
            } catch {
                throw AdapterCredentialError("\(path): \(error)")
            }
            guard seen.insert(credential.id).inserted else { throw AdapterCredentialError("\(path): \(credential.id) appears twice") }
            credentials.append(credential)
        }
        return credentials
    }

    /// The file's bytes: one credential a line, so two versions diff line by line.
    static func serialize(_ credentials: [AdapterCredential]) -> [UInt8] {
        var out = Array(#"{"format":1,"adapters":["#.utf8)
        for (index, credential) in credentials.enumerated() {
            out += Array((index == 0 ? "\n" : ",\n").utf8)
            JSONWriter.write(credential.json, to: &out)
        }
        out += Array("\n]}\n".utf8)
        return out
    }

    /// Runs `change` on the current credentials and writes the result, all under the lock.
    @discardableResult
    public func update<T>(_ change: (inout [AdapterCredential]) throws -> T) throws -> T {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw AdapterCredentialError("cannot create \(directory): \(error.localizedDescription)")
        }
        let lockPath = path + ".lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw AdapterCredentialError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else { throw AdapterCredentialError("cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        }
        var credentials = try load()
        let result = try change(&credentials)
        // The secrets' hashes stay the owner's, from the temporary file on.
        try FileIO.writeAtomically(Self.serialize(credentials), to: path, mode: 0o600)
        return result
    }
}

/// Why a request's credential is refused.
public struct AdapterAuthError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: String, Sendable {
        /// Not a key of this format, or none sent.
        case malformed
        /// No such credential, or the secret does not match.
        case unknown = "unknown_credential"
        case expired = "credential_expired"
        case revoked = "credential_revoked"
        /// The credential file cannot be read: every request is refused until it is fixed.
        case unavailable
    }

    public var reason: Reason
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { "\(reason.rawValue): \(message)" }
}

/// A running service's view of the credential file, reloaded whenever the file changes (its
/// device, inode, size and modification time are compared on each request: one `stat`), so a
/// `meterctl adapters revoke` takes effect on the next request. A file that exists but cannot be
/// read refuses every request (closed, never open).
public final class AdapterCredentialDirectory: Sendable {
    public let store: AdapterCredentialStore
    private let state = Mutex(Loaded())

    private struct Loaded {
        var identity: FileIO.Identity?
        var byId: [String: AdapterCredential] = [:]
        var failure: AdapterCredentialError?
        var loadedOnce = false
    }

    /// Reads the file now, so a broken file fails at start-up rather than at the first request.
    public init(store: AdapterCredentialStore) throws(AdapterCredentialError) {
        self.store = store
        if let failure = state.withLock({ refresh(&$0) }) { throw failure }
    }

    /// The credential `text` (`mad_….…`) names, when it is valid at `now`.
    public func authenticate(_ text: String, now: Timestamp) throws(AdapterAuthError) -> AdapterCredential {
        guard let key = AdapterKey(text: text) else {
            throw AdapterAuthError(.malformed, "the bearer token is not an adapter key (mad_<16 hex>.<43 base64url>)")
        }
        let found: Result<AdapterCredential?, AdapterCredentialError> = state.withLock { loaded in
            if let failure = refresh(&loaded) { return .failure(failure) }
            return .success(loaded.byId[key.id])
        }
        let credential: AdapterCredential
        switch found {
        case .failure(let failure): throw AdapterAuthError(.unavailable, "the credential file cannot be used: \(failure)")
        case .success(nil): throw AdapterAuthError(.unknown, "no adapter credential \(key.id), or a wrong secret")
        case .success(let known?): credential = known
        }
        switch credential.status(at: now) {
        case .revoked: throw AdapterAuthError(.revoked, "adapter credential \(key.id) was revoked")
        case .expired: throw AdapterAuthError(.expired, "adapter credential \(key.id) expired at \(credential.expires?.iso8601 ?? "?")")
        case .active: break
        }
        guard credential.matches(key) else { throw AdapterAuthError(.unknown, "no adapter credential \(key.id), or a wrong secret") }
        return credential
    }

    /// How many credentials the file holds (for the start-up log line).
    public var count: Int { state.withLock { $0.byId.count } }

    /// Reloads when the file changed; the error when the current file cannot be used.
    private func refresh(_ loaded: inout Loaded) -> AdapterCredentialError? {
        let identity: FileIO.Identity?
        do {
            identity = try FileIO.identity(of: store.path)
        } catch {
            loaded.failure = AdapterCredentialError("cannot use \(store.path): \(error)")
            return loaded.failure
        }
        if loaded.loadedOnce && identity == loaded.identity { return loaded.failure }
        loaded.loadedOnce = true
        loaded.identity = identity
        do {
            let credentials = identity == nil ? [] : try store.load()
            loaded.byId = Dictionary(credentials.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            loaded.failure = nil
            Log.info(
                "adapter credentials loaded from \(store.path): \(credentials.count) (\(credentials.filter { $0.revoked == nil }.count) not revoked)"
            )
        } catch {
            loaded.byId = [:]
            loaded.failure = error
            Log.error("adapter credentials unusable, refusing every usage-API request until \(store.path) is fixed: \(error)")
        }
        return loaded.failure
    }
}
