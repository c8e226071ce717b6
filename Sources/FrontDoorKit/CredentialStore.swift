import Daemon
import Foundation
import Synchronization
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Why the credential file could not be read or written.
public struct CredentialStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The credentials of every deployment, in one JSON file (`$METERING_HOME/data/frontdoor/
/// credentials.json`): written by `meterctl credentials`, read by `meter-frontdoor`.
///
/// Every change is a read-modify-write under an exclusive `flock` on a lock file beside it, and
/// lands atomically (a temporary file, fsync, rename, directory fsync): a reader sees the old
/// file or the new one, and two concurrent `meterctl` runs never lose each other's change. The
/// file and its directory are private to the owner (0600, 0700): it holds verification keys.
public struct CredentialStore: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// The file under a stack's home.
    public static func defaultPath(home: String) -> String { home + "/data/frontdoor/credentials.json" }

    /// The credentials in the file; none when there is no file yet.
    public func load() throws(CredentialStoreError) -> [Credential] {
        guard let data = FileManager.default.contents(atPath: path) else {
            if access(path, F_OK) != 0 && errno == ENOENT { return [] }
            throw CredentialStoreError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        return try Self.parse(Array(data), path: path)
    }

    /// The credentials in a file's bytes.
    public static func parse(_ bytes: [UInt8], path: String) throws(CredentialStoreError) -> [Credential] {
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw CredentialStoreError("\(path) is not valid JSON: \(error)")
        }
        guard json["format"]?.intValue == 1, let array = json["credentials"]?.arrayValue else {
            throw CredentialStoreError("\(path) is not a credential file (expected {\"format\":1,\"credentials\":[...]})")
        }
        var credentials: [Credential] = []
        var seen: Set<String> = []
        for element in array {
            let credential: Credential
            do {
                credential = try Credential(json: element)
            } catch {
                throw CredentialStoreError("\(path): \(error)")
            }
            guard seen.insert(credential.id).inserted else {
                throw CredentialStoreError("\(path): credential \(credential.id) appears twice")
            }
            credentials.append(credential)
        }
        return credentials
    }

    /// The file's bytes for `credentials`: one credential a line, so a diff of two versions reads.
    public static func serialize(_ credentials: [Credential]) -> [UInt8] {
        var out = Array(#"{"format":1,"credentials":["#.utf8)
        for (index, credential) in credentials.enumerated() {
            out += Array((index == 0 ? "\n" : ",\n").utf8)
            JSONWriter.write(credential.json, to: &out)
        }
        out += Array("\n]}\n".utf8)
        return out
    }

    /// Runs `change` on the current credentials and writes the result, all under the lock.
    @discardableResult
    public func update<T>(_ change: (inout [Credential]) throws -> T) throws -> T {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CredentialStoreError("cannot create \(directory): \(error.localizedDescription)")
        }
        let lockPath = path + ".lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw CredentialStoreError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else { throw CredentialStoreError("cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        }
        var credentials = try load()
        let result = try change(&credentials)
        do {
            try FileIO.writeAtomically(Self.serialize(credentials), to: path, mode: 0o600)
        } catch {
            throw CredentialStoreError("cannot write \(path): \(error)")
        }
        return result
    }
}

/// The running front door's view of the credential file, reloaded whenever the file changes:
/// each lookup compares the file's identity (device, inode, size, modification time) with the
/// one loaded, which costs one `stat`. An atomic rename always makes a new inode, so no change is
/// missed; `meterctl credentials revoke` takes effect on the next request.
///
/// A file that exists but cannot be read or parsed fails every lookup (closed, never open): the
/// last good copy might still hold a credential that was just revoked.
public final class CredentialDirectory: Sendable {
    public let store: CredentialStore
    private let state = Mutex(Loaded())

    private struct Loaded {
        var identity: FileIO.Identity?
        var byId: [String: Credential] = [:]
        var failure: CredentialStoreError?
        var loadedOnce = false
    }

    /// Reads the file now, so a broken file fails at start-up rather than at the first request.
    public init(store: CredentialStore) throws(CredentialStoreError) {
        self.store = store
        if let failure = state.withLock({ refresh(&$0) }) { throw failure }
    }

    /// The credential named `id`, or nil when the file has none by that name.
    public func credential(_ id: String) throws(CredentialStoreError) -> Credential? {
        let result: Result<Credential?, CredentialStoreError> = state.withLock { loaded in
            if let failure = refresh(&loaded) { return .failure(failure) }
            return .success(loaded.byId[id])
        }
        return try result.get()
    }

    /// How many credentials the file holds (for the start-up log line).
    public var count: Int { state.withLock { $0.byId.count } }

    /// Reloads when the file changed; the error when the current file cannot be used.
    private func refresh(_ loaded: inout Loaded) -> CredentialStoreError? {
        let identity: FileIO.Identity?
        do {
            identity = try FileIO.identity(of: store.path)
        } catch {
            loaded.failure = CredentialStoreError("cannot use \(store.path): \(error)")
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
                "credentials loaded from \(store.path): \(credentials.count) (\(credentials.filter { $0.revoked == nil }.count) not revoked)"
            )
        } catch {
            loaded.byId = [:]
            loaded.failure = error
            Log.error("credentials unusable, refusing every request until \(store.path) is fixed: \(error)")
        }
        return loaded.failure
    }
}
