import Foundation
import Wire

/// `meterctl runrate`, `usage`, `events`, `submissions`, `breakdown`, `subscriptions`: what the
/// query service's read models answer, as tables (or `--json`).
enum QueryCommands {
    private static func text(_ value: JSONValue?) -> String { AggregatorCommands.text(value) }

    /// Parses the options common to every query command and calls `op` with `fields`.
    private static func call(
        _ raw: [String], op: String, switches: Set<String> = ["json"], _ fields: (inout MeterCtl.Arguments) throws -> JSONObject
    ) throws -> (JSONObject, json: Bool, arguments: MeterCtl.Arguments) {
        var arguments = try MeterCtl.Arguments(raw, switches: switches)
        let sockets = try arguments.sockets()
        let json = arguments.flag("json")
        let request = try fields(&arguments)
        try arguments.rejectUnused()
        let response = try MeterCtl.call(try MeterCtl.connect(sockets.query), Request(op: op, fields: request))
        if json { MeterCtl.printJSON(.object(response)) }
        return (response, json, arguments)
    }

    private static func subscription(_ arguments: inout MeterCtl.Arguments, command: String) throws -> JSONObject {
        var fields = JSONObject()
        if let id = arguments.value("resource-id") { fields["resourceId"] = .string(id) }
        if let uri = arguments.value("resource-uri") { fields["resourceUri"] = .string(uri) }
        guard !fields.members.isEmpty else { throw MeterCtl.Failure("\(command) needs --resource-id or --resource-uri") }
        return fields
    }

    private static func number(_ arguments: inout MeterCtl.Arguments, _ option: String, as key: String, into fields: inout JSONObject)
        throws
    {
        guard let given = arguments.value(option) else { return }
        guard let value = Int(given), value >= 0 else { throw MeterCtl.Failure("--\(option) takes a whole number") }
        fields[key] = .number(String(value))
    }

    static func runRate(_ raw: [String]) throws {
        let (response, json, _) = try call(raw, op: "runrate") { try subscription(&$0, command: "runrate") }
        if json { return }
        print(runRateText(response), terminator: "")
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
                text(meter["overage"]), text(meter["openHourOverage"]), text(meter["projected"]), text(market?["pending"]),
                text(market?["accepted"]), text(market?["rejected"]), text(market?["conflicts"]),
            ])
            for tier in meter["tiers"]?.arrayValue ?? [] {
                rows.append(["  tier", text(tier["dimension"]), "from \(text(tier["from"]))", text(tier["consumed"])])
            }
        }
        return out + Table.text(rows)
    }

    static func usage(_ raw: [String]) throws {
        let (response, json, _) = try call(raw, op: "usage") { arguments in
            var fields = JSONObject()
            try number(&arguments, "start-id", as: "startId", into: &fields)
            try number(&arguments, "batch-size", as: "batchSize", into: &fields)
            return fields
        }
        if json { return }
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
        print("\(records.count) records; next page: --start-id \(text(response["nextId"])) (of \(text(response["total"])))")
    }

    static func events(_ raw: [String]) throws {
        let (response, json, _) = try call(raw, op: "events") { arguments in
            var fields = try subscription(&arguments, command: "events")
            if let from = arguments.value("from") { fields["from"] = .string(from) }
            if let to = arguments.value("to") { fields["to"] = .string(to) }
            try number(&arguments, "after", as: "after", into: &fields)
            try number(&arguments, "max", as: "max", into: &fields)
            return fields
        }
        if json { return }
        var rows = [["partition/sequence", "enqueued (UTC)", "type", "id", "details"]]
        let records = response["records"]?.arrayValue ?? []
        for record in records {
            let event = record["event"]
            let value = event?["value"]
            var details: [String] = []
            if let meter = value?["meterName"] { details.append("\(text(meter)) \(text(value?["quantity"]))") }
            for property in value?["properties"]?.objectValue?.members ?? [] { details.append("\(property.key)=\(text(property.value))") }
            if let plan = value?["subscription"]?["plan"]?["planId"] { details.append("plan \(text(plan))") }
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

    static func submissions(_ raw: [String]) throws {
        let (response, json, _) = try call(raw, op: "submissions") { arguments in
            var fields = JSONObject()
            try number(&arguments, "start-id", as: "startId", into: &fields)
            try number(&arguments, "batch-size", as: "batchSize", into: &fields)
            if let status = arguments.value("status") { fields["status"] = .string(status) }
            return fields
        }
        if json { return }
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
        print("\(records.count) outcomes; next page: --start-id \(text(response["nextId"])) (of \(text(response["total"])))")
    }

    static func breakdown(_ raw: [String]) throws {
        let (response, json, _) = try call(raw, op: "breakdown") { arguments in
            var fields = try subscription(&arguments, command: "breakdown")
            guard let meter = arguments.value("meter"), let property = arguments.value("property") else {
                throw MeterCtl.Failure("breakdown needs --meter NAME and --property KEY")
            }
            fields["meterName"] = .string(meter)
            fields["property"] = .string(property)
            return fields
        }
        if json { return }
        print("\(text(response["meterName"])) by \(text(response["property"])), period from \(text(response["period"]?["start"]))")
        var rows = [[text(response["property"]), "quantity"]]
        for group in response["groups"]?.arrayValue ?? [] { rows.append([text(group["value"]), text(group["quantity"])]) }
        rows.append(["total", text(response["total"])])
        if response["unattributed"] != .null { rows.append(["(no such property, or beyond the limit)", text(response["unattributed"])]) }
        print(Table.text(rows), terminator: "")
    }

    static func subscriptions(_ raw: [String]) throws {
        let (response, json, _) = try call(raw, op: "subscriptions") { arguments in
            var fields = JSONObject()
            if let after = arguments.value("after") { fields["after"] = .string(after) }
            try number(&arguments, "max", as: "max", into: &fields)
            return fields
        }
        if json { return }
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
