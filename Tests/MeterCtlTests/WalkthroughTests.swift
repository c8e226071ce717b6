import Foundation
import StackTestSupport
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The repository's root, found from this file.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// The first fenced `sh` block after the line containing `marker` in the file at `path`, as lines.
func shellBlock(in path: String, after marker: String) throws -> [String] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let start = try #require(lines.firstIndex { $0.contains(marker) }, "no \"\(marker)\" in \(path)")
    let open = try #require(lines[start...].firstIndex { $0 == "```sh" }, "no sh block after \"\(marker)\"")
    let close = try #require(lines[(open + 1)...].firstIndex { $0 == "```" })
    return Array(lines[(open + 1)..<close])
}

/// A bash script started for a test with standard input from /dev/null, its output collected in
/// a file. It starts with no signal blocked and SIGINT and SIGTERM at their defaults, as from a
/// shell: the test runner's threads block signals, and a child inherits that mask, which would
/// keep the script (and `timeout` inside it) from ever seeing the SIGTERM it is tested with.
final class ScriptRun {
    let process = Process()
    let outputPath: String

    static let cleanSignals = """
        import os, signal, sys
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        os.execv(sys.argv[1], sys.argv[1:])
        """

    init(_ arguments: [String], environment: [String: String], directory: String) throws {
        outputPath = directory + "/script.out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.cleanSignals, "/bin/bash"] + arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Waits until the output contains `text` (true), the script ends, or the time is up.
    func wait(for text: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !process.isRunning { return output.contains(text) }
            usleep(100_000)
        }
        return false
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
    }
}

@Suite("scripts/walkthrough and the README's commands", .serialized)
struct WalkthroughTests {
    @Test(
        "the walkthrough runs unattended (stdin /dev/null), keeps the stack running with every log in $METERING_HOME/log, the README's commands work on it exactly as written, and SIGTERM stops it all"
    )
    func unattendedWalkthroughAndReadme() throws {
        // A fresh directory standing for the repository's: .build is the real one, .metering is new.
        let work = StackHome()
        try FileManager.default.createSymbolicLink(atPath: work.path + "/.build", withDestinationPath: repositoryRoot + "/.build")
        let home = work.path + "/.metering"
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        environment["METERING_HOME"] = home
        let script = try ScriptRun([repositoryRoot + "/scripts/walkthrough", "--no-build"], environment: environment, directory: work.path)
        let running = script.wait(for: "The stack is running", timeout: 300)
        try #require(running, "the walkthrough did not get through its steps:\n\(script.output)")
        let output = script.output
        for step in [
            "$ meterctl send purchase --resource-id demo-sub-1", "event 0: accepted", "event 0: duplicate", "event 0: rejected",
            "accepted, but it cannot be billed: subscription demo-sub-1 has no meter \"sms\"", "clock at 2024-02-29T00:00:05Z",
            "demo-sub-1 emails 2024-01-31T10:00:00Z 100.1", "demo-sub-1  plan demo-plan", "UsageSubmittedToAPI", "Accepted", "#token=v1.",
            "Ctrl-C (or kill -TERM",
        ] {
            #expect(output.contains(step), "no \"\(step)\" in the walkthrough's output:\n\(output)")
        }
        // It keeps the stack up without a terminal (it used to stop it at once).
        Thread.sleep(forTimeInterval: 2)
        #expect(script.process.isRunning)
        let logs = try FileManager.default.contentsOfDirectory(atPath: home + "/log")
        for name in ["meter-ingest", "meter-aggregator", "meter-query", "meter-notifier", "meter-marketplace-emulator", "meter-submitter"] {
            #expect(logs.contains(name + ".log"), "\(logs)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: home).filter { $0.hasSuffix(".log") }.isEmpty)

        // The README's commands for this moment, each exactly as written, from the directory they assume.
        let block = try shellBlock(in: repositoryRoot + "/README.md", after: "meanwhile, in another terminal")
        let exports = block.filter { $0.hasPrefix("export ") }
        #expect(exports == ["export METERING_HOME=$PWD/.metering"])
        var readmeEnvironment = environment
        readmeEnvironment.removeValue(forKey: "METERING_HOME")
        for line in block where !line.hasPrefix("export ") && !line.isEmpty {
            let program = "set -euo pipefail\ncd '\(work.path)'\n" + exports.joined(separator: "\n") + "\n" + line
            let follows = line.contains("meterctl tail")
            let outcome = try TestCommand.run("/bin/bash", ["-c", program], environment: readmeEnvironment, timeout: follows ? 5 : 60)
            if follows {
                #expect(outcome.timedOut, "\(line): \(outcome.errors)")
                #expect(outcome.output.contains("SubscriptionPurchased demo-sub-1"), "\(line): \(outcome.output)")
            } else {
                #expect(outcome.status == 0 && !outcome.timedOut, "\(line): \(outcome.errors)\(outcome.output)")
            }
            if line.contains("meterctl token") { #expect(outcome.output.contains("/#token=v1."), "\(outcome.output)") }
            if line.contains("meterctl runrate") { #expect(outcome.output.contains("demo-sub-1  plan demo-plan")) }
        }

        let pids = try FileManager.default.contentsOfDirectory(atPath: home + "/run").filter { $0.hasSuffix(".pid") }.compactMap {
            try? String(contentsOfFile: home + "/run/" + $0, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }.compactMap { Int32($0) }
        #expect(pids.count == 6)
        kill(script.process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(90)
        while script.process.isRunning && Date() < deadline { usleep(100_000) }
        #expect(!script.process.isRunning, "the walkthrough did not stop on SIGTERM")
        for pid in pids { #expect(kill(pid, 0) != 0, "process \(pid) of the stack still runs") }
    }

    @Test("the walkthrough explains itself and refuses an unknown option")
    func options() throws {
        let help = try TestCommand.run("/bin/bash", [repositoryRoot + "/scripts/walkthrough", "--help"], timeout: 30)
        #expect(help.status == 0)
        #expect(help.output.contains("whether or not it has a terminal"))
        let bad = try TestCommand.run("/bin/bash", [repositoryRoot + "/scripts/walkthrough", "--fast"], timeout: 30)
        #expect(bad.status == 64)
        #expect(bad.errors.contains("unknown option --fast"))
    }
}
