import Foundation
import StackTestSupport
import Testing

@Suite("Ingest's store settings")
struct StoreSettingsTests {
    static func start(_ settings: [String: String]) throws -> (status: Int32, output: String, errors: String) {
        let home = StackHome()
        var environment = ProcessInfo.processInfo.environment
        environment["METERING_HOME"] = home.path
        environment.removeValue(forKey: "NOTIFY_SOCKET")
        for (key, value) in settings { environment[key] = value }
        return try runToEnd("meter-ingest", [], environment: environment)
    }

    @Test("bad store settings stop start-up with a message naming the setting")
    func badSettings() throws {
        for (settings, named) in [
            (["METERING_STORE": "kafka"], "METERING_STORE"),
            (["METERING_STORE": "jetstream", "METERING_NATS_URL": "http://127.0.0.1:4222"], "METERING_NATS_URL"),
            (["METERING_STORE": "jetstream", "METERING_NATS_REPLICAS": "2"], "METERING_NATS_REPLICAS"),
            (["METERING_STORE": "jetstream", "METERING_NATS_STREAM": "a.b"], "METERING_NATS_STREAM"),
        ] {
            let result = try Self.start(settings)
            #expect(result.status != 0, "\(settings)")
            #expect(result.errors.contains(named), "\(settings): \(result.errors)")
        }
    }

    @Test("--help lists the store settings")
    func help() throws {
        let result = try runToEnd("meter-ingest", ["--help"], environment: ProcessInfo.processInfo.environment)
        for setting in ["METERING_STORE", "METERING_NATS_URL", "METERING_NATS_STREAM", "METERING_NATS_REPLICAS"] {
            #expect(result.output.contains(setting) || result.errors.contains(setting), "\(setting)")
        }
    }
}
