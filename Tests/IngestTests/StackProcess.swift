import Foundation
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Where `swift build` put the executables: beside the test bundle.
enum Binaries {
    static let directory: String = {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("meter-ingest").path) { return url.path }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug").path
    }()

    static func path(_ name: String) -> String { directory + "/" + name }
}

/// A stack home for one test: data and sockets under a fresh directory, removed afterwards.
final class StackHome {
    let path: String
    init() {
        // Short: Unix socket paths are limited to 107 bytes.
        path = "/tmp/mt-" + String(UUID().uuidString.prefix(8))
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    var clientSocket: String { path + "/run/ingest.sock" }
    var adminSocket: String { path + "/run/ingest-admin.sock" }
}

/// A real `meter-ingest` process started for a test.
final class IngestProcess {
    let home: StackHome
    let process = Process()
    let errorPipe = Pipe()
    private(set) var stderrText = ""

    init(home: StackHome, environment: [String: String] = [:], arguments: [String] = []) throws {
        self.home = home
        process.executableURL = URL(fileURLWithPath: Binaries.path("meter-ingest"))
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["METERING_HOME"] = home.path
        env["METERING_CLOCK"] = "manual"
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "LISTEN_FDS")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardError = errorPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try waitUntilServing()
    }

    /// Waits until the admin socket answers `status` (the last step of start-up).
    func waitUntilServing(timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning { throw StartFailure(message: "meter-ingest exited: \(readErrors())") }
            if let client = try? UnixClient(path: home.adminSocket), (try? client.call("status")) != nil { return }
            usleep(20_000)
        }
        throw StartFailure(message: "meter-ingest did not start in \(timeout) s: \(readErrors())")
    }

    struct StartFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    func readErrors() -> String {
        if process.isRunning { return stderrText }
        stderrText += String(decoding: errorPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return stderrText
    }

    func client() throws -> UnixClient { try UnixClient(path: home.clientSocket) }
    func admin() throws -> UnixClient { try UnixClient(path: home.adminSocket) }

    func kill(_ signal: Int32 = SIGKILL) {
        Glibc.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { kill() }
    }
}

/// An append request for `events`.
func appendRequest(_ events: [JSONValue], id: JSONValue? = nil) -> Request {
    Request(op: "append", id: id, fields: JSONObject(["events": .array(events)]))
}

func usage(_ resource: String, _ quantity: String, id: String? = nil, meter: String = "cpu") -> JSONValue {
    var members: [JSONObject.Member] = [
        .init("type", "UsageReported"),
        .init(
            "value",
            [
                "resourceId": .string(resource), "timestamp": "2022-09-19T13:26:22Z", "meterName": .string(meter),
                "quantity": .number(quantity),
            ]),
    ]
    if let id { members.append(.init("id", .string(id))) }
    return .object(JSONObject(members))
}

/// Every record of every partition, read through the socket.
func readAll(_ client: UnixClient, partitions: Int) throws -> [JSONValue] {
    var records: [JSONValue] = []
    for partition in 0..<partitions {
        var next = 0
        while true {
            let response = try client.call(
                Request(
                    op: "read", fields: JSONObject(["partition": .number(String(partition)), "from": .number(String(next)), "max": 10000])))
            let batch = response["records"]?.arrayValue ?? []
            if batch.isEmpty { break }
            records += batch
            next = (batch.last?["sequence"]?.intValue ?? 0) + 1
        }
    }
    return records
}
