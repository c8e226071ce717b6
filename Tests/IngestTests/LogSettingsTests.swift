import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

/// `METERING_LOG_LEVEL` and `METERING_LOG_FORMAT`, read by every process the same way.
@Suite("Log settings of every process")
struct LogSettingsTests {
    static let servers = [
        "meter-ingest", "meter-aggregator", "meter-query", "meter-submitter", "meter-frontdoor", "meter-connector",
        "meter-marketplace-emulator",
    ]

    @Test("an unknown log level or format stops start-up with a message naming the variable", arguments: servers)
    func unknownValues(executable: String) throws {
        let home = StackHome()
        for (variable, value) in [("METERING_LOG_LEVEL", "verbose"), ("METERING_LOG_FORMAT", "xml")] {
            // Should one start after all, it listens on an ephemeral port and is stopped.
            let environment = [
                "METERING_HOME": home.path, variable: value, "METERING_EMULATOR_PORT": "0", "METERING_FRONTDOOR_LISTEN": "127.0.0.1:0",
            ]
            let outcome = try TestCommand.run(Binaries.path(executable), [], environment: environment, timeout: 20)
            #expect(outcome.status == 64 && !outcome.timedOut, "\(executable) \(variable): \(outcome.errors)")
            #expect(outcome.errors.contains("invalid \(variable)=\"\(value)\""), "\(executable): \(outcome.errors)")
        }
    }

    @Test("with METERING_LOG_FORMAT=json every line meter-ingest writes is one JSON object with time, component, level and message")
    func jsonFormat() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_LOG_FORMAT": "json"])
        // A rejected request with a line break in it is logged too.
        _ = try? ingest.client().call(Request(op: "no\nsuch-op"))
        ingest.kill(SIGTERM)
        let lines = ingest.readErrors().split(separator: "\n")
        #expect(lines.count >= 3)
        for line in lines {
            let object = try JSONParser.parse(Array(line.utf8))
            #expect(object["component"] == "meter-ingest", "\(line)")
            #expect(object["time"]?.stringValue.flatMap(Timestamp.init(iso8601:)) != nil, "\(line)")
            #expect(["debug", "info", "notice", "warning", "error"].contains(object["level"]?.stringValue ?? ""), "\(line)")
            #expect(object["message"]?.stringValue != nil, "\(line)")
        }
        #expect(lines.contains { $0.contains(#"unknown op \"no\nsuch-op\""#) })
    }
}
