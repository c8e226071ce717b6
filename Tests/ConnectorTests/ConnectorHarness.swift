import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Real meter-ingest (manual clock) and real meter-connector on one home, with the log files the
/// test writes and what those lines must add up to.
final class ConnectorStack: @unchecked Sendable {
    let home = StackHome()
    private(set) var ingest: IngestProcess
    var connector: ConnectorProcess?
    let configPath: String
    /// What the lines written so far must produce: "meterName subscription hour" → quantity.
    var expected: [String: Quantity] = [:]

    init(config: String, start: String = "2024-05-01T10:00:00Z") throws {
        ingest = try IngestProcess(home: home)
        try FileManager.default.createDirectory(atPath: home.path + "/logs", withIntermediateDirectories: true)
        configPath = home.path + "/connector.json"
        try config.replacingOccurrences(of: "$LOGS", with: home.path + "/logs").replacingOccurrences(of: "$HOME", with: home.path)
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        try advance(to: start)
    }

    func log(_ name: String) -> String { home.path + "/logs/" + name }

    @discardableResult
    func startConnector(_ environment: [String: String] = [:]) throws -> ConnectorProcess {
        let started = try ConnectorProcess(home: home, config: configPath, environment: environment)
        connector = started
        return started
    }

    func advance(to time: String) throws {
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": .string(time)])))
    }

    /// Waits until the connector has used the clock at `time` for source `name` (its hours are
    /// closed as that clock says).
    func waitForClock(_ time: String, sources: [String], timeout: Double = 20) throws {
        try connector!.waitForStatus(timeout: timeout) { status in
            sources.allSatisfy { name in
                let source = status["sources"]?.arrayValue?.first { $0["name"]?.stringValue == name }
                return source?["clock"]?.stringValue == time && source?["events"]?["pending"]?.intValue == 0
            }
        }
    }

    /// Waits until source `name` has read `records` lines (malformed ones included) and has nothing unread.
    func waitForRead(_ name: String, records: Int, timeout: Double = 20) throws {
        try connector!.waitForStatus(timeout: timeout) { status in
            let source = status["sources"]?.arrayValue?.first { $0["name"]?.stringValue == name }
            return source?["records"]?["read"]?.intValue == records && (source?["lag"]?["bytes"]?.intValue ?? 0) == 0
        }
    }

    func expect(_ meterName: String, _ subscription: String, _ hour: String, _ quantity: Quantity) {
        expected["\(meterName) \(subscription) \(hour)", default: .zero] += quantity
    }

    /// The connector's usage in ingest's log, summed per meter, subscription and hour; fails the
    /// test when an idempotency key appears twice.
    func ledger() throws -> [String: Quantity] {
        let records = try readAll(try ingest.client(), partitions: 4)
        var sums: [String: Quantity] = [:]
        var keys: Set<String> = []
        for record in records {
            let event = record["event"]
            guard event?["type"] == "UsageReported", let id = event?["id"]?.stringValue, id.hasPrefix("conn:") else { continue }
            #expect(keys.insert(id).inserted, "key \(id) twice in the log")
            let value = event?["value"]
            let subscription = value?["resourceId"]?.stringValue ?? value?["resourceUri"]?.stringValue ?? "?"
            let key = "\(value?["meterName"]?.stringValue ?? "?") \(subscription) \(value?["properties"]?["hour"]?.stringValue ?? "?")"
            guard case .number(let text)? = value?["quantity"], let quantity = Quantity(exactly: text) else {
                Issue.record("event \(id) has no quantity")
                continue
            }
            sums[key, default: .zero] += quantity
        }
        return sums
    }

    /// Compares the ledger with what the lines say, line by line of difference.
    func expectLedgerMatches(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let actual = try ledger()
        let keys = Set(actual.keys).union(expected.keys).sorted()
        let differences = keys.filter { actual[$0] != expected[$0] }.map {
            "\($0): log \(actual[$0].map(String.init(describing:)) ?? "none"), lines \(expected[$0].map(String.init(describing:)) ?? "none")"
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))", sourceLocation: sourceLocation)
        #expect(!expected.isEmpty, sourceLocation: sourceLocation)
    }
}

/// Appends text to a log file the way a writer that keeps its file open does (so a rename leaves
/// it writing to the renamed file until it reopens).
final class LogWriter: @unchecked Sendable {
    let path: String
    private var handle: FileHandle

    init(_ path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
    }

    func write(_ text: String) throws {
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    /// Opens the path again, as a writer does after a rotation.
    func reopen() throws {
        try handle.close()
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
    }

    deinit { try? handle.close() }
}

/// Gateway access-log lines (newline-delimited JSON) and what each adds to the expected usage,
/// per the meters of `gatewayMeters`.
struct GatewayLine {
    var subscription: String
    var time: String
    var status = 200
    var method = "GET"
    var path = "/v1/orders"
    var bytes = "1500"

    var text: String {
        #"{"time":"\#(time)","subscription":"\#(subscription)","method":"\#(method)","path":"\#(path)","status":\#(status),"bytes":\#(bytes)}"#
            + "\n"
    }

    /// Adds what this line counts to `stack.expected`, in `hour` (its own, or the open hour it is late into).
    func expect(in stack: ConnectorStack, hour: String? = nil) {
        let bucket = hour ?? String(time.prefix(13)) + ":00:00Z"
        if String(status).hasPrefix("2") && path.hasPrefix("/v1/") {
            stack.expect("api_calls", subscription, bucket, Quantity(exactly: "0.001")!)
        }
        if ["GET", "POST"].contains(method) {
            stack.expect("egress_mb", subscription, bucket, MeterRuleScale.megabytes(Quantity(exactly: bytes)!))
        }
    }

    static let meters = #"""
        {"name":"calls","meterName":"api_calls","filter":[{"field":"status","prefix":"2"},{"field":"path","prefix":"/v1/"}],
         "subscription":{"field":"subscription"},"timestamp":"time","quantity":{"count":true,"scale":"0.001"}},
        {"name":"egress","meterName":"egress_mb","filter":[{"field":"method","in":["GET","POST"]}],
         "subscription":{"field":"subscription"},"timestamp":"time","quantity":{"sum":"bytes","scale":"0.000001"}}
        """#
}

/// The scales of the test meters, computed exactly as the connector must (no rounding at these sizes).
enum MeterRuleScale {
    static func megabytes(_ bytes: Quantity) -> Quantity { Quantity(units: bytes.units / 1_000_000) }
}
