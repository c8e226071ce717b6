import Foundation
import Wire

/// `meterctl status`: ingest's partitions as a table.
enum StatusCommand {
    static let command = Command(
        name: "status", summary: "ingest's partitions: records, last sequence and time, segments, bytes (ingest)",
        details:
            "The first line: ingest's clock (system or manual) and its time, the log's size, remembered idempotency keys and their table's size.",
        options: [.json, .home, .ingestSocket], examples: ["meterctl status"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let status = try MeterCtl.call(try MeterCtl.connect(invocation.path(.ingestSocket)!), Request(op: "status"))
        if invocation.flag(.json) {
            MeterCtl.printJSON(.object(status))
            return
        }
        print(
            "ingest: clock \(status["clock"]?.stringValue ?? "?") at \(status["time"]?.stringValue ?? "?"), \(status["storeBytes"]?.intValue ?? 0) bytes, \(status["idempotencyKeys"]?.intValue ?? 0) idempotency keys (table \(((status["idempotencyTableBytes"]?.intValue ?? 0) + (1 << 20) - 1) >> 20) MiB), \(status["catalogPlans"]?.intValue ?? 0) catalog plans, \(status["connections"]?.intValue ?? 0) connections"
        )
        var rows = [["partition", "records", "last sequence", "last enqueued time", "segments", "bytes"]]
        for partition in status["partitions"]?.arrayValue ?? [] {
            func text(_ key: String) -> String {
                switch partition[key] {
                case .number(let value)?: return value
                case .string(let value)?: return value
                default: return "-"
                }
            }
            rows.append([
                text("partition"), text("nextSequence"), text("lastSequence"), text("lastEnqueuedTime"), text("segments"), text("bytes"),
            ])
        }
        Table.print(rows)
    }
}

/// `meterctl advance-clock TIME`: moves ingest's manual clock.
enum AdvanceClock {
    static let command = Command(
        name: "advance-clock", summary: "move ingest's manual clock forward (admin socket)",
        details:
            "Only on a stack started with METERING_CLOCK=manual; time never moves backwards. Every partition gets a tick, so hours close and periods renew.",
        arguments: [Argument(name: "TIME", summary: "the new time, ISO 8601 UTC: 2024-03-01T00:00:00Z")],
        options: [.home, .adminSocket], examples: ["meterctl advance-clock 2024-03-01T00:00:00Z"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let time = invocation.words[0]
        let response = try MeterCtl.call(
            try MeterCtl.connect(invocation.path(.adminSocket)!), Request(op: "advance-clock", fields: JSONObject(["to": .string(time)])))
        print("clock at \(response["time"]?.stringValue ?? time)")
    }
}

/// Prints rows as an aligned text table (the first row is the header).
enum Table {
    static func print(_ rows: [[String]]) { Swift.print(text(rows), terminator: "") }

    /// The rows as aligned lines, the header underlined.
    static func render(_ rows: [[String]]) -> [String] { text(rows).split(separator: "\n").map(String.init) }

    /// Rows as aligned columns, a rule under the header, a newline after each line.
    static func text(_ rows: [[String]]) -> String {
        guard let header = rows.first else { return "" }
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() {
                if index < widths.count { widths[index] = max(widths[index], cell.count) } else { widths.append(cell.count) }
            }
        }
        var out = ""
        for (number, row) in rows.enumerated() {
            let cells = row.enumerated().map { index, cell in cell.padding(toLength: widths[index], withPad: " ", startingAt: 0) }
            var line = cells.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            out += line + "\n"
            if number == 0 { out += widths.prefix(header.count).map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        return out
    }
}
