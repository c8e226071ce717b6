import Foundation
import Wire

/// A configuration mistake, naming the setting and what is expected.
public struct SettingsError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads a process's settings from flags (`--name value` or `--name=value`) and `METERING_*`
/// environment variables, flags first. Every value is checked here, at start-up, and a bad one
/// fails with a message naming the flag or variable.
public struct Settings {
    private var flags: [String: String] = [:]
    private var consumed: Set<String> = []
    public let environment: [String: String]
    /// `--help` (or `-h`) was given.
    public let wantsHelp: Bool
    /// `--version` was given.
    public let wantsVersion: Bool

    public init(
        arguments: [String]? = nil,
        environment: [String: String]? = nil
    ) throws(SettingsError) {
        let arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
        self.environment = environment ?? ProcessInfo.processInfo.environment
        var help = false
        var version = false
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "-h" || argument == "--help" || argument == "--version" {
                if argument == "--version" { version = true } else { help = true }
                index += 1
                continue
            }
            guard argument.hasPrefix("--") else { throw SettingsError("unexpected argument \"\(argument)\"; settings are --name value") }
            let body = String(argument.dropFirst(2))
            if let equals = body.firstIndex(of: "=") {
                flags[String(body[..<equals])] = String(body[body.index(after: equals)...])
                index += 1
            } else {
                guard index + 1 < arguments.count else { throw SettingsError("--\(body) needs a value") }
                flags[body] = arguments[index + 1]
                index += 2
            }
        }
        wantsHelp = help
        wantsVersion = version
    }

    /// The raw value and where it came from (for messages), flag before variable.
    private mutating func raw(_ flag: String, _ variable: String?) -> (value: String, source: String)? {
        consumed.insert(flag)
        if let value = flags[flag] { return (value, "--\(flag)") }
        if let variable, let value = environment[variable], !value.isEmpty { return (value, variable) }
        return nil
    }

    /// Whether the setting was given at all.
    public mutating func isGiven(_ flag: String, _ variable: String?) -> Bool { raw(flag, variable) != nil }

    public mutating func string(_ flag: String, _ variable: String?, default value: String) -> String {
        raw(flag, variable)?.value ?? value
    }

    public mutating func optionalString(_ flag: String, _ variable: String?) -> String? {
        raw(flag, variable)?.value
    }

    public mutating func integer(_ flag: String, _ variable: String?, default value: Int, range: ClosedRange<Int>)
        throws(SettingsError) -> Int
    {
        guard let (text, source) = raw(flag, variable) else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw SettingsError("invalid \(source)=\"\(text)\": expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    public mutating func choice<T: RawRepresentable & CaseIterable>(
        _ flag: String, _ variable: String?, default value: T
    ) throws(SettingsError) -> T where T.RawValue == String {
        guard let (text, source) = raw(flag, variable) else { return value }
        guard let chosen = T(rawValue: text) else {
            let names = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " or ")
            throw SettingsError("invalid \(source)=\"\(text)\": expected \(names)")
        }
        return chosen
    }

    /// Fails on flags nobody asked for (a typo must not be silently ignored).
    public func rejectUnknownFlags() throws(SettingsError) {
        let unknown = Set(flags.keys).subtracting(consumed).sorted()
        if let first = unknown.first { throw SettingsError("unknown flag --\(first); see --help") }
    }

    /// `METERING_HOME`, absolute.
    public mutating func home() -> String {
        let home = string("home", "METERING_HOME", default: "./.metering")
        return Self.absolute(home)
    }

    public static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let cwd = FileManager.default.currentDirectoryPath
        var joined = cwd + "/" + path
        while joined.hasSuffix("/.") { joined.removeLast(2) }
        return (joined as NSString).standardizingPath
    }
}
