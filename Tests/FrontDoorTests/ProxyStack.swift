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

extension NginxProxy {
    /// The shipped deploy/nginx/metering-frontdoor.conf in front of a meter-frontdoor on `upstreamPort`.
    convenience init(directory: String, upstreamPort: Int, certificate: TestCertificate) throws {
        try self.init(
            directory: directory, site: "metering-frontdoor.conf",
            replacements: [("    server 127.0.0.1:8091;\n", "    server 127.0.0.1:\(upstreamPort);\n")], certificate: certificate)
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
