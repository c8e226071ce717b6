import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The repository's files (the shipped nginx configurations, scripts, docs).
public enum Repository {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
}

/// Why a system tool could not be found, installed or run.
public struct ToolFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The tools the proxy tests run: Debian's nginx, curl and openssl, installed with apt-get when
/// missing (once per test run). A machine where they cannot be installed fails the tests that
/// need them, saying why.
public enum SystemTools {
    private static let result = Mutex<Result<Void, ToolFailure>?>(nil)
    static let packages = ["nginx", "curl", "openssl"]

    /// The path of `name` (one of `packages`), installing the missing ones first.
    public static func path(_ name: String) throws -> String {
        try result.withLock { cached in
            if cached == nil { cached = install() }
            try cached!.get()
        }
        guard let found = find(name) else { throw ToolFailure("\(name) is not on the system paths") }
        return found
    }

    /// The first executable named `name` on the usual system paths (nginx lives in sbin).
    public static func find(_ name: String) -> String? {
        for directory in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let path = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    private static func install() -> Result<Void, ToolFailure> {
        let missing = packages.filter { find($0) == nil }
        if missing.isEmpty { return .success(()) }
        let sudo = find("sudo")
        guard let aptGet = find("apt-get"), getuid() == 0 || sudo != nil else {
            return .failure(
                ToolFailure(
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
                ? try? TestCommand.run(aptGet, arguments, environment: environment, timeout: 900)
                : try? TestCommand.run(sudo!, ["-n", "-E", aptGet] + arguments, environment: environment, timeout: 900)
            return outcome.map { $0.output + $0.errors } ?? "apt-get could not be run\n"
        }
        let install = ["install", "-y", "-qq", "--no-install-recommends"] + missing
        var log = apt(install)
        if packages.allSatisfy({ find($0) != nil }) { return .success(()) }
        // Package lists may be missing or stale on a fresh machine.
        log += apt(["update", "-qq"]) + apt(install)
        if packages.allSatisfy({ find($0) != nil }) { return .success(()) }
        return .failure(ToolFailure("`apt-get install \(missing.joined(separator: " "))` failed:\n\(log)"))
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with openssl; also the CA the
/// clients trust.
public struct TestCertificate {
    public let certificate: String
    public let key: String

    public init(directory: String) throws {
        certificate = directory + "/proxy-cert.pem"
        key = directory + "/proxy-key.pem"
        let openssl = try SystemTools.path("openssl")
        let outcome = try TestCommand.run(
            openssl,
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                "/CN=metering-proxy-test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", certificate,
            ])
        guard outcome.status == 0 else { throw ToolFailure("openssl req failed: \(outcome.errors)") }
    }
}

/// One of the shipped deploy/nginx configurations running in a real nginx on loopback, with a
/// test certificate. Only the listening address, the certificate paths and the `replacements`
/// given (the upstream's address) are changed; each must occur exactly once.
public final class NginxProxy {
    public let directory: String
    public let port: Int
    let process = Process()

    public init(directory: String, site: String, replacements: [(String, String)], certificate: TestCertificate) throws {
        let nginx = try SystemTools.path("nginx")
        self.directory = directory + "/nginx"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        port = try LoopbackPort.free()
        var text = try String(contentsOfFile: Repository.root + "/deploy/nginx/" + site, encoding: .utf8)
        let all =
            replacements + [
                ("    listen 443 ssl;\n", "    listen 127.0.0.1:\(port) ssl;\n"), ("    listen [::]:443 ssl;\n", ""),
                ("/etc/ssl/certs/metering.example.com.pem", certificate.certificate),
                ("/etc/ssl/private/metering.example.com.key", certificate.key),
            ]
        for (old, new) in all {
            guard text.components(separatedBy: old).count == 2 else {
                throw ToolFailure("deploy/nginx/\(site) no longer has exactly one \"\(old)\"; update the test")
            }
            text = text.replacingOccurrences(of: old, with: new)
        }
        let dir = self.directory
        try text.write(toFile: dir + "/" + site, atomically: true, encoding: .utf8)
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
                include \(dir)/\(site);
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
                throw ToolFailure("nginx exited: \((try? String(contentsOfFile: dir + "/error.log", encoding: .utf8)) ?? "")")
            }
            if Self.accepts(port) { return }
            usleep(20_000)
        }
        throw ToolFailure("nginx did not listen on \(port) in 20 s")
    }

    public var baseURL: String { "https://127.0.0.1:\(port)" }

    public var errorLog: String { (try? String(contentsOfFile: directory + "/error.log", encoding: .utf8)) ?? "" }

    /// nginx's access log so far.
    public var accessLog: String { (try? String(contentsOfFile: directory + "/access.log", encoding: .utf8)) ?? "" }

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
