import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meterctl ping` and `submitter-status --max-age`: the health checks of compose.yaml. Each must
/// fail when its process is gone or hung, or a container would be reported healthy while dead.
@Suite("meterctl health checks", .serialized)
struct PingTests {
    /// Runs `meterctl` to its end: exit status, standard output, standard error.
    static func meterctl(_ arguments: [String], home: StackHome) throws -> (status: Int32, output: String, errors: String) {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        environment["METERING_HOME"] = home.path
        return try runToEnd("meterctl", arguments, environment: environment)
    }

    @Test("ping exits 0 when ingest answers on either socket, and 1 naming the path once ingest is gone")
    func socketAnswers() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let client = try Self.meterctl(["ping"], home: home)
        #expect(client.status == 0)
        #expect(client.output.contains("\(home.clientSocket) answers: status ok"))
        let admin = try Self.meterctl(["ping", "--socket", home.adminSocket], home: home)
        #expect(admin.status == 0)
        ingest.kill(SIGKILL)
        let gone = try Self.meterctl(["ping", "--socket", home.clientSocket], home: home)
        #expect(gone.status == 1)
        #expect(gone.errors.contains("\(home.clientSocket) does not answer"))
    }

    @Test("ping fails within its timeout when a process accepts connections but never replies")
    func hungProcess() throws {
        let home = StackHome()
        try FileManager.default.createDirectory(atPath: home.path + "/run", withIntermediateDirectories: true)
        let path = home.path + "/run/hung.sock"
        // Listening with nobody reading: connections complete in the backlog and hang, like a wedged server.
        let listener = try UnixSocket.listen(path: path, mode: 0o600)
        defer { close(listener) }
        let started = Date()
        let hung = try Self.meterctl(["ping", "--socket", path, "--timeout", "0.5"], home: home)
        #expect(hung.status == 1)
        #expect(hung.errors.contains("no reply in 0.5 s"))
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test("ping --url exits 0 for a 2xx from the emulator, and 1 for a 404 or a refused connection")
    func httpAnswers() throws {
        let home = StackHome()
        let emulator = try EmulatorProcess(home: home, environment: ["METERING_EMULATOR_CLOCK": "system"])
        let ok = try Self.meterctl(["ping", "--url", emulator.baseURL + "/emulator/stats"], home: home)
        #expect(ok.status == 0)
        #expect(ok.output.contains("answers: HTTP 200"))
        let missing = try Self.meterctl(["ping", "--url", emulator.baseURL + "/no-such-page"], home: home)
        #expect(missing.status == 1)
        #expect(missing.errors.contains("HTTP 404"))
        emulator.kill(SIGKILL)
        let refused = try Self.meterctl(["ping", "--url", emulator.baseURL + "/emulator/stats", "--timeout", "2"], home: home)
        #expect(refused.status == 1)
        #expect(refused.errors.contains("does not answer"))
    }

    @Test("ping refuses a bad URL or timeout with a message naming the option")
    func badOptions() throws {
        let home = StackHome()
        let url = try Self.meterctl(["ping", "--url", "ftp://example"], home: home)
        #expect(url.status == 1)
        #expect(url.errors.contains("--url takes an http:// or https:// URL"))
        let timeout = try Self.meterctl(["ping", "--timeout", "0"], home: home)
        #expect(timeout.status == 1)
        #expect(timeout.errors.contains("--timeout takes a positive number of seconds"))
    }

    @Test("submitter-status --max-age passes while the submitter's passes keep coming, and fails once it has stopped")
    func submitterFreshness() throws {
        let home = StackHome()
        // The submitter writes its status under run/ but does not create it (systemd and the image do).
        try FileManager.default.createDirectory(atPath: home.path + "/run", withIntermediateDirectories: true)
        let statusFile = home.path + "/run/submitter.status.json"
        let before = try Self.meterctl(["submitter-status", "--max-age", "30"], home: home)
        #expect(before.status == 1)
        #expect(before.errors.contains("no submitter status"))
        // No aggregator answers: every pass fails and backs off, but passes still come.
        let submitter = try SubmitterProcess(home: home, environment: ["METERING_SUBMIT_MAX_BACKOFF": "1"])
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: statusFile) && Date() < deadline { usleep(20_000) }
        let alive = try Self.meterctl(["submitter-status", "--max-age", "30"], home: home)
        #expect(alive.status == 0)
        #expect(alive.output.contains("last error: cannot read pending items"))
        submitter.kill(SIGKILL)
        usleep(1_200_000)
        let stale = try Self.meterctl(["submitter-status", "--max-age", "1"], home: home)
        #expect(stale.status == 1)
        #expect(stale.errors.contains("is more than 1.0 s ago"))
    }
}
