import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The status file operators read (`meterctl connector status`): every source's latest status,
/// rewritten (temporary file, rename) at most four times a second and at shutdown.
final class StatusBoard: @unchecked Sendable {
    let path: String
    private let header: [JSONObject.Member]
    private let lock = NSLock()
    private let order: [String]
    private var sources: [String: JSONValue] = [:]
    private var lastWrite = Date.distantPast
    private var state = "running"

    init(path: String, sources: [String], header: [JSONObject.Member]) {
        self.path = path
        self.order = sources
        self.header = header
    }

    /// Records a source's status; writes the file unless it was written very recently.
    func publish(_ source: String, _ status: JSONValue) {
        let due = lock.withLock {
            sources[source] = status
            return Date().timeIntervalSince(lastWrite) >= 0.25
        }
        if due { write() }
    }

    /// Every source's latest status, by name (for the metrics).
    var statuses: [(name: String, status: JSONValue)] { lock.withLock { order.compactMap { name in sources[name].map { (name, $0) } } } }

    /// Marks the connector stopped and writes the file.
    func stopped() {
        lock.withLock { state = "stopped" }
        write()
    }

    func write() {
        lock.withLock {
            lastWrite = Date()
            var members = header
            members.append(.init("state", .string(state)))
            members.append(.init("updated", .string(Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601)))
            members.append(.init("sources", .array(order.compactMap { sources[$0] })))
            let temporary = path + ".tmp"
            // 0640: malformed examples quote log lines, which may hold what only operators should see.
            let contents = Data(JSONWriter.bytes(.object(JSONObject(members))) + [0x0A])
            if FileManager.default.createFile(atPath: temporary, contents: contents, attributes: [.posixPermissions: 0o640]) {
                _ = rename(temporary, path)
            }
        }
    }
}
