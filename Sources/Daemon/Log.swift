import Foundation
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Operator-readable logs on standard error: one line per event, `key=value` details.
///
/// Every message is written as exactly one line, whatever it holds: control characters (NUL, CR,
/// LF, ESC, DEL, C1), the Unicode line and paragraph separators and the bidirectional overrides
/// are escaped (`\n`, `\u001b`, `\u2028`, ...), and a message longer than
/// `maximumMessageBytes` is cut. Text that came from a client can therefore never forge a line,
/// and callers log it as it is.
///
/// `METERING_LOG_FORMAT=text` (the default) writes `time component level: message`;
/// `json` writes one object per line, `{"time","component","level","message"}`, for log
/// shippers. Under systemd (`JOURNAL_STREAM` set) lines carry a `<priority>` prefix instead of
/// a time stamp (text) or before the object (json), so journald files them at the right level.
public enum Log {
    public enum Level: Int, Comparable, Sendable, CaseIterable {
        case debug = 7, info = 6, notice = 5, warning = 4, error = 3

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue > rhs.rawValue }

        /// The level's name, as `METERING_LOG_LEVEL` takes it and lines show it.
        public var name: String {
            switch self {
            case .debug: return "debug"
            case .info: return "info"
            case .notice: return "notice"
            case .warning: return "warning"
            case .error: return "error"
            }
        }
    }

    /// How lines are written (`METERING_LOG_FORMAT`).
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    /// The longest message written, in UTF-8 bytes after escaping; the rest is cut with a note.
    public static let maximumMessageBytes = 16 << 10

    private static let toJournal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
    private static let minimum = Atomic<Int>(Level.info.rawValue)
    private static let json = Atomic<Bool>(false)
    private static let component = Mutex("metering")
    /// Held while a line is written, so lines from several threads never interleave.
    private static let standardError = Mutex(())

    /// Names the process in every line (call once at start-up).
    public static func setComponent(_ name: String) { component.withLock { $0 = name } }

    /// Reads `METERING_LOG_LEVEL` (debug, info, notice, warning, error; default info) and
    /// `METERING_LOG_FORMAT` (text, json; default text) from `environment`. An unknown value
    /// fails, naming the variable, and changes nothing.
    public static func configure(environment: [String: String]) throws(SettingsError) {
        let level = try setting("METERING_LOG_LEVEL", environment, default: Level.info, names: Level.allCases.map(\.name)) {
            name in Level.allCases.first { $0.name == name }
        }
        let format = try setting("METERING_LOG_FORMAT", environment, default: Format.text, names: Format.allCases.map(\.rawValue)) {
            Format(rawValue: $0)
        }
        minimum.store(level.rawValue, ordering: .relaxed)
        json.store(format == .json, ordering: .relaxed)
    }

    private static func setting<T>(
        _ variable: String, _ environment: [String: String], default value: T, names: [String], _ parse: (String) -> T?
    ) throws(SettingsError) -> T {
        guard let text = environment[variable], !text.isEmpty else { return value }
        guard let parsed = parse(text.lowercased()) else {
            let expected = names.map { "\"\($0)\"" }.joined(separator: ", ")
            throw SettingsError("invalid \(variable)=\"\(escaped(text, quoting: false))\": expected one of \(expected)")
        }
        return parsed
    }

    public static func debug(_ message: @autoclosure () -> String) { write(.debug, message) }
    public static func info(_ message: @autoclosure () -> String) { write(.info, message) }
    public static func notice(_ message: @autoclosure () -> String) { write(.notice, message) }
    public static func warning(_ message: @autoclosure () -> String) { write(.warning, message) }
    public static func error(_ message: @autoclosure () -> String) { write(.error, message) }

    /// Whether messages of `level` are written at all (to skip building costly ones).
    public static func isEnabled(_ level: Level) -> Bool { level.rawValue <= minimum.load(ordering: .relaxed) }

    private static func write(_ level: Level, _ message: () -> String) {
        guard isEnabled(level) else { return }
        let name = component.withLock { $0 }
        let time = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601
        let line = self.line(level, message(), component: name, time: time, json: json.load(ordering: .relaxed), journal: toJournal)
        standardError.withLock { _ in
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

    /// The complete line for `message`, newline included: what is written for it (pure: the
    /// clock, the component and the destination are arguments).
    public static func line(_ level: Level, _ message: String, component: String, time: String, json: Bool, journal: Bool) -> String {
        let prefix = journal ? "<\(level.rawValue)>" : ""
        if json {
            return prefix + "{\"time\":\"\(time)\",\"component\":\"\(escaped(component, quoting: true))\",\"level\":\"\(level.name)\","
                + "\"message\":\"\(escaped(message, quoting: true))\"}\n"
        }
        let head = journal ? prefix : "\(time) \(escaped(component, quoting: false)) \(level.name): "
        return head + escaped(message, quoting: false) + "\n"
    }

    /// `text` with every character that could break or disguise a line escaped; with `quoting`,
    /// also `"` and `\`, so the result is the inside of a JSON string. Cut after
    /// `maximumMessageBytes`.
    public static func escaped(_ text: String, quoting: Bool) -> String {
        var out = String.UnicodeScalarView()
        var bytes = 0
        var consumed = 0
        for scalar in text.unicodeScalars {
            if bytes >= maximumMessageBytes {
                return String(out) + "… (cut: \(text.utf8.count - consumed) more bytes)"
            }
            consumed += UTF8.width(scalar)
            let value = scalar.value
            let replacement: String?
            switch value {
            case 0x0A: replacement = "\\n"
            case 0x0D: replacement = "\\r"
            case 0x09: replacement = "\\t"
            case 0x22 where quoting: replacement = "\\\""
            case 0x5C where quoting: replacement = "\\\\"
            case 0x00..<0x20, 0x7F..<0xA0, 0x2028, 0x2029, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0xFEFF:
                let hex = String(value, radix: 16)
                replacement = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: replacement = nil
            }
            if let replacement {
                out.append(contentsOf: replacement.unicodeScalars)
                bytes += replacement.utf8.count
            } else {
                out.append(scalar)
                bytes += UTF8.width(scalar)
            }
        }
        return String(out)
    }
}
