import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meterctl connector status`: what meter-connector leaves in its status file, per source.
enum ConnectorCommand {
    static let statusFile = Option(
        "status-file", .value("FILE"), "the status file meter-connector rewrites", environment: "METERING_CONNECTOR_STATUS",
        fallback: .inHome("run/connector.status.json"))

    static let command = Command(
        name: "connector", summary: "meter-connector, which turns log files and commands into usage",
        subcommands: [
            Command(
                name: "status", summary: "meter-connector's sources: watermark, lag, records read/skipped/malformed, late, errors",
                details: "docs/CONNECTORS.md says what each line means.", options: [.json, .home, statusFile],
                examples: ["meterctl connector status"], run: { try status($0) })
        ])

    static func status(_ invocation: Invocation) throws {
        let path = invocation.path(statusFile)!
        let json = invocation.flag(.json)
        guard let data = FileManager.default.contents(atPath: path), let status = try? JSONParser.parse(Array(data)) else {
            throw MeterCtl.Failure(
                "no connector status at \(path): is meter-connector running with this METERING_HOME (or METERING_CONNECTOR_STATUS)?")
        }
        if json {
            MeterCtl.printJSON(status)
            return
        }
        print(summary(status))
    }

    static func text(_ value: JSONValue?) -> String { AggregatorCommands.text(value) }

    /// The status for people: one block per source.
    static func summary(_ status: JSONValue) -> String {
        var lines: [String] = []
        var state = text(status["state"])
        if state == "running", let pid = status["pid"]?.intValue, kill(pid_t(pid), 0) != 0 && errno == ESRCH {
            state = "not running (pid \(pid) is gone; the file is from its last run)"
        }
        lines.append(
            "meter-connector \(state), pid \(text(status["pid"])), clock \(text(status["clock"])), updated \(text(status["updated"]))")
        for source in status["sources"]?.arrayValue ?? [] {
            lines.append("")
            let what = source["type"] == "command" ? "command \(commandText(source["command"]))" : "file \(text(source["path"]))"
            lines.append("source \(text(source["name"])) (\(what))")
            if let activity = source["activity"]?.stringValue, !activity.isEmpty { lines.append("  now:        \(activity)") }
            let watermark = source["watermark"]
            if source["type"] == "command" {
                lines.append("  watermark:  window read up to \(text(watermark?["since"])); \(text(source["runs"])) runs")
                if let last = source["lastRun"], last != .null {
                    lines.append("  last run:   up to \(text(last["until"])) in \(text(last["seconds"])) s: \(text(last["result"]))")
                }
            } else {
                lines.append(
                    "  watermark:  \(text(watermark?["file"])) (inode \(text(watermark?["inode"]))) byte \(text(watermark?["offset"])), line \(text(watermark?["line"])); \(text(source["rotations"])) rotations, \(text(source["truncations"])) truncations"
                )
            }
            let lag = source["lag"]
            lines.append(
                "  lag:        \(text(lag?["bytes"])) bytes unread; \(text(lag?["records"])) records in \(text(lag?["openHours"])) open hours (oldest \(text(lag?["oldestOpenHour"]))); emitted up to \(text(source["emittedBefore"])) (clock \(text(source["clock"])))"
            )
            let records = source["records"]
            lines.append(
                "  records:    \(text(records?["read"])) read, \(text(records?["counted"])) counted, \(text(records?["skipped"])) skipped, \(text(records?["malformed"])) malformed, \(text(records?["late"])) late"
            )
            let events = source["events"]
            lines.append(
                "  events:     \(text(events?["accepted"])) accepted, \(text(events?["duplicates"])) duplicates, \(text(events?["rejected"])) rejected, \(text(events?["pending"])) pending"
            )
            var rows = [["meter", "meterName", "counted", "skipped", "malformed", "late", "events", "quantity"]]
            for meter in source["meters"]?.arrayValue ?? [] {
                rows.append(
                    ["name", "meterName", "counted", "skipped", "malformed", "late", "events", "quantity"].map { text(meter[$0]) })
            }
            lines.append(contentsOf: Table.render(rows).map { "    " + $0 })
            let examples = source["malformedExamples"]?.arrayValue ?? []
            if !examples.isEmpty {
                lines.append("  malformed (latest \(examples.count)):")
                for example in examples {
                    lines.append("    \(text(example["at"])): \(text(example["reason"]))")
                    lines.append("      \(text(example["text"]))")
                }
            }
            for problem in source["problems"]?.arrayValue ?? [] { lines.append("  problem:    \(text(problem))") }
            if let error = source["lastError"]?.stringValue {
                lines.append("  last error: \(error) (at \(text(source["lastErrorAt"])))")
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func commandText(_ value: JSONValue?) -> String {
        (value?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")
    }
}
