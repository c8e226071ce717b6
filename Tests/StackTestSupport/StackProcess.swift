public import Foundation
import Synchronization
public import Transport
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Where `swift build` put the executables: beside the test bundle.
public enum Binaries {
    public static let directory: String = {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("meter-ingest").path) { return url.path }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug").path
    }()

    public static func path(_ name: String) -> String { directory + "/" + name }
}

/// A stack home for one test: data and sockets under a fresh directory, removed afterwards.
public final class StackHome {
    public let path: String
    public init() {
        // Short: Unix socket paths are limited to 107 bytes.
        path = "/tmp/mt-" + String(UUID().uuidString.prefix(8))
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    public var clientSocket: String { path + "/run/ingest.sock" }
    public var adminSocket: String { path + "/run/ingest-admin.sock" }
    public var aggregatorSocket: String { path + "/run/aggregator.sock" }
    public var querySocket: String { path + "/run/query.sock" }
}

/// A real server executable of the stack, started for a test on a `StackHome`.
public class ServerProcess {
    public let home: StackHome
    public let process = Process()
    public let name: String
    let errorPipe = Pipe()
    /// Standard error, read as it comes: a chatty process must never fill the pipe and block.
    private let logged = LogCollector()

    /// Starts `executable` with `METERING_HOME` set and waits until `readySocket` (if any) answers `status`.
    /// With `openFileLimit`, it runs with that many descriptors at most (soft and hard limit).
    public init(
        executable: String, home: StackHome, readySocket: String?, environment: [String: String] = [:], arguments: [String] = [],
        openFileLimit: Int? = nil
    ) throws {
        self.home = home
        self.name = executable
        if let openFileLimit {
            // The shell sets the limit, then becomes the server: same process, same pid.
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(openFileLimit) && exec \"$0\" \"$@\"", Binaries.path(executable)] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: Binaries.path(executable))
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["METERING_HOME"] = home.path
        env["METERING_CLOCK"] = "manual"
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "LISTEN_FDS")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardError = errorPipe
        process.standardOutput = FileHandle.nullDevice
        logged.collect(from: errorPipe.fileHandleForReading)
        try process.run()
        if let readySocket { try waitUntilServing(readySocket) }
    }

    /// Waits until `socket` answers `status`.
    public func waitUntilServing(_ socket: String, timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning { throw StartFailure(message: "\(name) exited: \(readErrors())") }
            if let client = try? UnixClient(path: socket), (try? client.call("status")) != nil { return }
            usleep(20_000)
        }
        throw StartFailure(message: "\(name) did not start in \(timeout) s: \(readErrors())")
    }

    public struct StartFailure: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Its standard error so far (complete once it has exited).
    public func readErrors() -> String {
        if !process.isRunning { logged.finish() }
        return logged.text
    }

    /// What it has logged so far, without waiting for it to exit.
    public func log() -> String { readErrors() }

    /// Waits until the folding process on `socket` (aggregator, query) has folded everything
    /// ingest had when asked, in the partitions it reports (all of ingest's with `everyPartition`).
    public func waitUntilFolded(socket: String, with ingest: IngestProcess, everyPartition: Bool, timeout: Double) throws {
        let target = try ingest.client().call("status")["partitions"]?.arrayValue?.map { $0["nextSequence"]?.intValue ?? 0 } ?? []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let partitions = try UnixClient(path: socket).call("status")["partitions"]?.arrayValue ?? []
            let caughtUp = partitions.allSatisfy { entry in
                guard let partition = entry["partition"]?.intValue, partition < target.count else { return false }
                return (entry["position"]?.intValue ?? -1) >= target[partition]
            }
            if caughtUp && !partitions.isEmpty && (!everyPartition || partitions.count == target.count) { return }
            usleep(20_000)
        }
        throw StartFailure(message: "\(name) did not catch up in \(timeout) s: \(readErrors())")
    }

    /// Its resident memory now and at its peak, in bytes (`VmRSS` and `VmHWM` of
    /// `/proc/<pid>/status`); nil once it has exited.
    public var residentMemory: (current: Int, peak: Int)? {
        guard process.isRunning, let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        else { return nil }
        func kilobytes(_ field: String) -> Int? {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
            return line.split(separator: " ").compactMap { Int($0) }.first
        }
        guard let current = kilobytes("VmRSS"), let peak = kilobytes("VmHWM") else { return nil }
        return (current * 1024, peak * 1024)
    }

    public func kill(_ signal: Int32 = SIGKILL) {
        Glibc.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { kill() }
    }
}

/// A real `meter-ingest` process started for a test (manual clock unless told otherwise).
public final class IngestProcess: ServerProcess {
    public init(home: StackHome, environment: [String: String] = [:], openFileLimit: Int? = nil) throws {
        try super.init(
            executable: "meter-ingest", home: home, readySocket: home.adminSocket, environment: environment, openFileLimit: openFileLimit)
    }

    public func client() throws -> UnixClient { try UnixClient(path: home.clientSocket) }
    public func admin() throws -> UnixClient { try UnixClient(path: home.adminSocket) }
}

/// A real `meter-aggregator` process started for a test.
public final class AggregatorProcess: ServerProcess {
    public init(home: StackHome, environment: [String: String] = [:]) throws {
        try super.init(executable: "meter-aggregator", home: home, readySocket: home.aggregatorSocket, environment: environment)
    }

    public func client() throws -> UnixClient { try UnixClient(path: home.aggregatorSocket) }

    /// Waits until every owned partition has folded everything ingest had when asked.
    public func waitUntilCaughtUp(with ingest: IngestProcess, timeout: Double = 30) throws {
        try waitUntilFolded(socket: home.aggregatorSocket, with: ingest, everyPartition: false, timeout: timeout)
    }
}

/// A real `meter-query` process started for a test.
public final class QueryProcess: ServerProcess {
    public init(home: StackHome, environment: [String: String] = [:]) throws {
        try super.init(executable: "meter-query", home: home, readySocket: home.querySocket, environment: environment)
    }

    public func client() throws -> UnixClient { try UnixClient(path: home.querySocket) }

    /// The port of its run-rate page (started with `METERING_QUERY_HTTP=127.0.0.1:0`), from the
    /// address file it writes.
    public func pagePort(timeout: Double = 20) throws -> Int {
        try port(addressFile: home.path + "/run/query-http.addr", timeout: timeout)
    }

    /// The port of its usage API (started with `METERING_QUERY_ADAPTER_HTTP=127.0.0.1:0`).
    public func adapterPort(timeout: Double = 20) throws -> Int {
        try port(addressFile: home.path + "/run/query-adapters.addr", timeout: timeout)
    }
}

extension ServerProcess {
    /// The port in the address file (`http://HOST:PORT`) a process writes once it listens.
    public func port(addressFile: String, timeout: Double = 20) throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let address = ((try? String(contentsOfFile: addressFile, encoding: .utf8)) ?? "").trimmingCharacters(
                in: .whitespacesAndNewlines)
            if address.hasPrefix("http"), let port = Int(address.split(separator: ":").last ?? "") { return port }
            if !process.isRunning { throw StartFailure(message: "\(name) exited: \(readErrors())") }
            usleep(20_000)
        }
        throw StartFailure(message: "\(name) wrote no address to \(addressFile) in \(timeout) s")
    }
}

extension QueryProcess {
    /// Waits until every partition has folded everything ingest had when asked.
    public func waitUntilCaughtUp(with ingest: IngestProcess, timeout: Double = 30) throws {
        try waitUntilFolded(socket: home.querySocket, with: ingest, everyPartition: true, timeout: timeout)
    }
}

/// A real `meter-marketplace-emulator` on an ephemeral loopback port, following ingest's clock.
public final class EmulatorProcess: ServerProcess {
    /// `http://127.0.0.1:PORT`
    public private(set) var baseURL = ""

    public init(home: StackHome, arguments: [String] = [], environment: [String: String] = [:]) throws {
        let addressFile = home.path + "/run/emulator.addr"
        try? FileManager.default.removeItem(atPath: addressFile)
        var env = ["METERING_EMULATOR_PORT": "0", "METERING_EMULATOR_CLOCK": "ingest"]
        for (key, value) in environment { env[key] = value }
        try super.init(executable: "meter-marketplace-emulator", home: home, readySocket: nil, environment: env, arguments: arguments)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: addressFile, encoding: .utf8),
                text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("http")
            {
                baseURL = text.trimmingCharacters(in: .whitespacesAndNewlines)
                return
            }
            if !process.isRunning { throw StartFailure(message: "meter-marketplace-emulator exited: \(readErrors())") }
            usleep(20_000)
        }
        throw StartFailure(message: "meter-marketplace-emulator wrote no address in 20 s")
    }

    /// The environment a submitter needs to use this emulator (dummy service principal).
    public var submitterEnvironment: [String: String] {
        [
            "METERING_MARKETPLACE_URL": baseURL, "METERING_TOKEN_URL": baseURL + "/test-tenant/oauth2/token",
            "AZURE_METERING_MARKETPLACE_TENANT_ID": "test-tenant", "AZURE_METERING_MARKETPLACE_CLIENT_ID": "test-client",
            "AZURE_METERING_MARKETPLACE_CLIENT_SECRET": "test-secret",
        ]
    }
}

/// A real `meter-submitter` (it has no socket: started, then watched through its effects).
public final class SubmitterProcess: ServerProcess {
    public init(home: StackHome, environment: [String: String]) throws {
        try super.init(executable: "meter-submitter", home: home, readySocket: nil, environment: environment)
    }
}

/// The address `daemon` serves its metrics on (`METERING_METRICS_ADDR`), as it wrote it whole to
/// `run/metrics/<daemon>.addr`; nil until it has.
public func metricsAddress(_ home: StackHome, _ daemon: String) -> String? {
    guard let text = try? String(contentsOfFile: home.path + "/run/metrics/\(daemon).addr", encoding: .utf8), text.hasSuffix("\n")
    else { return nil }
    return text.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The port of a metrics address (`host:port`).
public func metricsPort(_ address: String) -> Int { Int(address.split(separator: ":").last ?? "") ?? 0 }

/// An append request for `events`.
public func appendRequest(_ events: [JSONValue], id: JSONValue? = nil) -> Request {
    Request(op: "append", id: id, fields: JSONObject(["events": .array(events)]))
}

public func usage(_ resource: String, _ quantity: String, id: String? = nil, meter: String = "cpu") -> JSONValue {
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
public func readAll(_ client: UnixClient, partitions: Int) throws -> [JSONValue] {
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

/// Runs the stack's `executable` to its end with exactly `environment`: its exit status, standard
/// output and standard error (for `--help`, bad settings and one-shot commands such as `meterctl`).
public func runToEnd(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> (
    status: Int32, output: String, errors: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Binaries.path(executable))
    process.arguments = arguments
    process.environment = environment
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    // Read before waiting: a full pipe would block the process forever.
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

/// A real `meter-connector` started for a test: it has no socket, so it is watched through its
/// status file (`$METERING_HOME/run/connector.status.json`).
public final class ConnectorProcess: ServerProcess {
    public var statusPath: String { home.path + "/run/connector.status.json" }

    /// Starts it with the configuration at `config` and waits until its status file shows this
    /// process running; with `waitUntilRunning: false` it returns at once (for start-up failures).
    public init(home: StackHome, config: String, environment: [String: String] = [:], waitUntilRunning: Bool = true) throws {
        var env = ["METERING_CONNECTOR_CONFIG": config]
        for (key, value) in environment { env[key] = value }
        try super.init(executable: "meter-connector", home: home, readySocket: nil, environment: env)
        guard waitUntilRunning else { return }
        let pid = process.processIdentifier
        _ = try waitForStatus(timeout: 20) { $0["pid"]?.intValue == Int(pid) && $0["state"] == "running" }
    }

    /// The status file as it is now.
    public func status() -> JSONValue? {
        guard let data = FileManager.default.contents(atPath: statusPath) else { return nil }
        return try? JSONParser.parse(Array(data))
    }

    /// The status of source `name`.
    public func source(_ name: String) -> JSONValue? {
        status()?["sources"]?.arrayValue?.first { $0["name"]?.stringValue == name }
    }

    /// Waits until `condition` holds for the status file (written by this process).
    @discardableResult
    public func waitForStatus(timeout: Double = 20, _ condition: (JSONValue) -> Bool) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(timeout)
        var last: JSONValue?
        while Date() < deadline {
            if !process.isRunning { throw StartFailure(message: "meter-connector exited: \(readErrors())") }
            if let status = status(), status["pid"]?.intValue == Int(process.processIdentifier) {
                last = status
                if condition(status) { return status }
            }
            usleep(20_000)
        }
        throw StartFailure(
            message:
                "meter-connector's status did not reach the expected state in \(timeout) s; last: \(last.map(JSONWriter.string) ?? "none")")
    }

    /// Stops it with SIGTERM and waits; its exit status.
    @discardableResult
    public func terminate() -> Int32 {
        kill(SIGTERM)
        return process.terminationStatus
    }
}

/// Collects what a process writes to a pipe, on a thread of its own.
final class LogCollector: Sendable {
    private let bytes = Mutex([UInt8]())
    private let done = DispatchSemaphore(value: 0)
    /// Whether `finish` has waited already.
    private let finished = Mutex(false)

    func collect(from handle: FileHandle) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress!, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                bytes.withLock { $0 += buffer[0..<count] }
            }
            done.signal()
        }
        thread.start()
    }

    /// Waits (a little) until the writer's end of the pipe is closed and everything is read.
    func finish() {
        let wait = finished.withLock { finished -> Bool in
            defer { finished = true }
            return !finished
        }
        if wait { _ = done.wait(timeout: .now() + 5) }
    }

    var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
}
