import Foundation
import StackTestSupport
import Testing
import Wire

@testable import MeterCtl

/// The command line as declared: every command's help, its unknown options, the completion and
/// the examples, checked against the declarations the parser reads, through the real executable.
@Suite("meterctl's commands, help and completion")
struct CommandLineTests {
    /// Every command of the tree with its words (`["send", "usage"]`), the root excluded.
    static let everyCommand: [(words: [String], command: Command)] = {
        var all: [([String], Command)] = []
        func visit(_ command: Command, _ words: [String]) {
            if !words.isEmpty { all.append((words, command)) }
            for sub in command.subcommands { visit(sub, words + [sub.name]) }
        }
        visit(MeterCtl.root, [])
        return all
    }()

    static func meterctl(_ arguments: [String], input: String? = nil) throws -> TestCommand.Outcome {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        // A home nothing runs in: no command here may reach (or start) a stack.
        environment["METERING_HOME"] = FileManager.default.temporaryDirectory.appendingPathComponent("meterctl-no-stack").path
        return try TestCommand.run(Binaries.path("meterctl"), arguments, environment: environment, timeout: 30)
    }

    @Test("the tree holds every command a newcomer reads about, each with a summary and an example, options named once")
    func declarations() {
        let paths = Self.everyCommand.map { $0.words.joined(separator: " ") }
        for expected in [
            "demo", "up", "send", "send purchase", "send usage", "send delete", "tail", "status", "advance-clock", "pending", "state",
            "aggregator-status", "submitter-status", "ping", "runrate", "usage", "events", "submissions", "breakdown", "subscriptions",
            "query-status",
            "token", "credentials create", "credentials list", "credentials revoke", "connector status", "help", "completion",
        ] {
            #expect(paths.contains(expected), "\(expected)")
        }
        for (words, command) in Self.everyCommand {
            #expect(!command.summary.isEmpty, "\(words)")
            let names = command.options.map(\.name)
            #expect(Set(names).count == names.count, "\(words) declares an option twice: \(names)")
            #expect(!names.contains("help"), "\(words)")
            if command.run != nil { #expect(!command.examples.isEmpty, "\(words) has no example") }
        }
    }

    @Test("--help, -h and 'meterctl help' answer every command with exit 0, listing each option, its variable and default")
    func helpForEveryCommand() throws {
        for (words, command) in Self.everyCommand {
            let long = try Self.meterctl(words + ["--help"])
            #expect(long.status == 0, "\(words): \(long.errors)")
            let text = long.output
            #expect(text.hasPrefix("meterctl \(words.joined(separator: " ")): \(command.summary)"), "\(words)")
            for option in command.options {
                #expect(text.contains("--\(option.name)"), "\(words) --help lacks --\(option.name)")
                if let variable = option.environment { #expect(text.contains(variable), "\(words) --help lacks \(variable)") }
                if case .value(let value) = option.fallback { #expect(text.contains("default: \(value)"), "\(words) --\(option.name)") }
            }
            for sub in command.subcommands { #expect(text.contains(sub.name), "\(words) --help lacks \(sub.name)") }
            for example in command.examples { #expect(text.contains(example), "\(words)") }
            let short = try Self.meterctl(words + ["-h"])
            #expect(short.status == 0 && short.output == text, "\(words) -h")
            let help = try Self.meterctl(["help"] + words)
            #expect(help.status == 0 && help.output == text, "meterctl help \(words)")
        }
    }

    @Test("an unknown option fails with exit 64, naming the option and the command, for every command that runs")
    func unknownOptions() throws {
        for (words, command) in Self.everyCommand where command.run != nil {
            let path = (["meterctl"] + words).joined(separator: " ")
            let outcome = try Self.meterctl(words + ["--bogus"])
            #expect(outcome.status == 64, "\(words)")
            #expect(outcome.output.isEmpty, "\(words)")
            #expect(outcome.errors.contains("unknown option --bogus for '\(path)'; see \(path) --help"), "\(words): \(outcome.errors)")
        }
    }

    @Test("a value option without its value, a flag with one, and a word too many are named, not guessed")
    func malformedLines() throws {
        let cases: [([String], String)] = [
            (["send", "usage", "--meter"], "--meter needs a value (NAME)"),
            (["send", "usage", "--meter", "--quantity", "3"], "--meter needs a value (NAME)"),
            (["status", "--json=yes"], "--json takes no value"),
            (["status", "extra"], "unexpected argument \"extra\" for 'meterctl status'"),
            (["send", "purchase", "--renewal", "Weekly"], "--renewal takes Monthly, Annually, 2-years or 3-years, not \"Weekly\""),
            (["send", "usage", "--meter", "a", "--meter", "b"], "--meter is given twice"),
            (["advance-clock"], "'meterctl advance-clock' needs TIME"),
            (["credentials"], "'meterctl credentials' needs a command: create, list or revoke"),
            (["credentials", "remove"], "unknown command 'meterctl credentials remove'"),
            (["bogus"], "unknown command \"bogus\""),
            (["help", "bogus"], "no command or topic \"bogus\""),
        ]
        for (arguments, message) in cases {
            let outcome = try Self.meterctl(arguments)
            #expect(outcome.status == 64, "\(arguments)")
            #expect(outcome.errors.contains(message), "\(arguments): \(outcome.errors)")
        }
    }

    @Test("meterctl --help lists every command, the topics and METERING_LOG_LEVEL; without arguments it prints the same and fails")
    func overview() throws {
        let help = try Self.meterctl(["--help"])
        #expect(help.status == 0)
        for (words, command) in Self.everyCommand where command.run != nil {
            #expect(help.output.contains("  \(words.joined(separator: " "))  "), "\(words)")
        }
        for topic in ["plans", "messages", "METERING_LOG_LEVEL", "METERING_HOME", "$METERING_HOME/log/"] {
            #expect(help.output.contains(topic), "\(topic)")
        }
        let bare = try Self.meterctl([])
        #expect(bare.status == 64)
        #expect(bare.errors == help.output)
    }

    @Test("the help topics describe the plan and message formats")
    func topics() throws {
        let plans = try Self.meterctl(["help", "plans"])
        #expect(plans.status == 0)
        for word in ["billingDimensions", "\"Infinite\"", "waterfall", "threshold", "aggregation", "--plan-file"] {
            #expect(plans.output.contains(word), "\(word)")
        }
        let messages = try Self.meterctl(["help", "messages"])
        #expect(messages.status == 0)
        for word in [
            "SubscriptionPurchased", "UsageReported", "SubscriptionDeleted", "RemoveUnprocessedMessages", "idempotency", "unprocessable",
        ] {
            #expect(messages.output.contains(word), "\(word)")
        }
    }

    @Test("meterctl --version prints the version and the log format version")
    func version() throws {
        let outcome = try Self.meterctl(["--version"])
        #expect(outcome.status == 0)
        #expect(outcome.output == "meterctl \(Version.release) (log format \(Version.logFormat))\n")
    }

    @Test(
        "every server answers --version with the same version line and -h with its settings",
        arguments: [
            "meter-ingest", "meter-aggregator", "meter-submitter", "meter-query", "meter-marketplace-emulator", "meter-connector",
            "meter-frontdoor", "meter-notifier",
        ])
    func serverVersions(_ name: String) throws {
        let version = try TestCommand.run(Binaries.path(name), ["--version"], environment: ["PATH": "/usr/bin:/bin"], timeout: 30)
        #expect(version.status == 0, "\(version.errors)")
        #expect(version.output == Version.line(name) + "\n")
        let help = try TestCommand.run(Binaries.path(name), ["-h"], environment: ["PATH": "/usr/bin:/bin"], timeout: 30)
        #expect(help.status == 0, "\(help.errors)")
        #expect(help.output.contains("METERING_") && help.output.contains("--version"))
    }

    /// The words of a shell command line (double and single quotes kept together), from
    /// `meterctl` on, up to a pipe or a redirection: what the example asks meterctl to parse.
    static func words(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var quote: Character?
        var started = false
        for character in line {
            if let open = quote {
                if character == open { quote = nil } else { current.append(character) }
                continue
            }
            switch character {
            case "\"", "'":
                quote = character
                started = true
            case " ":
                if started { words.append(current) }
                current = ""
                started = false
            default:
                current.append(character)
                started = true
            }
        }
        if started { words.append(current) }
        guard let first = words.firstIndex(where: { $0 == "meterctl" || $0.hasSuffix("(meterctl") }) else { return [] }
        var rest = Array(words[(first + 1)...])
        if let end = rest.firstIndex(where: { ["|", ">", ">>"].contains($0) || $0.hasSuffix(")") && !$0.contains("(") }) {
            rest = Array(rest[..<end]) + (rest[end].hasSuffix(")") && rest[end] != ")" ? [String(rest[end].dropLast())] : [])
        }
        return rest
    }

    @Test("every example in the help parses with the declarations it illustrates")
    func examplesParse() throws {
        var checked = 0
        for (words, command) in Self.everyCommand {
            for example in command.examples {
                let arguments = Self.words(example)
                try #require(!arguments.isEmpty, "\(example)")
                let (found, path, rest) = MeterCtl.resolve(arguments)
                #expect(path == (["meterctl"] + words).joined(separator: " "), "\(example)")
                #expect(throws: Never.self, "\(example)") { try Invocation(found, path: path, arguments: rest, environment: [:]) }
                checked += 1
            }
        }
        #expect(checked >= Self.everyCommand.count)
    }

    /// What bash offers after `line` (the last word being completed), with the generated script.
    static func complete(_ script: String, _ line: [String]) throws -> [String] {
        let words = (["meterctl"] + line).map { "'\($0)'" }.joined(separator: " ")
        let program = """
            \(script)
            COMP_WORDS=(\(words)); COMP_CWORD=\(line.count); _meterctl; printf '%s\\n' "${COMPREPLY[@]}"
            """
        let outcome = try TestCommand.run("/bin/bash", ["--norc", "-c", program], environment: ["PATH": "/usr/bin:/bin"], timeout: 30)
        #expect(outcome.status == 0, "\(outcome.errors)")
        return outcome.output.split(separator: "\n").map(String.init)
    }

    @Test("bash completion, made from the same declarations, offers every command, subcommand and option, and choices")
    func completion() throws {
        let outcome = try Self.meterctl(["completion", "bash"])
        #expect(outcome.status == 0)
        let script = outcome.output
        #expect(script.contains("complete -F _meterctl meterctl"))
        let top = try Self.complete(script, [""])
        for command in MeterCtl.root.subcommands { #expect(top.contains(command.name), "\(command.name)") }
        #expect(top.contains("--version"))
        for (words, command) in Self.everyCommand {
            let offered = try Self.complete(script, words + ["-"])
            for option in command.options { #expect(offered.contains("--\(option.name)"), "\(words) --\(option.name)") }
            if !command.subcommands.isEmpty {
                let subcommands = try Self.complete(script, words + [""])
                for sub in command.subcommands { #expect(subcommands.contains(sub.name), "\(words) \(sub.name)") }
            }
        }
        #expect(try Self.complete(script, ["send", "purchase", "--renewal", ""]) == ["Monthly", "Annually", "2-years", "3-years"])
        #expect(try Self.complete(script, ["help", "pl"]) == ["plans"])
        #expect(try Self.complete(script, ["completion", ""]).contains("bash"))
    }
}
