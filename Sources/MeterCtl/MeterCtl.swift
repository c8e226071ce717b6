import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meterctl`: the command line for people (DESIGN.md §6).
enum MeterCtl {
    static let usage = """
        meterctl: talk to the metering stack.

        Usage:
          meterctl demo [--home DIR] [--days N]  a realistic run on the manual clock: 24 subscriptions,
                                                   5 weeks of usage, a summary of meters and marketplace
          meterctl up [--home DIR]               start the whole stack (ingest, aggregator, query, marketplace
                                                   emulator, submitter), supervised; Ctrl-C stops it
          meterctl send purchase --resource-id ID [--resource-uri URI] --plan-file FILE | --plan-id P --dimension METER=DIM[:INCLUDED]...
                                 [--start TIME] [--renewal Monthly|Annually|2-years|3-years] [--id KEY]
          meterctl send usage    --resource-id ID | --resource-uri URI --meter NAME --quantity Q
                                 [--timestamp TIME] [--property KEY=VALUE]... [--id KEY]
          meterctl send delete   --resource-id ID | --resource-uri URI [--id KEY]
          meterctl send --file FILE [--admin]      messages from a JSON file (one message or an array)
          meterctl tail [--from-start] [--partition P] [--json]
                                                   follow the log, one line per record
          meterctl status [--json]                 partitions, sequence numbers, sizes
          meterctl advance-clock TIME              move the manual clock (admin socket)
          meterctl pending [--max N] [--json]      items ready to report to the marketplace (aggregator)
          meterctl state --resource-id ID | --resource-uri URI
                                                   one subscription's meters (aggregator)
          meterctl aggregator-status [--json]      the aggregator's partitions, lag, pending, at risk
          meterctl unprocessable [--examples] [--json]
                                                   records that could not be billed, counted per subscription
                                                   and reason, with the latest in full (aggregator)
          meterctl submitter-status [--json] [--max-age SECONDS]
                                                   the submitter's passes, outcomes, retries, at risk;
                                                   with --max-age, fails when its last pass is older
          meterctl ping [--socket PATH | --url URL] [--timeout SECONDS]
                                                   exits 0 when the process on PATH (default: ingest's
                                                   client socket) or at URL answers, 1 when not (health checks)
          meterctl runrate --resource-id ID | --resource-uri URI [--json]
                                                   included, consumed, remaining, overage, projection (query)
          meterctl usage [--start-id N] [--batch-size K] [--json]
                                                   closed-hour usage records, gap-free ids (query)
          meterctl events --resource-id ID | --resource-uri URI [--from TIME] [--to TIME] [--after SEQ] [--max N] [--json]
                                                   the subscription's recorded events: the audit trail (query)
          meterctl submissions [--start-id N] [--batch-size K] [--status S] [--json]
                                                   the marketplace ledger: every outcome (query)
          meterctl breakdown --resource-id ID --meter NAME --property KEY [--json]
                                                   the period's usage per property value (query)
          meterctl subscriptions [--after KEY] [--max N] [--json]
                                                   the subscriptions held, by key (query)
          meterctl token --resource-id ID | --resource-uri URI [--ttl SECONDS] [--url BASE]
                                                   a run-rate page token (default 3600 s, at most 31 days);
                                                   with --url, also the page's link BASE/#token=...
          meterctl credentials create --resource-uri URI | --resource-id ID [...] [--allow TYPES] [--expires TIME|90d]
                                                   a managed app's credential for meter-frontdoor (the key is shown once)
          meterctl credentials list [--json]       credentials, their resources, status and expiry
          meterctl credentials revoke ID           refused by meter-frontdoor from its next request
          meterctl connector status [--json] [--status-file FILE]
                                                   meter-connector's sources: watermark, lag, records
                                                   read/skipped/malformed (with examples), late, errors
          meterctl log check                       whether ingest will start on the log (run with ingest stopped)
          meterctl log accept-loss [--yes]         cut what a damaged log lost, record the loss, give the log a
                                                   new identity (with ingest stopped; see docs/OPERATIONS.md)
          meterctl rebuild aggregator [--partitions 0,1] | query [--query-data DIR]
                                                   move a stopped process's state aside; it folds the log from
                                                   the start at its next start

        Common settings (flag, environment variable, default):
          --home          METERING_HOME                 ./.metering
          --socket        METERING_INGEST_SOCKET        $METERING_HOME/run/ingest.sock
          --admin-socket  METERING_INGEST_ADMIN_SOCKET  $METERING_HOME/run/ingest-admin.sock
          --aggregator-socket METERING_AGGREGATOR_SOCKET $METERING_HOME/run/aggregator.sock
          --query-socket  METERING_QUERY_SOCKET         $METERING_HOME/run/query.sock
          --token-secret-file METERING_QUERY_TOKEN_SECRET_FILE $METERING_HOME/secrets/query-token.key
          --credentials   METERING_FRONTDOOR_CREDENTIALS $METERING_HOME/data/frontdoor/credentials.json
        """

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func run(_ arguments: [String]) -> Int32 {
        guard let command = arguments.first, command != "--help", command != "help", command != "-h" else {
            print(usage)
            return arguments.isEmpty ? 64 : 0
        }
        do {
            switch command {
            case "send": try Send.run(Array(arguments.dropFirst()))
            case "up": try Up.run(Array(arguments.dropFirst()))
            case "demo": try Demo.run(Array(arguments.dropFirst()))
            case "tail": try Tail.run(Array(arguments.dropFirst()))
            case "status": try StatusCommand.run(Array(arguments.dropFirst()))
            case "advance-clock": try AdvanceClock.run(Array(arguments.dropFirst()))
            case "pending": try AggregatorCommands.pending(Array(arguments.dropFirst()))
            case "state": try AggregatorCommands.state(Array(arguments.dropFirst()))
            case "aggregator-status": try AggregatorCommands.status(Array(arguments.dropFirst()))
            case "unprocessable": try UnprocessableCommand.run(Array(arguments.dropFirst()))
            case "submitter-status": try SubmitterStatus.run(Array(arguments.dropFirst()))
            case "runrate": try QueryCommands.runRate(Array(arguments.dropFirst()))
            case "usage": try QueryCommands.usage(Array(arguments.dropFirst()))
            case "events": try QueryCommands.events(Array(arguments.dropFirst()))
            case "submissions": try QueryCommands.submissions(Array(arguments.dropFirst()))
            case "breakdown": try QueryCommands.breakdown(Array(arguments.dropFirst()))
            case "subscriptions": try QueryCommands.subscriptions(Array(arguments.dropFirst()))
            case "token": try TokenCommand.run(Array(arguments.dropFirst()))
            case "ping": try Ping.run(Array(arguments.dropFirst()))
            case "credentials": try CredentialsCommand.run(Array(arguments.dropFirst()))
            case "connector": try ConnectorCommand.run(Array(arguments.dropFirst()))
            case "log": try RecoveryCommands.log(Array(arguments.dropFirst()))
            case "rebuild": try RecoveryCommands.rebuild(Array(arguments.dropFirst()))
            default: throw Failure("unknown command \"\(command)\"; run meterctl --help")
            }
            return 0
        } catch let failure as Failure {
            FileHandle.standardError.write(Data("meterctl: \(failure)\n".utf8))
            return 1
        } catch let failure as SettingsError {
            FileHandle.standardError.write(Data("meterctl: \(failure)\n".utf8))
            return 64
        } catch {
            FileHandle.standardError.write(Data("meterctl: \(error)\n".utf8))
            return 1
        }
    }

    /// Splits `--flag value` arguments, keeping repeated flags and bare words.
    struct Arguments {
        var values: [String: [String]] = [:]
        var switches: Set<String> = []
        var words: [String] = []
        private var used: Set<String> = []

        init(_ arguments: [String], switches known: Set<String>) throws {
            var index = 0
            while index < arguments.count {
                let argument = arguments[index]
                if argument.hasPrefix("--") {
                    var name = String(argument.dropFirst(2))
                    if let equals = name.firstIndex(of: "=") {
                        values[String(name[..<equals]), default: []].append(String(name[name.index(after: equals)...]))
                        name = String(name[..<equals])
                    } else if known.contains(name) {
                        switches.insert(name)
                    } else {
                        guard index + 1 < arguments.count else { throw Failure("--\(name) needs a value") }
                        values[name, default: []].append(arguments[index + 1])
                        index += 1
                    }
                } else {
                    words.append(argument)
                }
                index += 1
            }
        }

        mutating func value(_ name: String) -> String? {
            used.insert(name)
            return values[name]?.last
        }

        mutating func all(_ name: String) -> [String] {
            used.insert(name)
            return values[name] ?? []
        }

        mutating func flag(_ name: String) -> Bool {
            used.insert(name)
            return switches.contains(name)
        }

        /// The connection settings, resolved like the servers resolve them.
        mutating func sockets() throws -> (client: String, admin: String, aggregator: String, query: String) {
            var forwarded: [String] = []
            for name in ["home", "socket", "admin-socket", "aggregator-socket", "query-socket"] {
                if let value = value(name) { forwarded += ["--\(name)", value] }
            }
            var settings = try Settings(arguments: forwarded)
            let home = settings.home()
            let client = Settings.absolute(settings.string("socket", "METERING_INGEST_SOCKET", default: home + "/run/ingest.sock"))
            let admin = Settings.absolute(
                settings.string("admin-socket", "METERING_INGEST_ADMIN_SOCKET", default: home + "/run/ingest-admin.sock"))
            let aggregator = Settings.absolute(
                settings.string("aggregator-socket", "METERING_AGGREGATOR_SOCKET", default: home + "/run/aggregator.sock"))
            let query = Settings.absolute(settings.string("query-socket", "METERING_QUERY_SOCKET", default: home + "/run/query.sock"))
            return (client, admin, aggregator, query)
        }

        func rejectUnused() throws {
            let unknown = Set(values.keys).union(switches).subtracting(used).sorted()
            if let first = unknown.first { throw Failure("unknown option --\(first); run meterctl --help") }
        }
    }

    /// Connects, turning a missing socket into advice.
    static func connect(_ path: String) throws -> UnixClient {
        do {
            return try UnixClient(path: path)
        } catch {
            let process =
                path.hasSuffix("aggregator.sock") ? "meter-aggregator" : path.hasSuffix("query.sock") ? "meter-query" : "meter-ingest"
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
