import Foundation
import Wire

/// `meterctl runrate`, `usage`, `events`, `submissions`, `breakdown`, `subscriptions`: what the
/// query service's read models answer, as tables (or `--json`).
enum QueryCommands {
    private static func text(_ value: JSONValue?) -> String { AggregatorCommands.text(value) }

    static let startId = Option("start-id", .value("N"), "the first record's id", fallback: .value("0"))
    static let batchSize = Option("batch-size", .value("K"), "records per page, 1 to 10000", fallback: .value("100"))
    static let status = Option(
        "status", .value("S"), "only outcomes whose marketplace status or settlement is S (Accepted, Conflict, Expired, ...)")
    static let filterId = Option("resource-id", .value("ID"), "only this subscription's records (by resourceId)")
    static let filterUri = Option("resource-uri", .value("URI"), "only this subscription's records (by resourceUri)")
    static let from = Option("from", .value("TIME"), "only events enqueued at or after TIME")
    static let to = Option("to", .value("TIME"), "only events enqueued before TIME")
    static let after = Option("after", .value("SEQ"), "continue after this sequence number (the previous page's 'more')")
    static let maxEvents = Option("max", .value("N"), "at most N events, 1 to 1000", fallback: .value("100"))
    static let meter = Option("meter", .value("NAME"), "the meter (required)")
    static let property = Option("property", .value("KEY"), "the property to group by, such as campaign (required)")
    static let afterKey = Option("after", .value("KEY"), "continue after this subscription key (the previous page's 'more')")
    static let maxSubscriptions = Option("max", .value("N"), "at most N subscriptions, 1 to 10000", fallback: .value("100"))

    /// The options every query command has.
    static let connection: [Option] = [.json, .home, .querySocket]

    static let runRateCommand = Command(
        name: "runrate", summary: "a subscription's run-rate: included, consumed, remaining, overage, projection (query)",
        details: "Per meter of the current billing period, and what the marketplace has pending, accepted or refused.",
        options: [.resourceId, .resourceUri] + connection, examples: ["meterctl runrate --resource-id sub-1"],
        run: { invocation in
            let response = try call(invocation, op: "runrate", try invocation.subscription())
            if !invocation.flag(.json) { print(runRateText(response), terminator: "") }
        })

    static let usageCommand = Command(
        name: "usage", summary: "closed-hour usage records, page by page, under ids every query replica shares (query)",
        details:
            "A record appears once its hour has closed in every partition; 'billed' is the overage reported for it. Ids below the first readable one have aged out (METERING_QUERY_USAGE_RETENTION_DAYS).",
        options: [startId, batchSize, filterId, filterUri] + connection,
        examples: ["meterctl usage --start-id 100 --batch-size 50", "meterctl usage --resource-id sub-1"],
        run: { try usage($0) })

    static let eventsCommand = Command(
        name: "events", summary: "a subscription's recorded events as appended: the audit trail (query)",
        details: "Marketplace outcomes show their dimension, hour, quantity and status.",
        options: [.resourceId, .resourceUri, from, to, after, maxEvents] + connection,
        examples: ["meterctl events --resource-id sub-1 --from 2024-03-01T00:00:00Z --max 20"],
        run: { try events($0) })

    static let submissionsCommand = Command(
        name: "submissions", summary: "the marketplace ledger: every outcome, page by page (query)",
        options: [startId, batchSize, status, filterId, filterUri] + connection,
        examples: ["meterctl submissions --status Conflict", "meterctl submissions --resource-id sub-1"],
        run: { try submissions($0) })

    static let breakdownCommand = Command(
        name: "breakdown", summary: "the period's usage of a meter per value of a property (query)",
        details: "Usage without the property (or beyond the 256 values told apart) is shown as one row, inside the total.",
        options: [.resourceId, .resourceUri, meter, property] + connection,
        examples: ["meterctl breakdown --resource-id sub-1 --meter email --property campaign"],
        run: { try breakdown($0) })

    static let subscriptionsCommand = Command(
        name: "subscriptions", summary: "the subscriptions held, by key, page by page (query)",
        options: [afterKey, maxSubscriptions] + connection, examples: ["meterctl subscriptions --max 20"],
        run: { try subscriptions($0) })

    /// Calls `op` on meter-query with `fields`, printing the answer for `--json`.
    private static func call(_ invocation: Invocation, op: String, _ fields: JSONObject) throws -> JSONObject {
        let response = try MeterCtl.call(try MeterCtl.connect(invocation.path(.querySocket)!), Request(op: op, fields: fields))
        if invocation.flag(.json) { MeterCtl.printJSON(.object(response)) }
        return response
    }

    private static func number(_ invocation: Invocation, _ option: Option, as key: String, into fields: inout JSONObject, minimum: Int = 0)
        throws
    {
        guard let value = try invocation.number(option, minimum: minimum) else { return }
        fields[key] = .number(String(value))
    }

    /// The `--resource-id`/`--resource-uri` filter of a paged command.
    private static func filter(_ invocation: Invocation, into fields: inout JSONObject) {
        if let id = invocation.value(filterId) { fields["resourceId"] = .string(id) }
        if let uri = invocation.value(filterUri) { fields["resourceUri"] = .string(uri) }
    }

    /// "N records; next page: --start-id X" while the journal has more, else that this is the last page.
    static func pageFooter(_ response: JSONObject, count: Int, noun: String) -> String {
        let next = response["nextId"]?.intValue ?? 0
        let total = response["total"]?.intValue ?? 0
        if next < total { return "\(count) \(noun); next page: --start-id \(next) (\(total) recorded in all)" }
        return "\(count) \(noun); the last page (\(total) recorded in all)"
    }

    /// The run-rate as people read it: a heading, then one row per meter.
    static func runRateText(_ response: JSONObject) -> String {
        let name = response["resourceId"]?.stringValue ?? response["resourceUri"]?.stringValue ?? "?"
        var out =
            "\(name)  plan \(text(response["planId"]))  period \(text(response["period"]?["start"])) → \(text(response["period"]?["end"]))"
        if let end = response["period"]?["end"]?.stringValue.flatMap(Timestamp.init(iso8601:)),
            let asOf = response["asOf"]?.stringValue.flatMap(Timestamp.init(iso8601:))
        {
            let days = Double(end.microseconds - asOf.microseconds) / Double(Timestamp.microsecondsPerDay)
            out += String(format: " (%.1f days left)", max(0, days))
        }
        out += "  as of \(text(response["asOf"]))\(response["deleted"] == true ? "  DELETED" : "")\n"
        var rows = [
            [
                "meter", "dimension", "included", "consumed", "remaining", "overage", "open hour", "projected", "pending", "accepted",
                "rejected",
                "conflicts",
            ]
        ]
        for meter in response["meters"]?.arrayValue ?? [] {
            let market = meter["marketplace"]
            rows.append([
                text(meter["meterName"]), text(meter["dimension"]), text(meter["included"]), text(meter["consumed"]),
                text(meter["remaining"]),
                text(meter["overage"]), figure(meter, "openHourOverage"), figure(meter, "projected"), figure(market, "pending"),
                figure(market, "accepted"), figure(market, "rejected"), text(market?["conflicts"]),
            ])
            for tier in meter["tiers"]?.arrayValue ?? [] {
                rows.append(["  tier", text(tier["dimension"]), "from \(text(tier["from"]))", text(tier["consumed"])])
            }
        }
        return out + Table.text(rows)
    }

    /// Member `name` of `object`, as "… or more" when `object` lists it as saturated: it passed
    /// the largest quantity, which it shows, so the exact figure is not known.
    static func figure(_ object: JSONValue?, _ name: String) -> String {
        let saturated = object?["saturated"]?.arrayValue?.contains(.string(name)) == true
        return text(object?[name]) + (saturated ? " or more" : "")
    }

    static func usage(_ invocation: Invocation) throws {
        var fields = JSONObject()
        try number(invocation, startId, as: "startId", into: &fields)
        try number(invocation, batchSize, as: "batchSize", into: &fields, minimum: 1)
        filter(invocation, into: &fields)
        let response = try call(invocation, op: "usage", fields)
        if invocation.flag(.json) { return }
        var rows = [["id", "resource", "plan", "meter", "dimension", "hour (UTC)", "quantity", "billed", "status"]]
        let records = response["records"]?.arrayValue ?? []
        for record in records {
            rows.append([
                text(record["id"]), record["resourceId"]?.stringValue ?? text(record["resourceUri"]), text(record["planId"]),
                text(record["meterName"]), text(record["dimension"]), text(record["hour"]), text(record["quantity"]),
                text(record["billed"]),
                text(record["status"]),
            ])
        }
        print(Table.text(rows), terminator: "")
        print(pageFooter(response, count: records.count, noun: "records"))
    }

    static func events(_ invocation: Invocation) throws {
        var fields = try invocation.subscription()
        if let from = invocation.value(from) { fields["from"] = .string(from) }
        if let to = invocation.value(to) { fields["to"] = .string(to) }
        try number(invocation, after, as: "after", into: &fields)
        try number(invocation, maxEvents, as: "max", into: &fields, minimum: 1)
        let response = try call(invocation, op: "events", fields)
        if invocation.flag(.json) { return }
        var rows = [["partition/sequence", "enqueued (UTC)", "type", "id", "details"]]
        let records = response["records"]?.arrayValue ?? []
        for record in records {
            let event = record["event"]
            let value = event?["value"]
            var details: [String] = []
            if let meter = value?["meterName"] { details.append("\(text(meter)) \(text(value?["quantity"]))") }
            for property in value?["properties"]?.objectValue?.members ?? [] { details.append("\(property.key)=\(text(property.value))") }
            if let plan = value?["subscription"]?["plan"]?["planId"] { details.append("plan \(text(plan))") }
            if let result = value?["result"] { details.append(outcomeText(result)) }
            rows.append([
                "\(text(record["partition"]))/\(text(record["sequence"]))", text(record["enqueuedTime"]), text(event?["type"]),
                text(event?["id"]),
                details.joined(separator: " "),
            ])
        }
        print(Table.text(rows), terminator: "")
        let more = response["next"].flatMap { $0 == .null ? nil : text($0) }
        print("\(records.count) events (\(text(response["scanned"])) log records read)" + (more.map { "; more: --after \($0)" } ?? ""))
    }

    /// A marketplace outcome in a line: dimension, hour, quantity, status, and why when refused.
    static func outcomeText(_ result: JSONValue) -> String {
        var parts = [
            text(result["dimension"]), text(result["effectiveStartTime"]), text(result["quantity"]), text(result["status"]),
        ]
        if let accepted = result["error"]?["additionalInfo"]?["acceptedMessage"]?["quantity"] {
            parts.append("(marketplace holds \(text(accepted)))")
        } else if let reason = result["error"]?["details"]?.arrayValue?.first?["message"] ?? result["error"]?["message"] {
            parts.append("(\(text(reason)))")
        }
        return parts.joined(separator: " ")
    }

    static func submissions(_ invocation: Invocation) throws {
        var fields = JSONObject()
        try number(invocation, startId, as: "startId", into: &fields)
        try number(invocation, batchSize, as: "batchSize", into: &fields, minimum: 1)
        if let status = invocation.value(status) { fields["status"] = .string(status) }
        filter(invocation, into: &fields)
        let response = try call(invocation, op: "submissions", fields)
        if invocation.flag(.json) { return }
        var rows = [["id", "recorded (UTC)", "resource", "dimension", "hour (UTC)", "quantity", "status", "settled", "details"]]
        let records = response["records"]?.arrayValue ?? []
        for record in records {
            var details = record["reason"]?.stringValue ?? ""
            if let accepted = record["acceptedQuantity"] { details = "marketplace holds \(text(accepted))" }
            rows.append([
                text(record["id"]), text(record["recordedAt"]), record["resourceId"]?.stringValue ?? text(record["resourceUri"]),
                text(record["dimension"]), text(record["effectiveStartTime"]), text(record["quantity"]), text(record["status"]),
                text(record["settled"]), details,
            ])
        }
        print(Table.text(rows), terminator: "")
        print(pageFooter(response, count: records.count, noun: "outcomes"))
    }

    static func breakdown(_ invocation: Invocation) throws {
        var fields = try invocation.subscription()
        guard let meterName = invocation.value(meter), let key = invocation.value(property) else {
            throw UsageError("'meterctl breakdown' needs --meter NAME and --property KEY; see meterctl breakdown --help")
        }
        fields["meterName"] = .string(meterName)
        fields["property"] = .string(key)
        let response = try call(invocation, op: "breakdown", fields)
        if invocation.flag(.json) { return }
        print("\(text(response["meterName"])) by \(text(response["property"])), period from \(text(response["period"]?["start"]))")
        var rows = [[text(response["property"]), "quantity"]]
        for group in response["groups"]?.arrayValue ?? [] { rows.append([text(group["value"]), text(group["quantity"])]) }
        // The service's total counts the groups; the meter's usage also holds what no group has.
        var total = Demo.quantity(response["total"])
        if let unattributed = response["unattributed"], unattributed != .null {
            let label =
                response["truncated"] == true
                ? "(no \(text(response["property"])), or beyond the limit)" : "(no \(text(response["property"])))"
            rows.append([label, text(unattributed)])
            total += Demo.quantity(unattributed)
        }
        rows.append(["total", total.description])
        print(Table.text(rows), terminator: "")
    }

    static func subscriptions(_ invocation: Invocation) throws {
        var fields = JSONObject()
        if let after = invocation.value(afterKey) { fields["after"] = .string(after) }
        try number(invocation, maxSubscriptions, as: "max", into: &fields, minimum: 1)
        let response = try call(invocation, op: "subscriptions", fields)
        if invocation.flag(.json) { return }
        var rows = [["subscription", "resourceUri", "plan", "partition", "period start", "period end", "deleted"]]
        let list = response["subscriptions"]?.arrayValue ?? []
        for entry in list {
            rows.append([
                text(entry["key"]), text(entry["resourceUri"]), text(entry["planId"]), text(entry["partition"]), text(entry["periodStart"]),
                text(entry["periodEnd"]), text(entry["deleted"]),
            ])
        }
        print(Table.text(rows), terminator: "")
        let more = response["next"].flatMap { $0 == .null ? nil : text($0) }
        print("\(list.count) of \(text(response["total"])) subscriptions" + (more.map { "; more: --after \($0)" } ?? ""))
    }
}

/// `meterctl query-status`: how far meter-query has folded the log, per partition.
enum QueryStatus {
    static let command = Command(
        name: "query-status", summary: "meter-query's partitions: position, lag, time, subscriptions, snapshot (query)",
        details: "docs/OPERATING.md says what each column means.",
        options: [.json, .home, .querySocket], examples: ["meterctl query-status"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let response = try MeterCtl.call(try MeterCtl.connect(invocation.path(.querySocket)!), Request(op: "status"))
        if invocation.flag(.json) {
            MeterCtl.printJSON(.object(response))
            return
        }
        AggregatorCommands.partitionTable(
            response,
            columns: [
                "partition", "position", "ingestNext", "lag", "connected", "time", "subscriptions", "snapshotSequence", "recordsFolded",
            ])
        print(
            "\(AggregatorCommands.text(response["usageRecords"])) usage records, \(AggregatorCommands.text(response["submissionRecords"])) marketplace outcomes, \(AggregatorCommands.text(response["watchers"])) run-rate watchers"
        )
        if let usage = response["usage"] {
            let text = AggregatorCommands.text
            let cutoff = usage["expiredBefore"].flatMap { $0 == .null ? nil : "; closed before \(text($0)) aged out" } ?? ""
            print(
                "usage ids \(text(usage["firstId"]))..<\(text(usage["nextId"])) readable, numbered up to the horizon \(text(usage["horizon"])), kept \(text(usage["retentionDays"])) days\(cutoff)"
            )
        }
    }
}
