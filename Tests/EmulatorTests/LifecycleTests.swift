import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Starting, configuring, stopping, and following meter-ingest's clock.
@Suite("The marketplace emulator's process")
struct LifecycleTests {
    @Test("it prints and writes its bound address, and SIGTERM stops it cleanly, removing the address file")
    func addressAndStop() throws {
        let emulator = try Emulator()
        let addressFile = emulator.home.path + "/run/emulator.addr"
        #expect(emulator.baseURL.hasPrefix("http://127.0.0.1:"))
        #expect(emulator.port > 0)
        #expect(emulator.output == "listening on \(emulator.baseURL)\n")
        #expect(try String(contentsOfFile: addressFile, encoding: .utf8) == emulator.baseURL + "\n")
        #expect(try emulator.call("GET", "/emulator/clock").status == 200)
        #expect(emulator.stop(SIGTERM) == 0)
        #expect(!FileManager.default.fileExists(atPath: addressFile))
        #expect(emulator.log.contains("stopped cleanly"))
    }

    @Test("the port comes from --port or METERING_EMULATOR_PORT, the flag first")
    func port() throws {
        let free = try LoopbackPort.reusable()
        let flag = try Emulator(arguments: ["--clock", "manual", "--port", String(free)])
        #expect(flag.baseURL == "http://127.0.0.1:\(free)")
        flag.stop()
        let variable = try Emulator(environment: ["METERING_EMULATOR_PORT": String(free)])
        #expect(variable.baseURL == "http://127.0.0.1:\(free)")
        // The port is taken now: a second emulator on it fails at start-up, naming the address.
        let taken = try Emulator.run(["--port", String(free)])
        #expect(taken.status == 78)
        #expect(taken.errors.contains("127.0.0.1:\(free)"))
    }

    @Test("--help lists the settings and endpoints; a bad setting fails at start-up naming it")
    func settings() throws {
        let help = try Emulator.run(["--help"])
        #expect(help.status == 0)
        for name in [
            "METERING_EMULATOR_PORT", "METERING_EMULATOR_CLOCK", "METERING_EMULATOR_NO_AUTH", "METERING_EMULATOR_CLIENT_SECRET",
            "METERING_EMULATOR_UNKNOWN_RESOURCES", "METERING_EMULATOR_UNKNOWN_DIMENSIONS", "/api/batchUsageEvent", "/emulator/faults",
        ] {
            #expect(help.output.contains(name), "\(name)")
        }
        let bad: [([String], [String: String], String)] = [
            (["--port", "70000"], [:], "--port"),
            ([], ["METERING_EMULATOR_PORT": "http"], "METERING_EMULATOR_PORT"),
            (["--clock", "sundial"], [:], "--clock"),
            ([], ["METERING_EMULATOR_NO_AUTH": "maybe"], "METERING_EMULATOR_NO_AUTH"),
            (["--host", "localhost:1"], [:], "METERING_EMULATOR_HOST"),
            (["--colck", "manual"], [:], "--colck"),
        ]
        for (arguments, environment, name) in bad {
            let result = try Emulator.run(arguments, environment: environment)
            #expect(result.status == 64, "\(arguments) \(environment)")
            #expect(result.errors.contains(name), "\(result.errors)")
        }
    }

    @Test("with --clock ingest it follows meter-ingest's manual clock, and answers 503 while ingest is away")
    func followsIngest() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        func advance(_ time: String) throws {
            _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": .string(time)])))
        }
        try advance("2024-01-31T10:20:00Z")
        let emulator = try Emulator(home: home, arguments: ["--clock", "ingest", "--no-auth"])
        #expect(try emulator.call("GET", "/emulator/clock").json?["time"] == "2024-01-31T10:20:00Z")
        let first = try emulator.batch(
            [
                usageItem("a", hour: "2024-01-31T10:00:00Z"), usageItem("b", hour: "2024-01-30T11:00:00Z"),
                usageItem("c", hour: "2024-01-30T10:00:00Z"),
            ],
            token: nil)
        #expect(first.json?["result"]?.arrayValue?.map { $0["status"]?.stringValue ?? "?" } == ["Accepted", "Accepted", "Expired"])
        #expect(first.json?["result"]?.arrayValue?.first?["messageTime"] == "2024-01-31T10:20:00Z")
        try advance("2024-02-01T10:30:00Z")
        let later = try emulator.batch(
            [usageItem("d", hour: "2024-01-31T10:00:00Z"), usageItem("e", hour: "2024-02-01T10:00:00Z")], token: nil)
        #expect(later.json?["result"]?.arrayValue?.map { $0["status"]?.stringValue ?? "?" } == ["Expired", "Accepted"])
        #expect(try emulator.call("POST", "/emulator/clock", json: ["time": "2030-01-01T00:00:00Z"]).status == 409)

        // The stack's own launcher finds it the same way.
        let stackEmulator = try EmulatorProcess(home: home, environment: ["METERING_EMULATOR_NO_AUTH": "1"])
        #expect(try TestHTTP.call("GET", stackEmulator.baseURL + "/emulator/clock").json?["time"] == "2024-02-01T10:30:00Z")

        ingest.kill()
        let away = try emulator.batch([usageItem("f", hour: "2024-02-01T10:00:00Z")], token: nil)
        #expect(away.status == 503)
        #expect(try emulator.ledger().count == 3)
    }
}
