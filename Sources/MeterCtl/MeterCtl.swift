import Daemon
import Foundation
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meterctl`: the command line for people (docs/DESIGN.md §6). Every command is declared once
/// (`Command`: name, summary, options with their variables and defaults, examples, the code that
/// runs it); the parser, `--help`, `meterctl help` and the bash completion are all made from
/// those declarations.
enum MeterCtl {
    /// Every command, in the order `meterctl --help` lists them. A new command is declared beside
    /// its code (`static let command = Command(...)`) and added here; nothing else lists it.
    static let commands: [Command] = [
        Demo.command, Up.command, Send.command, Tail.command, StatusCommand.command, AdvanceClock.command,
        AggregatorCommands.pendingCommand, AggregatorCommands.stateCommand, AggregatorCommands.statusCommand, SubmitterStatus.command,
        ReconcileCommand.command,
        Ping.command, QueryCommands.runRateCommand, QueryCommands.usageCommand, QueryCommands.eventsCommand,
        QueryCommands.submissionsCommand, QueryCommands.breakdownCommand, QueryCommands.subscriptionsCommand, QueryStatus.command,
        TokenCommand.command,
        UnprocessableCommand.command, CredentialsCommand.command, NotificationsCommand.command, AdaptersCommand.command,
        ConnectorCommand.command,
        RecoveryCommands.logCommand,
        RecoveryCommands.rebuildCommand, HelpCommand.command, HelpCommand.completion,
    ]

    /// The whole tree: `meterctl` and its commands.
    static let root = Command(
        name: "meterctl", summary: "the command line of the metering stack", options: [Option("version", .flag, "print the version")],
        subcommands: commands)

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// The command `arguments` name (the longest run of leading words that are subcommands), its
    /// path (`meterctl send usage`) and the arguments after it.
    static func resolve(_ arguments: [String]) -> (command: Command, path: String, rest: [String]) {
        var command = root
        var path = "meterctl"
        var index = 0
        while index < arguments.count, let sub = command.subcommand(arguments[index]) {
            command = sub
            path += " " + sub.name
            index += 1
        }
        return (command, path, Array(arguments[index...]))
    }

    /// Runs the command line `arguments` (without the program name); the exit status: 0, 1 when
    /// the command failed, 64 when the command line does not fit the command.
    static func run(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) -> Int32 {
        let (command, path, rest) = resolve(arguments)
        let options = rest.prefix { $0 != "--" }
        do {
            if options.contains("--help") || options.contains("-h") {
                print(command.name == root.name ? Help.overview(root) : Help.text(command, path: path), terminator: "")
                return 0
            }
            if command.name == root.name {
                if rest == ["--version"] {
                    print(Version.line("meterctl"))
                    return 0
                }
                guard let first = rest.first else {
                    FileHandle.standardError.write(Data(Help.overview(root).utf8))
                    return 64
                }
                throw UsageError(
                    first.hasPrefix("-")
                        ? "unknown option \(first) for 'meterctl'; see meterctl --help"
                        : "unknown command \"\(first)\"; see meterctl --help")
            }
            guard let run = command.run else {
                let names = Invocation.list(command.subcommands.map(\.name))
                if let first = rest.first, !first.hasPrefix("-") {
                    throw UsageError("unknown command '\(path) \(first)'; \(path) takes \(names); see \(path) --help")
                }
                throw UsageError("'\(path)' needs a command: \(names); see \(path) --help")
            }
            try run(try Invocation(command, path: path, arguments: rest, environment: environment))
            return 0
        } catch let failure as UsageError {
            FileHandle.standardError.write(Data("meterctl: \(failure)\n".utf8))
            return 64
        } catch let failure as SettingsError {
            FileHandle.standardError.write(Data("meterctl: \(failure)\n".utf8))
            return 64
        } catch {
            FileHandle.standardError.write(Data("meterctl: \(error)\n".utf8))
            return 1
        }
    }

    /// Connects, turning a missing socket into advice.
    static func connect(_ path: String) throws -> UnixClient {
        do {
            return try UnixClient(path: path)
        } catch {
            let process =
                path.hasSuffix("aggregator.sock")
                ? "meter-aggregator"
                : path.hasSuffix("query.sock") ? "meter-query" : path.hasSuffix("notifier.sock") ? "meter-notifier" : "meter-ingest"
            throw Failure("cannot reach \(process) at \(path) (\(error)); is it running? (METERING_HOME or --home chooses the stack)")
        }
    }

    static func call(_ client: UnixClient, _ request: Request) throws -> JSONObject {
        do {
            return try client.call(request)
        } catch {
            throw Failure("\(request.op) failed: \(error)")
        }
    }

    static func printJSON(_ value: JSONValue) {
        print(JSONWriter.string(value))
    }
}
