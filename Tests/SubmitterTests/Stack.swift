import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

/// The whole stack of real processes on one `StackHome`, the emulator following ingest's clock.
final class Stack: @unchecked Sendable {
    let home = StackHome()
    private(set) var ingest: IngestProcess
    private(set) var aggregator: AggregatorProcess
    let emulator: EmulatorProcess
    var submitter: SubmitterProcess?
    var query: QueryProcess?

    init(emulatorArguments: [String] = []) throws {
        ingest = try IngestProcess(home: home)
        aggregator = try AggregatorProcess(home: home)
        emulator = try EmulatorProcess(home: home, arguments: emulatorArguments)
    }

    var submitterEnvironment: [String: String] {
        var environment = emulator.submitterEnvironment
        environment["METERING_SUBMIT_INTERVAL_MS"] = "50"
        environment["METERING_SUBMIT_MAX_BACKOFF"] = "1"
        return environment
    }

    /// Starts ingest again on the same home (after a kill).
    func restartIngest() throws { ingest = try IngestProcess(home: home) }

    /// Starts the aggregator again on the same home (after a kill).
    func restartAggregator() throws { aggregator = try AggregatorProcess(home: home) }

    /// Starts (or, after a kill, restarts) the query service on the same home.
    func startQuery() throws { query = try QueryProcess(home: home) }

    func startSubmitter() throws { submitter = try SubmitterProcess(home: home, environment: submitterEnvironment) }

    func advance(to time: String) throws {
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": .string(time)])))
    }

    func send(_ events: [JSONValue]) throws {
        let response = try ingest.client().call(appendRequest(events))
        for result in response["results"]?.arrayValue ?? [] {
            #expect(result["status"] == "accepted", "\(JSONWriter.string(result))")
        }
    }

    /// The emulator's ledger as sorted lines `resource dimension hour quantity`.
    func ledger() throws -> [String] {
        let (status, json) = try TestHTTP.call("GET", emulator.baseURL + "/emulator/ledger")
        #expect(status == 200)
        let entries = json?.arrayValue ?? json?["items"]?.arrayValue ?? json?["ledger"]?.arrayValue ?? []
        return entries.map { entry in
            let quantity: String
            switch entry["quantity"] {
            case .number(let text)?, .string(let text)?: quantity = Quantity(exactly: text)?.description ?? text
            default: quantity = "?"
            }
            let resource = entry["resourceId"]?.stringValue ?? entry["resourceUri"]?.stringValue ?? "?"
            let hour = Timestamp(iso8601: entry["effectiveStartTime"]?.stringValue ?? "")?.iso8601 ?? "?"
            return "\(resource) \(entry["dimension"]?.stringValue ?? "?") \(hour) \(quantity)"
        }.sorted()
    }

    /// Waits until the aggregator has nothing pending and the ledger has `count` entries.
    func waitUntilSettled(count: Int, timeout: Double = 90) throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [String] = []
        while Date() < deadline {
            last = try ledger()
            let pending = try aggregator.client().call("status")["partitions"]?.arrayValue?.compactMap { $0["pending"]?.intValue }
                .reduce(0, +)
            if last.count >= count && pending == 0 { return last }
            usleep(100_000)
        }
        Issue.record("not settled in \(timeout) s: ledger \(last.count)/\(count); submitter: \(submitter?.readErrors() ?? "")")
        return last
    }
    /// The sum of one counter of the aggregator's partitions.
    func aggregatorTotal(_ key: String) throws -> Int {
        (try aggregator.client().call("status")["partitions"]?.arrayValue ?? []).compactMap { $0[key]?.intValue }.reduce(0, +)
    }

    /// Waits until `condition` holds (polling), or fails the test after `timeout`.
    func wait(for what: String, timeout: Double = 60, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(100_000)
        }
        Issue.record("timed out waiting for \(what); submitter: \(submitter?.readErrors() ?? "")")
    }
}
