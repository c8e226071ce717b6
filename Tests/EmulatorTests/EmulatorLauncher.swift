import Foundation
import HTTP
import StackTestSupport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A real `meter-marketplace-emulator` started for one test on a fresh `StackHome`, found
/// through the address it writes to `$METERING_HOME/run/emulator.addr`.
final class Emulator {
    struct StartFailure: Error, CustomStringConvertible {
        var description: String
    }

    let home: StackHome
    let process = Process()
    /// `http://127.0.0.1:PORT`, as read from the address file.
    private(set) var baseURL = ""
    private(set) var port = 0
    /// Standard error goes to a file, not a pipe: a pipe nobody reads would block the emulator
    /// once full.
    let logPath: String
    /// Standard output, where it prints the address it listens on.
    let outputPath: String

    /// Starts the emulator with `arguments` (a manual clock unless told otherwise) on an
    /// ephemeral port and waits for its address file.
    init(
        home: StackHome = StackHome(), arguments: [String] = ["--clock", "manual"], environment: [String: String] = [:]
    ) throws {
        self.home = home
        logPath = home.path + "/emulator.log"
        outputPath = home.path + "/emulator.out"
        let addressFile = home.path + "/run/emulator.addr"
        try? FileManager.default.removeItem(atPath: addressFile)
        process.executableURL = URL(fileURLWithPath: Binaries.path("meter-marketplace-emulator"))
        process.arguments = arguments
        // Nothing from the developer's own environment may change what the test sees.
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        env["METERING_HOME"] = home.path
        env["METERING_EMULATOR_PORT"] = "0"
        env.removeValue(forKey: "NOTIFY_SOCKET")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: addressFile, encoding: .utf8), text.hasSuffix("\n") {
                baseURL = text.trimmingCharacters(in: .whitespacesAndNewlines)
                port = Int(baseURL.split(separator: ":").last ?? "") ?? 0
                return
            }
            if !process.isRunning { throw StartFailure(description: "the emulator exited: \(log)") }
            usleep(10_000)
        }
        throw StartFailure(description: "the emulator wrote no address in 20 s: \(log)")
    }

    /// What it logged so far.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// What it printed so far.
    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    var isRunning: Bool { process.isRunning }

    /// Runs the emulator to its end (for `--help` and bad settings): exit status and output.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String, errors: String) {
        let home = StackHome()
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        env["METERING_HOME"] = home.path
        env["METERING_EMULATOR_PORT"] = "0"
        for (key, value) in environment { env[key] = value }
        return try runToEnd("meter-marketplace-emulator", arguments, environment: env)
    }

    /// Sends `signal` and waits for the exit; returns the exit status.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { stop(SIGKILL) } }

    /// A new connection to it.
    func connect() throws -> TestHTTPClient { try TestHTTPClient(port: port) }

    /// One request on a connection of its own.
    func call(_ method: String, _ target: String, headers: [String: String] = [:], json: JSONValue? = nil) throws -> TestHTTPClient.Response
    {
        try connect().request(method, target, headers: headers, body: json.map { JSONWriter.bytes($0) })
    }

    /// A bearer token from its v1 token endpoint.
    func token(secret: String = "test-secret") throws -> String {
        let response = try connect().request(
            "POST", "/test-tenant/oauth2/token", headers: ["Content-Type": "application/x-www-form-urlencoded"],
            body: Array(
                "grant_type=client_credentials&client_id=test-client&client_secret=\(secret)&resource=20e940b3-4c77-4b0b-9a53-9e16a1b010a7"
                    .utf8))
        guard response.status == 200, let token = response.json?["access_token"]?.stringValue else {
            throw StartFailure(description: "no token: HTTP \(response.status) \(response.text)")
        }
        return token
    }

    /// `POST /api/batchUsageEvent` with `items`.
    func batch(_ items: [JSONValue], token: String?) throws -> TestHTTPClient.Response {
        var headers: [String: String] = [:]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        return try call("POST", "/api/batchUsageEvent?api-version=2018-08-31", headers: headers, json: ["request": .array(items)])
    }

    /// Sets its manual clock.
    func setClock(_ time: String) throws {
        let response = try call("POST", "/emulator/clock", json: ["time": .string(time)])
        guard response.status == 200 else { throw StartFailure(description: "the clock was not set: \(response.text)") }
    }

    /// `GET /emulator/ledger`.
    func ledger() throws -> [JSONValue] {
        try call("GET", "/emulator/ledger").json?.arrayValue ?? []
    }
}

/// A marketplace usage item.
func usageItem(
    _ resource: String = "res-1", dimension: String = "emails", hour: String = "2024-01-31T09:00:00Z", quantity: String = "5",
    plan: String = "plan-1"
) -> JSONValue {
    [
        "resourceId": .string(resource), "effectiveStartTime": .string(hour), "planId": .string(plan), "dimension": .string(dimension),
        "quantity": .number(quantity),
    ]
}
