import Daemon
import Testing
import Wire

/// The one log writer: a message is one line, whatever it holds.
@Suite("Log lines")
struct LogTests {
    static let hostile =
        "GET /x\n2026-01-01T00:00:00Z meter-query error: forged\r\u{0}\u{1B}[31m\u{7F}\u{85}\u{2028}\u{2029}\u{202E}\t\"q\" \\ end"

    @Test("control characters, line separators and direction overrides are escaped, so every message is one text line")
    func textLine() {
        let line = Log.line(.notice, Self.hostile, component: "meter-query", time: "2024-01-01T00:00:00Z", json: false, journal: false)
        #expect(line.hasSuffix("\n"))
        #expect(line.dropLast().unicodeScalars.allSatisfy { $0.value >= 0x20 && !(0x7F...0x9F).contains($0.value) && $0.value != 0x2028 })
        #expect(
            line
                == #"2024-01-01T00:00:00Z meter-query notice: GET /x\n2026-01-01T00:00:00Z meter-query error: forged\r\u0000\u001b[31m\u007f\u0085\u2028\u2029\u202e\t"q" \ end"#
                + "\n")
        let journal = Log.line(.warning, "a\nb", component: "meter-query", time: "ignored", json: false, journal: true)
        #expect(journal == "<4>a\\nb\n")
    }

    @Test("a json line is one object with time, component, level and message, and reads back as the message")
    func jsonLine() throws {
        let line = Log.line(.error, Self.hostile, component: "meter-ingest", time: "2024-01-01T00:00:00Z", json: true, journal: false)
        #expect(line.hasSuffix("}\n"))
        #expect(!line.dropLast().contains("\n"))
        let object = try JSONParser.parse(Array(line.dropLast().utf8))
        #expect(object["time"] == "2024-01-01T00:00:00Z")
        #expect(object["component"] == "meter-ingest")
        #expect(object["level"] == "error")
        #expect(object["message"] == .string(Self.hostile))
        let journal = Log.line(.info, "x", component: "c", time: "t", json: true, journal: true)
        #expect(journal == #"<6>{"time":"t","component":"c","level":"info","message":"x"}"# + "\n")
    }

    @Test("a message longer than the limit is cut, with a note of how much is missing")
    func longMessage() {
        let line = Log.line(
            .info, String(repeating: "\n", count: Log.maximumMessageBytes), component: "c", time: "t", json: false, journal: false)
        #expect(line.utf8.count < Log.maximumMessageBytes + 200)
        #expect(line.contains("(cut: \(Log.maximumMessageBytes / 2) more bytes)"))
    }

    @Test("an unknown METERING_LOG_LEVEL or METERING_LOG_FORMAT is refused with a message naming it")
    func unknownSettings() throws {
        #expect(throws: SettingsError.self) { try Log.configure(environment: ["METERING_LOG_LEVEL": "verbose"]) }
        #expect(throws: SettingsError.self) { try Log.configure(environment: ["METERING_LOG_FORMAT": "xml"]) }
        do {
            try Log.configure(environment: ["METERING_LOG_LEVEL": "loud\n"])
            Issue.record("accepted an unknown level")
        } catch {
            #expect(error.message.hasPrefix(#"invalid METERING_LOG_LEVEL="loud\n": expected one of "debug""#))
        }
        try Log.configure(environment: ["METERING_LOG_LEVEL": "WARNING", "METERING_LOG_FORMAT": "json"])
        #expect(!Log.isEnabled(.notice) && Log.isEnabled(.warning))
        try Log.configure(environment: [:])
        #expect(Log.isEnabled(.info) && !Log.isEnabled(.debug))
    }
}
