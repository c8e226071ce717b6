import Foundation
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a command source's program once: no shell, a time limit, a bound on its output, and
/// nothing of a failed run is used (the same window is asked for again next time).
enum CommandRunner {
    /// Standard output beyond this fails the run (it is held in memory to be folded at once).
    static let maximumOutputBytes = 64 << 20

    /// Why a run's output is not used.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `arguments` with `environment` added to the connector's own; returns its standard
    /// output when it exits with status 0 in time. `isStopping` ends the run early (SIGTERM).
    static func run(
        _ arguments: [String], environment: [String: String], timeoutSeconds: Int, isStopping: () -> Bool
    ) -> Result<[UInt8], Failure> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        let stdout = Collector(limit: maximumOutputBytes, keepsTail: false)
        let stderr = Collector(limit: 4096, keepsTail: true)
        do {
            try process.run()
        } catch {
            return .failure(Failure(description: "cannot start \(arguments[0]): \(error.localizedDescription)"))
        }
        let readers = DispatchGroup()
        stdout.start(output.fileHandleForReading, group: readers)
        stderr.start(errors.fileHandleForReading, group: readers)
        let deadline = Date().addingTimeInterval(Double(timeoutSeconds))
        var reason: String?
        while process.isRunning {
            if stdout.overflowed {
                reason = "its output exceeded \(maximumOutputBytes) bytes"
            } else if Date() >= deadline {
                reason = "it ran longer than timeoutSeconds (\(timeoutSeconds) s)"
            } else if isStopping() {
                reason = "the connector is stopping"
            }
            if reason != nil { break }
            usleep(20_000)
        }
        if let reason {
            stop(process)
            _ = readers.wait(timeout: .now() + 2)
            return .failure(Failure(description: "\(arguments[0]) was stopped: \(reason)\(stderr.suffix)"))
        }
        process.waitUntilExit()
        // A grandchild that inherited the pipe may keep it open: do not wait on it forever.
        guard readers.wait(timeout: .now() + 5) == .success else {
            return .failure(Failure(description: "\(arguments[0]) exited but its output stayed open (a background child?)"))
        }
        if stdout.overflowed { return .failure(Failure(description: "the output of \(arguments[0]) exceeded \(maximumOutputBytes) bytes")) }
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let how =
                process.terminationReason == .exit
                ? "exited with status \(process.terminationStatus)" : "was killed by signal \(process.terminationStatus)"
            return .failure(Failure(description: "\(arguments[0]) \(how)\(stderr.suffix)"))
        }
        return .success(stdout.bytes)
    }

    private static func stop(_ process: Process) {
        process.terminate()
        let deadline = Date().addingTimeInterval(2)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Reads one pipe to its end on a thread of its own, keeping at most `limit` bytes.
    private final class Collector: Sendable {
        private let state = Mutex(Collected())
        let limit: Int
        /// Keep the last `limit` bytes (standard error: the end says what went wrong).
        let keepsTail: Bool

        private struct Collected {
            var data: [UInt8] = []
            /// Whether more than `limit` bytes came (when the head is kept).
            var over = false
        }

        init(limit: Int, keepsTail: Bool) {
            self.limit = limit
            self.keepsTail = keepsTail
        }

        var bytes: [UInt8] { state.withLock { $0.data } }
        var overflowed: Bool { state.withLock { $0.over } }

        /// `: <the end of standard error>` when there is any.
        var suffix: String {
            let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? "" : ": " + text.replacingOccurrences(of: "\n", with: " | ")
        }

        func start(_ handle: FileHandle, group: DispatchGroup) {
            group.enter()
            Thread {
                defer { group.leave() }
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    self.state.withLock { state in
                        if self.keepsTail {
                            state.data.append(contentsOf: chunk)
                            if state.data.count > self.limit { state.data.removeFirst(state.data.count - self.limit) }
                        } else if state.data.count + chunk.count > self.limit {
                            state.over = true
                        } else if !state.over {
                            state.data.append(contentsOf: chunk)
                        }
                    }
                }
            }.start()
        }
    }
}
