import Foundation
import Wire

/// `meterctl pending`, `state`, `aggregator-status`: what the aggregator knows.
enum AggregatorCommands {
    static func text(_ value: JSONValue?) -> String {
        switch value {
        case .number(let text)?, .string(let text)?: return text
        case .bool(let flag)?: return flag ? "yes" : "no"
        case .null?, nil: return "-"
        default: return JSONWriter.string(value!)
        }
    }

    static func pending(_ raw: [String]) throws {
        var arguments = try MeterCtl.Arguments(raw, switches: ["json"])
        let sockets = try arguments.sockets()
        let json = arguments.flag("json")
        var fields = JSONObject()
        if let max = arguments.value("max") {
            guard let number = Int(max), number > 0 else { throw MeterCtl.Failure("--max takes a positive number") }
            fields["max"] = .number(String(number))
        }
        try arguments.rejectUnused()
        let response = try MeterCtl.call(try MeterCtl.connect(sockets.aggregator), Request(op: "pending", fields: fields))
        if json {
            MeterCtl.printJSON(.object(response))
            return
        }
        let items = response["items"]?.arrayValue ?? []
        var rows = [["resource", "plan", "dimension", "hour (UTC)", "quantity", "age", "at risk"]]
        for item in items {
            let age = item["ageSeconds"]?.intValue.map { "\($0 / 3600)h\($0 / 60 % 60)m" } ?? "-"
            rows.append([
                item["resourceId"]?.stringValue ?? item["resourceUri"]?.stringValue ?? "?", text(item["planId"]), text(item["dimension"]),
                text(item["effectiveStartTime"]), text(item["quantity"]), age, text(item["atRisk"]),
            ])
        }
        Table.print(rows)
        print("\(items.count) of \(response["total"]?.intValue ?? items.count) pending items")
    }

    static func state(_ raw: [String]) throws {
        var arguments = try MeterCtl.Arguments(raw, switches: ["json"])
        let sockets = try arguments.sockets()
        _ = arguments.flag("json")
        var fields = JSONObject()
        if let id = arguments.value("resource-id") { fields["resourceId"] = .string(id) }
        if let uri = arguments.value("resource-uri") { fields["resourceUri"] = .string(uri) }
        guard !fields.members.isEmpty else { throw MeterCtl.Failure("state needs --resource-id or --resource-uri") }
        try arguments.rejectUnused()
        let response = try MeterCtl.call(try MeterCtl.connect(sockets.aggregator), Request(op: "state", fields: fields))
        MeterCtl.printJSON(.object(response))
    }

    static func status(_ raw: [String]) throws {
        var arguments = try MeterCtl.Arguments(raw, switches: ["json"])
        let sockets = try arguments.sockets()
        let json = arguments.flag("json")
        try arguments.rejectUnused()
        let response = try MeterCtl.call(try MeterCtl.connect(sockets.aggregator), Request(op: "status"))
        if json {
            MeterCtl.printJSON(.object(response))
            return
        }
        let columns = [
            "partition", "position", "lag", "time", "subscriptions", "pending", "atRisk", "accepted", "conflicts", "rejected",
            "unprocessable",
        ]
        var rows = [columns]
        for partition in response["partitions"]?.arrayValue ?? [] { rows.append(columns.map { text(partition[$0]) }) }
        Table.print(rows)
        for partition in response["partitions"]?.arrayValue ?? [] {
            if let error = partition["lastError"]?.stringValue { print("partition \(text(partition["partition"])): \(error)") }
        }
    }
}

/// `meterctl submitter-status`: the counters the submitter leaves after each pass.
enum SubmitterStatus {
    static func run(_ raw: [String]) throws {
        var arguments = try MeterCtl.Arguments(raw, switches: ["json"])
        var forwarded: [String] = []
        if let home = arguments.value("home") { forwarded += ["--home", home] }
        let json = arguments.flag("json")
        let maximumAge = try Ping.seconds(arguments.value("max-age"), flag: "--max-age")
        try arguments.rejectUnused()
        var settings = try Settings(arguments: forwarded)
        let path = settings.home() + "/run/submitter.status.json"
        guard let data = FileManager.default.contents(atPath: path), let status = try? JSONParser.parse(Array(data)) else {
            throw MeterCtl.Failure("no submitter status at \(path): is meter-submitter running with this METERING_HOME?")
        }
        if json {
            MeterCtl.printJSON(status)
        } else {
            print(
                "last pass \(AggregatorCommands.text(status["lastPass"])): \(AggregatorCommands.text(status["passes"])) passes, \(AggregatorCommands.text(status["batches"])) batches, \(AggregatorCommands.text(status["itemsSent"])) items sent, \(AggregatorCommands.text(status["retries"])) retries, \(AggregatorCommands.text(status["atRisk"])) at risk"
            )
            for member in status["outcomes"]?.objectValue?.members ?? [] {
                print("  \(member.key): \(AggregatorCommands.text(member.value))")
            }
            for lane in status["aggregators"]?.arrayValue ?? [] {
                let socket = AggregatorCommands.text(lane["socket"])
                let pending = AggregatorCommands.text(lane["pending"])
                if lane["state"] == "ok" {
                    print("  aggregator \(socket): ok, \(pending) pending at the last pass")
                } else {
                    print(
                        "  aggregator \(socket): \(AggregatorCommands.text(lane["state"])) since \(AggregatorCommands.text(lane["failingSince"])), \(AggregatorCommands.text(lane["failures"])) failed passes, next attempt \(AggregatorCommands.text(lane["nextAttempt"])): \(AggregatorCommands.text(lane["lastError"]))"
                    )
                }
            }
            if let error = status["lastError"]?.stringValue { print("last error: \(error)") }
        }
        // The health check of a process with no socket: it is alive while its passes keep coming
        // (a pass starts at least every interval plus the longest backoff).
        if let maximumAge {
            let last = status["lastPass"]?.stringValue.flatMap { Timestamp(iso8601: $0) }
            let now = Date().timeIntervalSince1970
            guard let last, now - Double(last.microseconds) / 1_000_000 <= maximumAge else {
                throw MeterCtl.Failure(
                    "the submitter's last pass (\(last?.iso8601 ?? "none")) is more than \(maximumAge) s ago: is meter-submitter stopped or stuck?"
                )
            }
        }
    }
}
