import Daemon
import Foundation
import Wire

/// One option of a command: what the parser accepts, what `--help` and the bash completion show,
/// and where its value comes from when it is not given (its environment variable, then its
/// default). Declared once, so help, completion and parsing cannot disagree.
struct Option: Sendable {
    /// What follows the option on the command line.
    enum Kind: Sendable, Equatable {
        /// Nothing: `--json`.
        case flag
        /// One value, named by the placeholder: `--meter NAME`. Given twice is an error.
        case value(String)
        /// A value that may be given again and again: `--property KEY=VALUE`...
        case repeated(String)
    }

    /// Where the value comes from when the option is not given, after its environment variable.
    enum Fallback: Sendable {
        /// Nowhere: the option is absent.
        case none
        /// This value.
        case value(String)
        /// This path under the stack's home (`$METERING_HOME/<path>`).
        case inHome(String)
        /// Worked out by the command; the text says how, for the help.
        case computed(String)
    }

    /// The name without dashes: `resource-id`.
    let name: String
    let kind: Kind
    /// One line for the help.
    let summary: String
    /// The environment variable read when the option is not given.
    var environment: String?
    var fallback: Fallback = .none
    /// The only values allowed, when the set is closed (checked by the parser, offered by completion).
    var choices: [String] = []

    init(
        _ name: String, _ kind: Kind, _ summary: String, environment: String? = nil, fallback: Fallback = .none,
        choices: [String] = []
    ) {
        self.name = name
        self.kind = kind
        self.summary = summary
        self.environment = environment
        self.fallback = fallback
        self.choices = choices
    }

    /// The placeholder of its value, nil for a flag.
    var placeholder: String? {
        switch kind {
        case .flag: return nil
        case .value(let text), .repeated(let text): return text
        }
    }

    /// Whether its value is a path, for the completion.
    var takesPath: Bool { ["FILE", "PATH", "DIR"].contains(placeholder ?? "") }
}

/// A word a command takes in a fixed place (`meterctl advance-clock TIME`).
struct Argument: Sendable {
    /// The placeholder: `TIME`.
    let name: String
    let summary: String
    /// Whether the command runs without it.
    var optional = false
    /// The only values allowed, when the set is closed (checked by the parser, offered by completion).
    var choices: [String] = []
    /// Whether it takes every remaining word (the last argument only).
    var many = false
}

/// One command or subcommand of `meterctl`: its name, what it does, its options and an example,
/// and the code that runs it. Help, completion and the parser are all made from these.
struct Command: Sendable {
    let name: String
    /// One line: what it does.
    let summary: String
    /// Paragraphs for `--help`, after the usage line.
    var details: String = ""
    var arguments: [Argument] = []
    var options: [Option] = []
    /// Whole command lines, as a user would type them.
    var examples: [String] = []
    var subcommands: [Command] = []
    /// Runs the command; nil for a command that only groups subcommands.
    var run: (@Sendable (Invocation) throws -> Void)?

    /// The subcommand called `name`.
    func subcommand(_ name: String) -> Command? { subcommands.first { $0.name == name } }
}

/// A command line that does not fit the command: `meterctl` prints it and exits 64.
struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A command line parsed against its command's declaration: the options given, the words in
/// their places, and the values of absent options from their environment variables and defaults.
struct Invocation: Sendable {
    let command: Command
    /// `meterctl send usage`.
    let path: String
    /// The words after the command's name that are not options, in order.
    let words: [String]
    let environment: [String: String]
    private let values: [String: [String]]
    private let switches: Set<String>

    /// Parses `arguments` (what follows the command's name) against `command`. `-h`/`--help`
    /// are answered by the caller before this; an option the command does not declare, a value
    /// missing or outside its choices, a value given twice, or a word too many is a `UsageError`.
    init(_ command: Command, path: String, arguments: [String], environment: [String: String]) throws(UsageError) {
        self.command = command
        self.path = path
        self.environment = environment
        let advice = "see \(path) --help"
        var values: [String: [String]] = [:]
        var switches: Set<String> = []
        var words: [String] = []
        var index = 0
        var optionsEnded = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if optionsEnded || !argument.hasPrefix("--") || argument == "-" {
                words.append(argument)
                continue
            }
            if argument == "--" {
                optionsEnded = true
                continue
            }
            var name = String(argument.dropFirst(2))
            var inline: String?
            if let equals = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let option = command.options.first(where: { $0.name == name }) else {
                throw UsageError("unknown option --\(name) for '\(path)'; \(advice)")
            }
            guard let placeholder = option.placeholder else {
                if inline != nil { throw UsageError("--\(name) takes no value; \(advice)") }
                switches.insert(name)
                continue
            }
            let value: String
            if let inline {
                value = inline
            } else {
                // A value never starts with "--": `--meter --quantity 3` lacks the meter.
                guard index < arguments.count, !arguments[index].hasPrefix("--") else {
                    throw UsageError("--\(name) needs a value (\(placeholder)); \(advice)")
                }
                value = arguments[index]
                index += 1
            }
            if !option.choices.isEmpty && !option.choices.contains(value) {
                throw UsageError("--\(name) takes \(Self.list(option.choices)), not \"\(value)\"; \(advice)")
            }
            if option.kind != .repeated(placeholder) && values[name] != nil {
                throw UsageError("--\(name) is given twice; \(advice)")
            }
            values[name, default: []].append(value)
        }
        let required = command.arguments.filter { !$0.optional }.count
        for (argument, word) in zip(command.arguments, words) where !argument.choices.isEmpty && !argument.choices.contains(word) {
            throw UsageError("\(argument.name) takes \(Self.list(argument.choices)), not \"\(word)\"; \(advice)")
        }
        if words.count > command.arguments.count && command.arguments.last?.many != true {
            let extra = words[command.arguments.count]
            if !command.subcommands.isEmpty && command.arguments.isEmpty {
                throw UsageError("unknown command '\(path) \(extra)'; \(advice)")
            }
            throw UsageError("unexpected argument \"\(extra)\" for '\(path)'; \(advice)")
        }
        if words.count < required {
            throw UsageError("'\(path)' needs \(command.arguments[words.count].name); \(advice)")
        }
        self.values = values
        self.switches = switches
        self.words = words
    }

    /// "a, b or c".
    static func list(_ items: [String]) -> String {
        items.count < 2 ? items.joined() : items.dropLast().joined(separator: ", ") + " or " + items.last!
    }

    private func declared(_ option: Option) -> Option {
        // Asking for an option the command does not declare is a programming error: its help
        // would not show it. The tests run every command's declaration, so this never ships.
        assert(command.options.contains { $0.name == option.name }, "\(path) reads undeclared --\(option.name)")
        return option
    }

    /// The value given on the command line only.
    func given(_ option: Option) -> String? { values[declared(option).name]?.last }

    /// Every value given for a repeated option, in order; none given, its default (if any).
    func all(_ option: Option) -> [String] { values[declared(option).name] ?? resolved(option).map { [$0] } ?? [] }

    /// Whether a flag was given.
    func flag(_ option: Option) -> Bool { switches.contains(declared(option).name) }

    /// The option's value: given, else its environment variable (when set and not empty), else
    /// its default (`.computed` defaults are the command's to work out: nil here).
    func value(_ option: Option) -> String? { resolved(declared(option)) }

    private func resolved(_ option: Option) -> String? {
        if let given = values[option.name]?.last { return given }
        if let variable = option.environment, let value = environment[variable], !value.isEmpty { return value }
        switch option.fallback {
        case .none, .computed: return nil
        case .value(let value): return value
        case .inHome(let relative): return home + "/" + relative
        }
    }

    /// The option's value as an absolute path.
    func path(_ option: Option) -> String? { value(option).map(Settings.absolute) }

    /// The stack's home, absolute: `--home`, `METERING_HOME`, or `./.metering` (every path
    /// default under the home follows it, whether or not the command declares `--home`).
    var home: String { Settings.absolute(resolved(.home) ?? ".metering") }

    /// A whole number of at least `minimum` (and at most `maximum`) from the option, if given.
    func number(_ option: Option, minimum: Int = 0, maximum: Int = Int.max) throws(UsageError) -> Int? {
        guard let text = value(option) else { return nil }
        guard let number = Int(text), number >= minimum, number <= maximum else {
            let range = maximum == Int.max ? "of at least \(minimum)" : "from \(minimum) to \(maximum)"
            throw UsageError("--\(option.name) takes a whole number \(range), not \"\(text)\"; see \(path) --help")
        }
        return number
    }
}
