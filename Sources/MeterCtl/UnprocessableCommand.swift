import Foundation
import Wire

/// `meterctl unprocessable`: the records the aggregator could not bill, counted per subscription
/// and reason, with the latest records in full on request. Reads every page of the aggregator's
/// `ledger` op, so the whole listing never has to fit in one answer.
enum UnprocessableCommand {
    static let usage = "meterctl unprocessable [--examples] [--json] [--home DIR] [--aggregator-socket PATH]"

    /// What the command line asked for.
    struct Options {
        var json = false
        var examples = false
        /// `--home` and `--aggregator-socket`, passed on to the settings as given.
        var settings: [String] = []

        init(_ arguments: [String]) throws {
            var index = 0
            while index < arguments.count {
                let argument = arguments[index]
                index += 1
                switch argument {
                case "--json": json = true
                case "--examples": examples = true
                case "--home", "--aggregator-socket":
                    guard index < arguments.count else { throw MeterCtl.Failure("\(argument) needs a value") }
                    settings += [argument, arguments[index]]
                    index += 1
                default:
                    if let equals = argument.firstIndex(of: "="),
                        ["--home", "--aggregator-socket"].contains(String(argument[..<equals]))
                    {
                        settings += [String(argument[..<equals]), String(argument[argument.index(after: equals)...])]
                    } else {
                        throw MeterCtl.Failure("unknown argument \"\(argument)\"; usage: \(UnprocessableCommand.usage)")
                    }
                }
            }
        }

        /// The aggregator's socket, resolved as the aggregator resolves it.
        func socket() throws -> String {
            var resolved = try Settings(arguments: settings)
            let home = resolved.home()
            return Settings.absolute(
                resolved.string("aggregator-socket", "METERING_AGGREGATOR_SOCKET", default: home + "/run/aggregator.sock"))
        }
    }

    static func run(_ arguments: [String]) throws {
        let options = try Options(arguments)
        let client = try MeterCtl.connect(try options.socket())
        let (groups, records) = try pages(client, list: "unprocessable")
        let examples = options.examples ? try pages(client, list: "examples").entries : []
        if options.json {
            var members: [JSONObject.Member] = [.init("records", .number(String(records))), .init("unprocessable", .array(groups))]
            if options.examples { members.append(.init("examples", .array(examples))) }
            MeterCtl.printJSON(.object(JSONObject(members)))
            return
        }
        print(text(groups: groups, records: records, examples: options.examples ? examples : nil), terminator: "")
    }

    /// Every entry of `list`, page after page, and the `records` count of the first page.
    static func pages(_ client: UnixClient, list: String) throws -> (entries: [JSONValue], records: Int) {
        var entries: [JSONValue] = []
        var records = 0
        var after: JSONValue?
        repeat {
            var fields = JSONObject([.init("list", .string(list)), .init("max", 1000)])
            if let after { fields["after"] = after }
            let page = try MeterCtl.call(client, Request(op: "ledger", fields: fields))
            if after == nil { records = page["records"]?.intValue ?? 0 }
            entries += page[list]?.arrayValue ?? []
            // Not a ternary: `nil` would become JSON's null (JSONValue is nil-literal expressible).
            if let next = page["next"], next != .null { after = next } else { after = nil }
        } while after != nil
        return (entries, records)
    }

    /// The listing as people read it: one row per subscription and reason, then a summary line.
    static func text(groups: [JSONValue], records: Int, examples: [JSONValue]?) -> String {
        guard !groups.isEmpty else { return "no unprocessable records\n" }
        var rows = [["partition", "subscription", "reason", "count", "sequences", "latest reason"]]
        for group in groups {
            rows.append([
                AggregatorCommands.text(group["partition"]), group["subscription"]?.stringValue ?? "(other subscriptions)",
                AggregatorCommands.text(group["reason"]), AggregatorCommands.text(group["count"]),
                "\(AggregatorCommands.text(group["firstSequence"]))–\(AggregatorCommands.text(group["lastSequence"]))",
                AggregatorCommands.text(group["latestReason"]),
            ])
        }
        var out = Table.text(rows)
        out += "\(records) unprocessable records in \(groups.count) groups; RemoveUnprocessedMessages removes them\n"
        if let examples {
            out += "\nlatest records:\n"
            var lines = [["partition", "sequence", "enqueued", "reason"]]
            for example in examples {
                lines.append([
                    AggregatorCommands.text(example["partition"]), AggregatorCommands.text(example["sequence"]),
                    AggregatorCommands.text(example["enqueuedTime"]), AggregatorCommands.text(example["reason"]),
                ])
            }
            out += Table.text(lines)
        }
        return out
    }
}
