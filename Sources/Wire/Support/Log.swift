import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Operator-readable logs on standard error: one line per event, `key=value` details.
///
/// Under systemd (`JOURNAL_STREAM` set) lines carry a `<priority>` prefix instead of a time stamp,
/// so journald files them at the right level and adds its own time.
public enum Log {
    public enum Level: Int, Comparable, Sendable {
        case debug = 7, info = 6, notice = 5, warning = 4, error = 3

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue > rhs.rawValue }

        var name: String {
            switch self {
            case .debug: return "debug"
            case .info: return "info"
            case .notice: return "notice"
            case .warning: return "warning"
            case .error: return "error"
            }
        }
    }

    private static let toJournal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
    private static let minimum: Level = {
        switch ProcessInfo.processInfo.environment["METERING_LOG_LEVEL"]?.lowercased() {
        case "debug": return .debug
        case "notice": return .notice
        case "warning": return .warning
        case "error": return .error
        default: return .info
        }
    }()
    private static let lock = NSLock()
    nonisolated(unsafe) private static var component = "metering"

    /// Names the process in every line (call once at start-up).
    public static func setComponent(_ name: String) { lock.withLock { component = name } }

    public static func debug(_ message: @autoclosure () -> String) { write(.debug, message) }
    public static func info(_ message: @autoclosure () -> String) { write(.info, message) }
    public static func notice(_ message: @autoclosure () -> String) { write(.notice, message) }
    public static func warning(_ message: @autoclosure () -> String) { write(.warning, message) }
    public static func error(_ message: @autoclosure () -> String) { write(.error, message) }

    private static func write(_ level: Level, _ message: () -> String) {
        guard level >= minimum else { return }
        let line: String
        if toJournal {
            line = "<\(level.rawValue)>\(message())\n"
        } else {
            let now = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))
            line = "\(now.iso8601) \(lock.withLock { component }) \(level.name): \(message())\n"
        }
        lock.withLock {
            var bytes = Array(line.utf8)
            bytes.withUnsafeMutableBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 && errno == EINTR { continue }
                    if written <= 0 { break }
                    offset += written
                }
            }
        }
    }
}
