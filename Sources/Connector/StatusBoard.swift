import Foundation
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The status file operators read (`meterctl connector status`): every source's latest status,
/// rewritten (temporary file, rename) at most four times a second and at shutdown.
final class StatusBoard: Sendable {
    let path: String
    private let header: [JSONObject.Member]
    private let order: [String]
    /// Also held while the file is written, so two writes never race on the temporary file.
    private let board = Mutex(Board())

    private struct Board {
        var sources: [String: JSONValue] = [:]
        var lastWrite = Date.distantPast
        var state = "running"
    }

    init(path: String, sources: [String], header: [JSONObject.Member]) {
        self.path = path
        self.order = sources
        self.header = header
    }

    /// Records a source's status; writes the file unless it was written very recently.
    func publish(_ source: String, _ status: JSONValue) {
        let due = board.withLock { board in
            board.sources[source] = status
            return Date().timeIntervalSince(board.lastWrite) >= 0.25
        }
        if due { write() }
    }

    /// Every source's latest status, by name (for the metrics).
    var statuses: [(name: String, status: JSONValue)] {
        board.withLock { board in order.compactMap { name in board.sources[name].map { (name, $0) } } }
    }

    /// Marks the connector stopped and writes the file.
    func stopped() {
        board.withLock { $0.state = "stopped" }
        write()
    }

    func write() {
        board.withLock { board in
            board.lastWrite = Date()
            var members = header
            members.append(.init("state", .string(board.state)))
            members.append(.init("updated", .string(Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601)))
            members.append(.init("sources", .array(order.compactMap { board.sources[$0] })))
            let temporary = path + ".tmp"
            // 0640: malformed examples quote log lines, which may hold what only operators should see.
            let contents = Data(JSONWriter.bytes(.object(JSONObject(members))) + [0x0A])
            if FileManager.default.createFile(atPath: temporary, contents: contents, attributes: [.posixPermissions: 0o640]) {
                _ = rename(temporary, path)
            }
        }
    }
}
