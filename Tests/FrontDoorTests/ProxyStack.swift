import Foundation
import FrontDoorKit
import StackTestSupport
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a command to completion; its output is collected in files, so neither stream can fill
/// up and stall it.
enum Command {
    struct Outcome {
        var status: Int32
        var output: String
        var errors: String
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Outcome {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("out")
        let errURL = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, output: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            errors: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    /// The first executable named `name` on the usual system paths.
    static func find(_ name: String) -> String? {
        for directory in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let path = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}

/// The repository's files (the shipped nginx configuration, scripts/submit-meter).
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .path
}

/// The tools the proxy tests run: Debian's nginx, curl and openssl, installed with apt-get when
/// missing (once per test run). A machine where they cannot be installed fails the tests that
/// need them, saying why.
enum SystemTools {
    private static let result = Mutex<Result<Void, Command.Failure>?>(nil)
    static let packages = ["nginx", "curl", "openssl"]

    /// The path of `name` (one of `packages`), installing the missing ones first.
    static func path(_ name: String) throws -> String {
        try result.withLock { cached in
            if cached == nil { cached = install() }
            try cached!.get()
        }
        guard let found = Command.find(name) else { throw Command.Failure(description: "\(name) is not on the system paths") }
        return found
    }

    private static func install() -> Result<Void, Command.Failure> {
        let missing = packages.filter { Command.find($0) == nil }
        if missing.isEmpty { return .success(()) }
        let sudo = Command.find("sudo")
        guard let aptGet = Command.find("apt-get"), getuid() == 0 || sudo != nil else {
            return .failure(
                Command.Failure(
                    description:
                        "\(missing.joined(separator: ", ")) not installed and cannot be installed here (needs apt-get, and root or sudo): apt-get install \(missing.joined(separator: " "))"
                ))
        }
        var environment = ProcessInfo.processInfo.environment
        environment["DEBIAN_FRONTEND"] = "noninteractive"
        // Runlevel 1: the package's maintainer scripts must not start a system nginx on port 80.
        environment["RUNLEVEL"] = "1"
        func apt(_ arguments: [String]) -> String {
            let outcome =
                getuid() == 0
                ? try? Command.run(aptGet, arguments, environment: environment)
                : try? Command.run(sudo!, ["-n", "-E", aptGet] + arguments, environment: environment)
            return outcome.map { $0.output + $0.errors } ?? "apt-get could not be run\n"
        }
        let install = ["install", "-y", "-qq", "--no-install-recommends"] + missing
        var log = apt(install)
        if packages.allSatisfy({ Command.find($0) != nil }) { return .success(()) }
        // Package lists may be missing or stale on a fresh machine.
        log += apt(["update", "-qq"]) + apt(install)
        if packages.allSatisfy({ Command.find($0) != nil }) { return .success(()) }
        return .failure(Command.Failure(description: "`apt-get install \(missing.joined(separator: " "))` failed:\n\(log)"))
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with openssl; also the CA the
/// clients trust.
struct TestCertificate {
    let certificate: String
    let key: String

    init(directory: String) throws {
        certificate = directory + "/frontdoor-cert.pem"
        key = directory + "/frontdoor-key.pem"
        let openssl = try SystemTools.path("openssl")
        let outcome = try Command.run(
            openssl,
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                "/CN=metering-frontdoor-test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", certificate,
            ])
        guard outcome.status == 0 else { throw Command.Failure(description: "openssl req failed: \(outcome.errors)") }
    }
}

/// The shipped deploy/nginx/metering-frontdoor.conf running in a real nginx on loopback, in
/// front of a real meter-frontdoor. Only the addresses and certificate paths are changed.
final class NginxProxy {
    let directory: String
    let port: Int
    let process = Process()

    init(directory: String, upstreamPort: Int, certificate: TestCertificate) throws {
        let nginx = try SystemTools.path("nginx")
        self.directory = directory + "/nginx"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        port = try LoopbackPort.free()
        var site = try String(contentsOfFile: Repository.root + "/deploy/nginx/metering-frontdoor.conf", encoding: .utf8)
        let replacements = [
            ("    server 127.0.0.1:8091;\n", "    server 127.0.0.1:\(upstreamPort);\n"),
            ("    listen 443 ssl;\n", "    listen 127.0.0.1:\(port) ssl;\n"),
            ("    listen [::]:443 ssl;\n", ""),
            ("/etc/ssl/certs/metering.example.com.pem", certificate.certificate),
            ("/etc/ssl/private/metering.example.com.key", certificate.key),
        ]
        for (old, new) in replacements {
            guard site.components(separatedBy: old).count == 2 else {
                throw Command.Failure(
                    description: "deploy/nginx/metering-frontdoor.conf no longer has exactly one \"\(old)\"; update the test")
            }
            site = site.replacingOccurrences(of: old, with: new)
        }
        let dir = self.directory
        try site.write(toFile: dir + "/metering-frontdoor.conf", atomically: true, encoding: .utf8)
        let main = """
            daemon off;
            worker_processes 1;
            pid \(dir)/nginx.pid;
            error_log \(dir)/error.log info;
            \(getuid() == 0 ? "user root root;" : "")
            events { worker_connections 128; }
            http {
                access_log \(dir)/access.log;
                client_body_temp_path \(dir)/body;
                proxy_temp_path \(dir)/proxy;
                fastcgi_temp_path \(dir)/fastcgi;
                uwsgi_temp_path \(dir)/uwsgi;
                scgi_temp_path \(dir)/scgi;
                include \(dir)/metering-frontdoor.conf;
            }
            """
        try main.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: nginx)
        process.arguments = ["-p", dir, "-e", dir + "/error.log", "-c", dir + "/nginx.conf"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if !process.isRunning {
                throw Command.Failure(
                    description: "nginx exited: \((try? String(contentsOfFile: dir + "/error.log", encoding: .utf8)) ?? "")")
            }
            if Self.accepts(port) { return }
            usleep(20_000)
        }
        throw Command.Failure(description: "nginx did not listen on \(port) in 20 s")
    }

    var baseURL: String { "https://127.0.0.1:\(port)" }

    var errorLog: String { (try? String(contentsOfFile: directory + "/error.log", encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
    }

    private static func accepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// An HTTPS answer as curl received it.
struct HTTPAnswer {
    var status: Int
    var headers: [String: String]
    var body: String
    var json: JSONValue? { try? JSONParser.parse(Array(body.utf8)) }
    var errorCode: String? { json?["error"]?["code"]?.stringValue }
    var results: [JSONValue] { json?["results"]?.arrayValue ?? [] }
}

/// Ingest, the front door and nginx with the shipped configuration, for one test.
final class ProxyStack {
    let home = StackHome()
    let ingest: IngestProcess
    let frontDoor: FrontDoorProcess
    let certificate: TestCertificate
    let proxy: NginxProxy

    init(frontDoorEnvironment: [String: String] = [:]) throws {
        ingest = try IngestProcess(home: home)
        frontDoor = try FrontDoorProcess(home: home, environment: frontDoorEnvironment)
        certificate = try TestCertificate(directory: home.path)
        proxy = try NginxProxy(directory: home.path, upstreamPort: frontDoor.port, certificate: certificate)
    }

    var store: CredentialStore { CredentialStore(path: CredentialStore.defaultPath(home: home.path)) }

    /// `meterctl` with this stack's home.
    func meterctl(_ arguments: [String]) throws -> Command.Outcome {
        var environment = ProcessInfo.processInfo.environment
        environment["METERING_HOME"] = home.path
        return try Command.run(Binaries.path("meterctl"), arguments, environment: environment)
    }

    /// A new credential made by `meterctl credentials create`, with its key.
    func createCredential(_ arguments: [String]) throws -> CredentialKey {
        let outcome = try meterctl(["credentials", "create", "--json"] + arguments)
        guard outcome.status == 0, let json = try? JSONParser.parse(Array(outcome.output.utf8)), let text = json["key"]?.stringValue,
            let key = CredentialKey(text: text)
        else {
            throw Command.Failure(description: "meterctl credentials create failed (\(outcome.status)): \(outcome.errors)\(outcome.output)")
        }
        return key
    }

    /// A request through the proxy, with exactly the headers given.
    func send(_ method: String = "POST", path: String = "/v1/messages", body: [UInt8], headers: [(name: String, value: String)]) throws
        -> HTTPAnswer
    {
        let directory = home.path + "/curl-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Data(body).write(to: URL(fileURLWithPath: directory + "/body"))
        var arguments = [
            "--silent", "--show-error", "--max-time", "20", "--cacert", certificate.certificate, "-X", method, "-D", directory + "/headers",
            "-o", directory + "/response", "-w", "%{http_code}", "-H", "Content-Type: application/json", "-H", "Expect:",
        ]
        for (name, value) in headers { arguments += ["-H", "\(name): \(value)"] }
        if method != "GET" { arguments += ["--data-binary", "@" + directory + "/body"] }
        arguments.append(proxy.baseURL + path)
        let outcome = try Command.run(try SystemTools.path("curl"), arguments)
        guard outcome.status == 0, let status = Int(outcome.output) else {
            throw Command.Failure(description: "curl failed (\(outcome.status)): \(outcome.errors)")
        }
        var fields: [String: String] = [:]
        let head = (try? String(contentsOfFile: directory + "/headers", encoding: .utf8)) ?? ""
        for line in head.split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let response = (try? String(contentsOfFile: directory + "/response", encoding: .utf8)) ?? ""
        return HTTPAnswer(status: status, headers: fields, body: response)
    }

    /// A request signed for `key` now with a fresh nonce (or the values given).
    func signedHeaders(
        _ key: CredentialKey, body: [UInt8], path: String = "/v1/messages", timestamp: Int64? = nil, nonce: String? = nil
    ) -> [(name: String, value: String)] {
        RequestSignature.headers(
            key: key, method: "POST", path: path, body: body, timestamp: timestamp ?? Int64(Date().timeIntervalSince1970),
            nonce: nonce ?? UUID().uuidString.replacingOccurrences(of: "-", with: ""))
    }

    func post(_ key: CredentialKey, _ messages: [JSONValue]) throws -> HTTPAnswer {
        let body = JSONWriter.bytes(.array(messages))
        return try send(body: body, headers: signedHeaders(key, body: body))
    }

    /// Every event the front door appended, from ingest's log (`read` on every partition).
    func frontDoorEvents() throws -> [JSONValue] {
        try readAll(try ingest.client(), partitions: 4).compactMap { $0["event"] }.filter {
            $0["id"]?.stringValue?.hasPrefix("fd:") == true || $0["value"]?["properties"]?[Submission.credentialProperty] != nil
        }
    }
}

/// A `UsageReported` for a managed application's `resourceUri`, with a new id unless one is given.
func usage(uri: String, quantity: String, id: String = UUID().uuidString, meter: String = "cpu") -> JSONValue {
    var members: [JSONObject.Member] = [.init("id", .string(id))]
    members.append(.init("type", "UsageReported"))
    members.append(
        .init(
            "value",
            ["resourceUri": .string(uri), "timestamp": "2024-03-01T10:00:00Z", "meterName": .string(meter), "quantity": .number(quantity)]))
    return .object(JSONObject(members))
}
