import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One server process of the stack under test: started from the directory of `meter-soak`
/// itself, its standard error in a file, optionally under a low open-file limit.
final class StackProcess {
    let name: String
    let process = Process()
    let logPath: String
    /// The largest resident size seen, in bytes (sampled, and `VmHWM` at the end).
    private(set) var peakResident = 0

    init(_ name: String, home: String, environment: [String: String], openFileLimit: Int? = nil) throws {
        self.name = name
        logPath = home + "/log/\(name).log"
        let binary = StackProcess.binaryDirectory + "/" + name
        if let openFileLimit {
            // The shell sets the limit, then becomes the server: same process, same pid.
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(openFileLimit) && exec \"$0\"", binary]
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
        }
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "LISTEN_FDS")
        env["METERING_HOME"] = home
        for (key, value) in environment { env[key] = value }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    /// Where the stack's executables are: beside this one.
    static let binaryDirectory: String = {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    }()

    var isRunning: Bool { process.isRunning }

    /// Samples the resident size; the current size in bytes, nil once it has exited.
    @discardableResult
    func sample() -> Int? {
        guard process.isRunning, let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        else { return nil }
        func bytes(_ field: String) -> Int? {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
            return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
        }
        peakResident = max(peakResident, bytes("VmHWM") ?? 0, bytes("VmRSS") ?? 0)
        return bytes("VmRSS")
    }

    /// The last lines of its log, for a failure report.
    func logTail(_ lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Sends SIGTERM and waits up to `seconds`; the exit status, or nil when it did not stop
    /// (it is then killed).
    func terminate(within seconds: Double) -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        guard !process.isRunning else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }
}

/// Waits until `condition` holds, up to `seconds`; whether it did.
func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(50_000)
    }
    return condition()
}

/// The address an HTTP server wrote to `path` (`http://HOST:PORT`): its port.
func publishedPort(_ path: String) -> Int? {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8), text.hasSuffix("\n") else { return nil }
    return Int(text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").last ?? "")
}
