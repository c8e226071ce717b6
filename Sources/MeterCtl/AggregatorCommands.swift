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

    static let maxItems = Option("max", .value("N"), "at most N items, oldest first")

    static let pendingCommand = Command(
        name: "pending", summary: "usage ready to report to the marketplace, oldest first (aggregator)",
        details: "What the submitter takes next; items older than 20 hours are at risk (the marketplace refuses 24).",
        options: [maxItems, .json, .home, .aggregatorSocket], examples: ["meterctl pending --max 20"],
        run: { try pending($0) })

    static let stateCommand = Command(
        name: "state", summary: "one subscription's meters as the aggregator holds them (aggregator)",
        details: "Per meter: included, consumed, remaining and the period's overage; --json gives the aggregator's own form.",
        options: [.resourceId, .resourceUri, .json, .home, .aggregatorSocket], examples: ["meterctl state --resource-id sub-1"],
        run: { try state($0) })

    static let statusCommand = Command(
        name: "aggregator-status", summary: "the aggregator's partitions: position, lag, pending, at risk, refused (aggregator)",
        details: "docs/OPERATING.md says what each column means.",
        options: [.json, .home, .aggregatorSocket], examples: ["meterctl aggregator-status"],
        run: { try status($0) })

    static func pending(_ invocation: Invocation) throws {
        var fields = JSONObject()
        if let max = try invocation.number(maxItems, minimum: 1) { fields["max"] = .number(String(max)) }
        let response = try MeterCtl.call(try MeterCtl.connect(invocation.path(.aggregatorSocket)!), Request(op: "pending", fields: fields))
        if invocation.flag(.json) {
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

    static func state(_ invocation: Invocation) throws {
        let fields = try invocation.subscription()
        let response = try MeterCtl.call(try MeterCtl.connect(invocation.path(.aggregatorSocket)!), Request(op: "state", fields: fields))
        if invocation.flag(.json) {
            MeterCtl.printJSON(.object(response))
            return
        }
        print(stateText(response), terminator: "")
    }

    /// The subscription's terms in a line, then a row per meter.
    static func stateText(_ response: JSONObject) -> String {
        let subscription = response["subscription"]
        let name = subscription?["resourceId"]?.stringValue ?? subscription?["resourceUri"]?.stringValue ?? "?"
        let period = subscription?["period"]
        var out =
            "\(name)  plan \(text(subscription?["planId"]))  \(text(subscription?["renewalInterval"])) from \(text(subscription?["subscriptionStart"]))"
        out += "  period \(text(period?["index"])): \(text(period?["start"])) → \(text(period?["end"]))"
        out += "  partition \(text(response["partition"]))  as of \(text(response["asOf"]))"
        out += subscription?["deleted"] == true ? "  DELETED\n" : "\n"
        var rows = [["meter", "type", "dimension", "included", "consumed", "remaining", "overage"]]
        for meter in subscription?["meters"]?.arrayValue ?? [] {
            let kind = meter["type"] == "simple" ? text(meter["aggregation"]) : text(meter["type"])
            rows.append([
                text(meter["meterName"]), kind, text(meter["dimension"] ?? meter["tiers"]?.arrayValue?.first?["dimension"]),
                text(meter["included"]), text(meter["consumed"]), text(meter["remaining"]), text(meter["overage"]),
            ])
        }
        out += Table.text(rows)
        out += "\(text(subscription?["pending"])) items ready to report\n"
        return out
    }

    static func status(_ invocation: Invocation) throws {
        let response = try MeterCtl.call(try MeterCtl.connect(invocation.path(.aggregatorSocket)!), Request(op: "status"))
        if invocation.flag(.json) {
            MeterCtl.printJSON(.object(response))
            return
        }
        partitionTable(
            response,
            columns: [
                "partition", "position", "lag", "time", "subscriptions", "pending", "atRisk", "accepted", "conflicts", "rejected",
                "unprocessable",
            ])
    }

    /// A `status` answer's partitions as a table of `columns`, then each partition's last error.
    static func partitionTable(_ response: JSONObject, columns: [String]) {
        let partitions = response["partitions"]?.arrayValue ?? []
        Table.print([columns] + partitions.map { partition in columns.map { text(partition[$0]) } })
        for partition in partitions {
            if let error = partition["lastError"]?.stringValue { print("partition \(text(partition["partition"])): \(error)") }
        }
    }
}

/// `meterctl submitter-status`: the counters the submitter leaves after each pass.
enum SubmitterStatus {
    /// The status's `reconciliation` member for people: its state, the days compared and the
    /// mismatches listed.
    static func reconciliationText(_ value: JSONValue) -> String {
        let text = AggregatorCommands.text
        switch value["state"]?.stringValue {
        case "off"?: return "reconciliation: off (METERING_RECONCILE_INTERVAL=0)\n"
        case "waiting"?:
            return "reconciliation: waiting (\(value["note"]?.stringValue ?? "no pass yet"), last attempt \(text(value["lastAttempt"])))\n"
        default: break
        }
        var out =
            "reconciliation: \(text(value["state"])), last run \(text(value["ranAt"])) over \(text(value["from"]))..\(text(value["to"])): \(text(value["checked"])) checked, \(text(value["matched"])) agree, \(text(value["mismatches"])) differ\n"
        for item in value["items"]?.arrayValue ?? [] {
            out +=
                "  \(text(item["kind"])): \(text(item["usageDate"])) \(item["resourceId"]?.stringValue ?? text(item["resourceUri"])) \(text(item["dimension"])): ours \(text(item["ours"])), marketplace submitted \(text(item["submitted"])), processed \(text(item["processed"])), \(text(item["reconStatus"]))\n"
        }
        if let error = value["lastError"]?.stringValue { out += "  last error: \(error)\n" }
        return out
    }

    static let maxAge = Option("max-age", .value("SECONDS"), "fail (exit 1) when the last pass is older: a health check")

    static let command = Command(
        name: "submitter-status", summary: "the submitter's passes, outcomes, retries and items at risk",
        details: "Read from $METERING_HOME/run/submitter.status.json, which meter-submitter rewrites after each pass.",
        options: [maxAge, .json, .home], examples: ["meterctl submitter-status --max-age 120"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let json = invocation.flag(.json)
        let maximumAge = try Ping.seconds(invocation.value(maxAge), flag: "--max-age")
        let path = invocation.home + "/run/submitter.status.json"
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
            if let reconciliation = status["reconciliation"] { print(reconciliationText(reconciliation), terminator: "") }
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
