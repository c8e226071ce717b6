import Foundation
import StackTestSupport
import Testing
import Wire

/// `meter-bench --events N --json FILE`, which scripts/bench-compare relies on to give our stack
/// exactly the work it gives SQLite and PostgreSQL, and to read the figures without parsing a table.
@Suite("meter-bench fixed-size runs")
struct FixedSizeRunTests {
    /// Runs the meter-bench beside the tests; returns its exit status and standard error.
    static func bench(_ arguments: [String]) throws -> (status: Int32, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.path("meter-bench"))
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "NOTIFY_SOCKET")
        process.environment = environment
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    /// The single case of `--json`'s output, after a run of `only` with `events` events.
    static func run(_ only: String, events: Int, home: StackHome) throws -> (document: JSONValue, figures: JSONValue) {
        let json = home.path + "-bench.json"  // beside the home: meter-bench empties the home first
        defer { try? FileManager.default.removeItem(atPath: json) }
        let outcome = try bench([
            "--only", only, "--events", String(events), "--partitions", "2", "--home", home.path, "--json", json,
        ])
        #expect(outcome.status == 0, "\(outcome.errors)")
        let document = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: json))))
        let cases = try #require(document["cases"]?.arrayValue)
        #expect(cases.count == 1)
        let figures = try #require(cases.first)
        #expect(figures["name"]?.stringValue == only)
        return (document, figures)
    }

    static func seconds(_ value: JSONValue?) -> Double? {
        if case .number(let text)? = value { return Double(text) }
        return nil
    }

    @Test("with --events, 16 clients together append exactly that many events, each once, and the JSON says so")
    func singleEventCount() throws {
        let home = StackHome()
        let (document, figures) = try Self.run("single-16", events: 37, home: home)
        #expect(document["events"]?.intValue == 37)
        #expect(figures["events"]?.intValue == 37)
        #expect(figures["requests"]?.intValue == 37)
        #expect((Self.seconds(figures["eventsPerSecond"]) ?? 0) > 0)
        #expect((Self.seconds(figures["p50"]) ?? 0) <= (Self.seconds(figures["p99"]) ?? 0))

        let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "2"])
        let ids = try readAll(ingest.client(), partitions: 2).compactMap { $0["event"]?["id"]?.stringValue }
            .filter { $0.hasPrefix("single-16-") }
        #expect(ids.count == 37)
        #expect(Set(ids).count == 37)
    }

    @Test("with --events not a multiple of 1,000, the batched case sends full requests and then one with the rest")
    func batchedRemainder() throws {
        let home = StackHome()
        let (_, figures) = try Self.run("batch-1000", events: 2_500, home: home)
        #expect(figures["events"]?.intValue == 2_500)
        #expect(figures["requests"]?.intValue == 3)
        let inRequests = try #require(Self.seconds(figures["requestSeconds"]))
        let elapsed = try #require(Self.seconds(figures["elapsed"]))
        #expect(inRequests > 0 && inRequests <= elapsed)
    }

    @Test("--events without a positive integer is refused with status 64 and a message naming it")
    func badEventCount() throws {
        for value in ["0", "-3", "many"] {
            let outcome = try Self.bench(["--events", value])
            #expect(outcome.status == 64)
            #expect(outcome.errors.contains("--events"), "\(outcome.errors)")
        }
    }
}
