import Foundation
import Transport
import Wire

/// `meterctl unprocessable`: the records the aggregator could not bill, counted per subscription
/// and reason, with the latest records in full on request. Reads every page of the aggregator's
/// `ledger` op, so the whole listing never has to fit in one answer.
enum UnprocessableCommand {
    static let examples = Option("examples", .flag, "also list the latest unbillable records in full")

    static let command = Command(
        name: "unprocessable",
        summary: "records the aggregator could not bill, counted per subscription and reason, the latest in full (aggregator)",
        details:
            "Usage for an unknown subscription or meter is kept, never dropped: counted per subscription and reason, with the latest 100 records of each partition in full. RemoveUnprocessedMessages (admin socket) removes them.",
        options: [examples, .json, .home, .aggregatorSocket], examples: ["meterctl unprocessable --examples"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let client = try MeterCtl.connect(invocation.path(.aggregatorSocket)!)
        let (groups, records) = try pages(client, list: "unprocessable")
        let wantsExamples = invocation.flag(examples)
        let examples = wantsExamples ? try pages(client, list: "examples").entries : []
        if invocation.flag(.json) {
            var members: [JSONObject.Member] = [.init("records", .number(String(records))), .init("unprocessable", .array(groups))]
            if wantsExamples { members.append(.init("examples", .array(examples))) }
            MeterCtl.printJSON(.object(JSONObject(members)))
            return
        }
        print(text(groups: groups, records: records, examples: wantsExamples ? examples : nil), terminator: "")
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
