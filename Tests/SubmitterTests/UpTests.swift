import Foundation
import StackTestSupport
import SystemIO
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meterctl up", .serialized)
struct UpTests {
    static func pid(_ home: StackHome, _ name: String) -> Int32? {
        (try? String(contentsOfFile: home.path + "/run/\(name).pid", encoding: .utf8)).flatMap {
            Int32($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    static func alive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    static func waitUntil(_ timeout: Double = 30, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return false
    }

    static let names = [
        "meter-ingest", "meter-aggregator", "meter-query", "meter-notifier", "meter-marketplace-emulator", "meter-submitter",
    ]

    /// Starts `meterctl up` on `home` (manual clock), its output going to `output`.
    static func up(_ home: StackHome, output: Pipe? = nil) throws -> Process {
        let up = Process()
        up.executableURL = URL(fileURLWithPath: Binaries.path("meterctl"))
        up.arguments = ["up", "--home", home.path]
        var environment = ProcessInfo.processInfo.environment
        environment["METERING_CLOCK"] = "manual"
        up.environment = environment
        up.standardOutput = output ?? FileHandle.nullDevice
        up.standardError = output ?? FileHandle.nullDevice
        try up.run()
        return up
    }

    /// Waits until every process of the stack runs and the addresses are written.
    static func waitUntilRunning(_ home: StackHome) -> Bool {
        waitUntil(60) {
            names.allSatisfy { pid(home, $0).map(alive) == true } && (try? UnixClient(path: home.querySocket).call("status")) != nil
                && FileManager.default.fileExists(atPath: home.path + "/run/emulator.addr")
                && FileManager.default.fileExists(atPath: home.path + "/run/query-http.addr")
        }
    }

    /// Processes of the stack's executables whose environment names `home`, from /proc.
    static func stackProcesses(_ home: StackHome) -> Set<Int32> {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var found: Set<Int32> = []
        for entry in entries {
            guard let pid = Int32(entry), let command = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                let first = command.split(separator: 0).first,
                names.contains((String(decoding: first, as: UTF8.self) as NSString).lastPathComponent),
                let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ")
            else { continue }
            let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if variables.contains("METERING_HOME=\(home.path)") { found.insert(pid) }
        }
        return found
    }

    /// Each run file's text and identity (device, inode): a rewrite gives a new identity.
    static func runFiles(_ home: StackHome) -> [String: String] {
        let run = home.path + "/run/"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []).filter {
            $0.hasSuffix(".addr") || $0.hasSuffix(".pid")
        }
        var files: [String: String] = [:]
        for name in names {
            var info = stat()
            guard stat(run + name, &info) == 0, let text = try? String(contentsOfFile: run + name, encoding: .utf8) else { continue }
            files[name] = "\(info.st_dev):\(info.st_ino) \(text)"
        }
        return files
    }

    /// Waits for `process` to exit within `timeout`; interrupts it (and records an issue) if it does not.
    static func waitForExit(_ process: Process, _ timeout: Double, _ what: String) -> Bool {
        let exited = waitUntil(timeout) { !process.isRunning }
        if !exited {
            Issue.record("\(what) still runs after \(timeout) s")
            process.interrupt()
            process.waitUntilExit()
        }
        return exited
    }

    @Test(
        "a second meterctl up on a home that is served refuses with a message naming the running stack, starts nothing, and leaves its files alone"
    )
    func refusesAServedHome() throws {
        let home = StackHome()
        let first = try Self.up(home)
        defer { if first.isRunning { first.interrupt() } }
        try #require(Self.waitUntilRunning(home))
        let processes = Self.stackProcesses(home)
        #expect(processes.count == 6)
        let files = Self.runFiles(home)
        // Six pid files, and the addresses of the emulator, the run-rate page and the usage API.
        #expect(files.count == 9, "\(files.keys.sorted())")

        let output = Pipe()
        let second = try Self.up(home, output: output)
        #expect(Self.waitForExit(second, 30, "the second meterctl up"))
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(second.terminationStatus != 0)
        #expect(text.contains("a stack is already running under \(home.path)"), "\(text)")
        #expect(text.contains("answering: \(home.path)/run/ingest.sock"), "\(text)")
        #expect(text.contains("meter-submitter (pid \(Self.pid(home, "meter-submitter") ?? 0))"), "\(text)")
        #expect(!text.contains("is ready"), "\(text)")

        // Nothing started, nothing stopped, no run file removed or rewritten.
        #expect(Self.stackProcesses(home) == processes)
        #expect(Self.runFiles(home) == files)
        #expect(processes.allSatisfy(Self.alive))
        #expect((try? UnixClient(path: home.adminSocket).call("status")) != nil)

        first.interrupt()
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        #expect(Self.waitUntil(10) { !processes.contains(where: Self.alive) })
        // The first stack removed its own pid files and the emulator its address as they stopped
        // (the query service leaves its page's and its usage API's addresses).
        #expect(
            Self.runFiles(home).keys.sorted() == ["query-adapters.addr", "query-http.addr"], "\(Self.runFiles(home).keys.sorted())")
    }

    @Test(
        "a supervised process that exits with a configuration error (78) is not restarted: up stops the stack and exits non-zero naming it")
    func configurationErrorStopsTheStack() throws {
        let home = StackHome()
        let output = Pipe()
        let up = try Self.up(home, output: output)
        defer { if up.isRunning { up.interrupt() } }
        try #require(Self.waitUntilRunning(home))
        let processes = Self.stackProcesses(home)

        // meter-query killed, and its socket served by someone else before up starts it again:
        // its next start fails with 78 ("another process is serving it").
        var listener: Int32 = -1
        let deadline = Date().addingTimeInterval(30)
        while listener < 0 && Date() < deadline {
            if let query = Self.pid(home, "meter-query"), Self.alive(query) { kill(query, SIGKILL) }
            usleep(10_000)
            listener = (try? UnixSocket.listen(path: home.querySocket, mode: 0o600)) ?? -1
        }
        try #require(listener >= 0)
        defer { close(listener) }

        #expect(Self.waitForExit(up, 60, "meterctl up"))
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(up.terminationStatus != 0)
        #expect(text.contains("meter-query exited with status 78"), "\(text)")
        let log = (try? String(contentsOfFile: home.path + "/log/meter-query.log", encoding: .utf8)) ?? ""
        let refusals = log.split(separator: "\n").filter { $0.contains("another process is serving it") }
        #expect(refusals.count == 1, "\(log.suffix(2000))")
        #expect(Self.waitUntil(10) { !processes.contains(where: Self.alive) })
    }

    @Test("supervising an idle stack costs meterctl up almost no CPU")
    func idleSupervision() throws {
        let home = StackHome()
        let up = try Self.up(home)
        defer { if up.isRunning { up.interrupt() } }
        try #require(Self.waitUntilRunning(home))
        let before = try #require(ProcessCPU.seconds(up.processIdentifier))
        let started = Date()
        usleep(3_000_000)
        let used = try #require(ProcessCPU.seconds(up.processIdentifier)) - before
        let elapsed = Date().timeIntervalSince(started)
        // Waiting for five children is no work; spinning on them took about 40% of a core.
        #expect(used < 0.1 * elapsed, "meterctl up used \(used) s of CPU in \(elapsed) s")
    }

    @Test("it starts every process, restarts one killed with SIGKILL, and stops them all on Ctrl-C")
    func superviseAndStop() throws {
        let home = StackHome()
        let up = try Self.up(home)
        defer { if up.isRunning { up.interrupt() } }
        let names = Self.names
        #expect(Self.waitUntil { names.allSatisfy { Self.pid(home, $0) != nil } })
        #expect(Self.waitUntil { (try? UnixClient(path: home.aggregatorSocket).call("status")) != nil })
        let first = try #require(Self.pid(home, "meter-aggregator"))
        kill(first, SIGKILL)
        #expect(Self.waitUntil { (Self.pid(home, "meter-aggregator") ?? first) != first })
        #expect(Self.waitUntil { (try? UnixClient(path: home.aggregatorSocket).call("status")) != nil })
        let pids = names.compactMap { Self.pid(home, $0) }
        #expect(pids.count == names.count)
        up.interrupt()
        up.waitUntilExit()
        #expect(up.terminationStatus == 0)
        #expect(Self.waitUntil(5) { pids.allSatisfy { !Self.alive($0) } })
    }

    @Test("meterctl demo runs the realistic scenario and its books balance: everything reported, nothing pending or refused")
    func demo() throws {
        let home = StackHome()
        let demo = Process()
        demo.executableURL = URL(fileURLWithPath: Binaries.path("meterctl"))
        demo.arguments = ["demo", "--home", home.path, "--days", "8"]
        let output = Pipe()
        demo.standardOutput = output
        demo.standardError = FileHandle.nullDevice
        try demo.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        demo.waitUntilExit()
        #expect(demo.terminationStatus == 0)
        #expect(text.contains("pending 0, conflicts 0, rejected 0"), "\(text.suffix(600))")
        #expect(text.contains("== What the (emulated) marketplace accepted"))
        #expect(text.contains("The query service's ledger agrees with the marketplace's accepted totals for every dimension."))
        #expect(text.contains("== Each subscription's run-rate now"))
        // The plans come from the catalog, with display prices: the summary shows money.
        #expect(text.contains("4 plans defined in the plan catalog, with display prices"))
        #expect(text.contains("overage cost"))
        #expect(text.contains("USD 180.00"), "an enterprise subscription's 15 seats over at USD 12: \(text.suffix(2400))")
        #expect(text.contains("Overage this period at the plans' display prices (from the plan catalog"))
        // Halfway, one plan change and one void, both accepted by ingest.
        #expect(text.contains("demo-starter-1 changed plan to starter-plus at 2024-02-04T00:00:00Z (accepted)"), "\(text.suffix(1200))")
        #expect(text.contains(" voided at 2024-02-04T00:00:00Z (accepted)"), "\(text.suffix(1200))")
        // meter-notifier delivered to the demo's webhook: the plan change, and thresholds crossed.
        #expect(text.contains("== Notifications meter-notifier delivered to a webhook"))
        #expect(text.contains("subscription.planChanged demo-starter-1: from starter to starter-plus"), "\(text.suffix(2400))")
        #expect(text.contains("usage.threshold demo-"), "\(text.suffix(2400))")
        let summary = try #require(text.split(separator: "\n").first { $0.contains("usage items accepted by the marketplace") })
        // "N usage events sent; M usage items accepted by the marketplace, M settled in the aggregator's books; ..."
        let numbers = summary.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .punctuationCharacters)) }
        #expect(numbers.count >= 3 && numbers[1] == numbers[2] && numbers[1] > 0, "\(summary)")
    }
}
