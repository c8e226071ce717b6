import Daemon
import Foundation
import Synchronization
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meterctl up`: the whole stack as separate processes under one `METERING_HOME`, with embedded
/// defaults (the marketplace emulator stands in for Azure), supervised: a process that dies is
/// started again with backoff, unless it exited with a configuration error (a restart would fail
/// the same way: the stack stops instead); Ctrl-C (or SIGTERM) stops them all, the submitter first.
/// A home that is served already (by another `meterctl up`, or by processes started another way)
/// is refused before anything starts.
enum Up {
    /// Exit statuses that a restart does not cure: 64, a bad setting; 78, a configuration or
    /// environment error (a socket served by another process, a log that refuses to open, ...).
    static let permanentFailures: Set<Int32> = [64, 78]

    /// One supervised process.
    final class Child: Sendable {
        let name: String
        let environment: [String: String]
        let logPath: String
        let pidPath: String
        private let state = Mutex(State())

        private struct State {
            var process: Process?
            /// Signalled when `process` exits: Foundation's `waitUntilExit` spins its run loop on a
            /// thread that has no other input, a core's worth of CPU per supervised process.
            var exited = DispatchSemaphore(value: 0)
            var stopping = false
            var restarts = 0
            var gaveUp: Int32?
        }

        /// How many times it was started again.
        var restarts: Int { state.withLock { $0.restarts } }
        /// The exit status it was given up with (see `permanentFailures`).
        var gaveUp: Int32? { state.withLock { $0.gaveUp } }

        init(name: String, environment: [String: String], home: String) {
            self.name = name
            self.environment = environment
            self.logPath = home + "/log/" + name + ".log"
            self.pidPath = home + "/run/" + name + ".pid"
        }

        var pid: Int32? { state.withLock { $0.process?.isRunning == true ? $0.process?.processIdentifier : nil } }

        /// Its exit status once it has exited (nil while it runs or before it started).
        var exitStatus: Int32? {
            state.withLock { state in
                guard let process = state.process, !process.isRunning else { return nil }
                return process.terminationStatus
            }
        }

        func start() throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Up.binary(name))
            process.environment = environment
            if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            log.seekToEndOfFile()
            process.standardError = log
            process.standardOutput = log
            let exited = DispatchSemaphore(value: 0)
            process.terminationHandler = { _ in exited.signal() }
            try process.run()
            state.withLock { state in
                state.process = process
                state.exited = exited
            }
            try? ServiceLifecycle.writeRunFile("\(process.processIdentifier)", to: pidPath)
        }

        /// Waits for the process and starts it again while the stack runs (backoff 0.5 s to 10 s,
        /// reset after a minute of good health). A configuration error is not retried: the stack
        /// is asked to stop (`Up.stopRequested`).
        func supervise() {
            var backoff = 0.5
            while true {
                guard let (process, exited) = state.withLock({ state in state.process.map { ($0, state.exited) } }) else { return }
                let started = Date()
                exited.wait()
                if state.withLock({ $0.stopping }) { return }
                let status = process.terminationStatus
                if process.terminationReason == .exit && Up.permanentFailures.contains(status) {
                    state.withLock { $0.gaveUp = status }
                    Up.say(
                        "\(name) exited with status \(status) (\(Up.meaning(status))); a restart would fail the same way, so the stack stops. \(Up.lastLine(of: logPath))"
                    )
                    Up.stopRequested.signal()
                    return
                }
                if Date().timeIntervalSince(started) > 60 { backoff = 0.5 }
                Up.say("\(name) exited (status \(process.terminationStatus)); restarting in \(backoff) s (log: \(logPath))")
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 10)
                if state.withLock({ $0.stopping }) { return }
                do {
                    try start()
                    state.withLock { $0.restarts += 1 }
                } catch {
                    Up.say("cannot restart \(name): \(error)")
                }
            }
        }

        func stop() {
            let process = state.withLock { state -> Process? in
                state.stopping = true
                return state.process
            }
            // Only the pid file this process wrote: never one another stack wrote since.
            defer { ServiceLifecycle.removeRunFile(at: pidPath) }
            guard let process, process.isRunning else { return }
            process.terminate()
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    /// What an exit status of `permanentFailures` means, for messages.
    static func meaning(_ status: Int32) -> String {
        status == 64 ? "a bad setting" : "a configuration or environment error"
    }

    /// The last line of a child's log, quoted for a message (empty when there is none).
    static func lastLine(of logPath: String) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").last.map(String.init), !line.isEmpty else { return "(log: \(logPath))" }
        return "Its log (\(logPath)) ends: \(line)"
    }

    static func binary(_ name: String) -> String {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent(name)
            .path
    }

    static func say(_ text: String) {
        print("meterctl up: \(text)")
        fflush(nil)
    }

    static let command = Command(
        name: "up", summary: "start the whole stack, supervised, until Ctrl-C (or SIGTERM)",
        details: """
            Starts meter-ingest, meter-aggregator, meter-query (with the run-rate page and the usage API
            on loopback ports), meter-notifier, the marketplace emulator and meter-submitter under one home, each once the one
            before answers; restarts any that dies; stops them all on Ctrl-C or SIGTERM. A process
            that exits with a configuration error (64 or 78) is not restarted: the stack stops. A
            home whose stack already runs is refused before anything starts.
            Their logs: $METERING_HOME/log/<process>.log. Their settings come from the environment:
            METERING_CLOCK=manual for the manual clock, METERING_LOG_LEVEL=debug|info|notice|warning|error,
            and each process's own (meter-ingest --help, ...).
            """,
        options: [.home], examples: ["METERING_CLOCK=manual meterctl up --home /tmp/stack"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        var settings = try Settings(arguments: ["--home", invocation.home])
        let home = settings.home()
        // A page address left by an earlier run is not this run's.
        let pageFile = home + "/run/query-http.addr"
        let earlierPage = ServiceLifecycle.RunFileIdentity(path: pageFile)
        let adapterFile = home + "/run/query-adapters.addr"
        let earlierAdapters = ServiceLifecycle.RunFileIdentity(path: adapterFile)
        let (children, marketplace) = try startStack(home: home, environment: [:])
        say("marketplace emulator at \(marketplace); try: METERING_HOME=\(home) \(binary("meterctl")) status")
        if let address = newAddress(at: pageFile, replacing: earlierPage) {
            say("run-rate page at \(address); a link for one subscription: \(binary("meterctl")) token --resource-id ID --url \(address)")
        }
        if let address = newAddress(at: adapterFile, replacing: earlierAdapters) {
            say("usage API for billing adapters at \(address)/v1/usage; a key: \(binary("meterctl")) adapters create --name NAME")
        }
        say("Ctrl-C stops everything")
        waitForStop()
        stop(children)
        if let failed = children.first(where: { $0.gaveUp != nil }), let status = failed.gaveUp {
            throw MeterCtl.Failure(
                "\(failed.name) exited with status \(status) (\(meaning(status))); the stack was stopped. \(lastLine(of: failed.logPath))")
        }
    }

    /// The address in the file at `path`, if it was written since `earlier` was seen there: a
    /// stale file from an earlier run is left alone (it is not ours to delete) and not believed.
    static func newAddress(at path: String, replacing earlier: ServiceLifecycle.RunFileIdentity?) -> String? {
        guard let identity = ServiceLifecycle.RunFileIdentity(path: path), identity != earlier,
            let text = try? String(contentsOfFile: path, encoding: .utf8)
        else { return nil }
        let address = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return address.isEmpty ? nil : address
    }

    /// Refuses a home that is served already (one of its sockets answers, or a pid file names a
    /// live process of the stack), then holds `run/up.lock` while this process runs a stack on it,
    /// so that two `meterctl up` started at once do not both pass the first check. Nothing has
    /// been started or removed when it throws.
    static func claim(home: String, environment: [String: String]) throws {
        let run = home + "/run/"
        let sockets = [
            ("meter-ingest", environment["METERING_INGEST_SOCKET"] ?? run + "ingest.sock"),
            ("meter-ingest", environment["METERING_INGEST_ADMIN_SOCKET"] ?? run + "ingest-admin.sock"),
            ("meter-aggregator", environment["METERING_AGGREGATOR_SOCKET"] ?? run + "aggregator.sock"),
            ("meter-query", environment["METERING_QUERY_SOCKET"] ?? run + "query.sock"),
            ("meter-notifier", environment["METERING_NOTIFIER_SOCKET"] ?? run + "notifier.sock"),
        ]
        let answering = sockets.compactMap { _, path -> String? in
            guard let connection = try? UnixSocket.connect(path: path) else { return nil }
            close(connection)
            return path
        }
        let running = stackNames.compactMap { name -> String? in
            guard let pid = pid(in: run + name + ".pid"), executableName(of: pid) == name else { return nil }
            return "\(name) (pid \(pid))"
        }
        var found: [String] = []
        let lockPath = run + "up.lock"
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw MeterCtl.Failure("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            found.append("meterctl up or demo (\(pid(in: lockPath).map { "pid \($0)" } ?? lockPath)) supervises it")
        }
        if !running.isEmpty { found.append("running: " + running.joined(separator: ", ")) }
        if !answering.isEmpty { found.append("answering: " + answering.joined(separator: ", ")) }
        guard found.isEmpty else {
            close(descriptor)
            throw MeterCtl.Failure(
                "a stack is already running under \(home): \(found.joined(separator: "; ")). Stop it first, or choose another home (--home or METERING_HOME); nothing was started"
            )
        }
        // Kept open (and locked) until this process exits; close-on-exec keeps it from the children.
        let holder = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = holder.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }
        heldLock = descriptor
    }

    /// The live process whose pid the file at `path` holds, or nil.
    static func pid(in path: String) -> Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0 || errno == EPERM
        else { return nil }
        return pid
    }

    nonisolated(unsafe) private static var heldLock: Int32 = -1

    /// The processes of the stack, in the order they start.
    static let stackNames = [
        "meter-ingest", "meter-aggregator", "meter-query", "meter-notifier", "meter-marketplace-emulator", "meter-submitter",
    ]

    /// The file name of the program process `pid` runs (from `/proc`), or nil.
    static func executableName(of pid: Int32) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
            let first = data.split(separator: 0, omittingEmptySubsequences: false).first
        else { return nil }
        return (String(decoding: first, as: UTF8.self) as NSString).lastPathComponent
    }

    /// Starts the five processes in order, each once the previous one answers, under supervision;
    /// `environment` adds to (or overrides) this process's environment for all of them.
    static func startStack(home: String, environment extra: [String: String]) throws -> (children: [Child], marketplace: String) {
        for directory in ["run", "log", "data"] {
            try FileManager.default.createDirectory(
                atPath: home + "/" + directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        }
        for name in stackNames where !FileManager.default.isExecutableFile(atPath: binary(name)) {
            throw MeterCtl.Failure("\(binary(name)) is missing; build the stack first (swift build)")
        }
        var base = ProcessInfo.processInfo.environment
        for (key, value) in extra { base[key] = value }
        base["METERING_HOME"] = home
        for key in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] { base.removeValue(forKey: key) }
        try claim(home: home, environment: base)
        var started: [Child] = []
        do {
            return try startChildren(home: home, base: base, started: &started)
        } catch {
            // Whatever did start is stopped again: a failed start leaves nothing behind.
            stop(started)
            throw error
        }
    }

    private static func startChildren(home: String, base: [String: String], started: inout [Child]) throws -> (
        children: [Child], marketplace: String
    ) {
        let addressFile = home + "/run/emulator.addr"
        let earlierAddress = ServiceLifecycle.RunFileIdentity(path: addressFile)

        let ingest = Child(name: "meter-ingest", environment: base, home: home)
        var aggregatorEnvironment = base
        aggregatorEnvironment["METERING_INGEST_SOCKET"] = base["METERING_INGEST_SOCKET"] ?? home + "/run/ingest.sock"
        let aggregator = Child(name: "meter-aggregator", environment: aggregatorEnvironment, home: home)
        var queryEnvironment = aggregatorEnvironment
        // The customer run-rate page, on a loopback port of the kernel's choosing.
        queryEnvironment["METERING_QUERY_HTTP"] = base["METERING_QUERY_HTTP"] ?? "127.0.0.1:0"
        // The usage API for billing adapters, likewise (keys from meterctl adapters create).
        queryEnvironment["METERING_QUERY_ADAPTER_HTTP"] = base["METERING_QUERY_ADAPTER_HTTP"] ?? "127.0.0.1:0"
        let query = Child(name: "meter-query", environment: queryEnvironment, home: home)
        let notifier = Child(name: "meter-notifier", environment: aggregatorEnvironment, home: home)
        var emulatorEnvironment = base
        emulatorEnvironment["METERING_EMULATOR_PORT"] = base["METERING_EMULATOR_PORT"] ?? "0"
        emulatorEnvironment["METERING_EMULATOR_CLOCK"] = base["METERING_EMULATOR_CLOCK"] ?? "ingest"
        let emulator = Child(name: "meter-marketplace-emulator", environment: emulatorEnvironment, home: home)

        say("starting the stack under \(home) (logs in \(home)/log)")
        started.append(ingest)
        try ingest.start()
        try waitFor(ingest) { (try? UnixClient(path: home + "/run/ingest-admin.sock").call("status")) != nil }
        started.append(aggregator)
        try aggregator.start()
        try waitFor(aggregator) { (try? UnixClient(path: home + "/run/aggregator.sock").call("status")) != nil }
        started.append(query)
        try query.start()
        try waitFor(query) { (try? UnixClient(path: home + "/run/query.sock").call("status")) != nil }
        started.append(notifier)
        try notifier.start()
        try waitFor(notifier) {
            (try? UnixClient(path: base["METERING_NOTIFIER_SOCKET"] ?? home + "/run/notifier.sock").call("status")) != nil
        }
        started.append(emulator)
        try emulator.start()
        var marketplace = ""
        try waitFor(emulator) {
            marketplace = newAddress(at: addressFile, replacing: earlierAddress) ?? ""
            return marketplace.hasPrefix("http")
        }
        let submitter = Child(name: "meter-submitter", environment: marketplaceEnvironment(base, emulator: marketplace), home: home)
        started.append(submitter)
        try submitter.start()
        let children = [ingest, aggregator, query, notifier, emulator, submitter]
        for child in children { Thread { child.supervise() }.start() }
        say("running:")
        for child in children {
            say("  \(child.name.padding(toLength: 28, withPad: " ", startingAt: 0)) pid \(child.pid.map(String.init) ?? "-")")
        }
        return (children, marketplace)
    }

    /// Signalled to stop the stack: by SIGINT or SIGTERM, or by a child given up on.
    static let stopRequested = DispatchSemaphore(value: 0)

    /// Blocks until SIGINT or SIGTERM, or until a child exits with a configuration error.
    static func waitForStop() {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let queue = DispatchQueue(label: "up-signals")
        let sources = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { stopRequested.signal() }
            source.resume()
            return source
        }
        withExtendedLifetime(sources) { stopRequested.wait() }
    }

    /// `environment` with the marketplace settings of a stack whose emulator listens at `emulator`:
    /// unless `METERING_MARKETPLACE_URL` names a real marketplace, the emulator stands in for
    /// Azure with a service principal it accepts (the submitter and `meterctl reconcile` use it).
    static func marketplaceEnvironment(_ environment: [String: String], emulator: String) -> [String: String] {
        guard environment["METERING_MARKETPLACE_URL"] == nil else { return environment }
        var changed = environment
        changed["METERING_MARKETPLACE_URL"] = emulator
        changed["METERING_TOKEN_URL"] = emulator + "/local/oauth2/token"
        changed["AZURE_METERING_MARKETPLACE_TENANT_ID"] = "local"
        changed["AZURE_METERING_MARKETPLACE_CLIENT_ID"] = "meterctl-up"
        changed["AZURE_METERING_MARKETPLACE_CLIENT_SECRET"] = "local"
        return changed
    }

    /// Stops the children, the submitter first and ingest last.
    static func stop(_ children: [Child]) {
        say("stopping (submitter, emulator, notifier, query, aggregator, ingest)")
        for child in children.reversed() { child.stop() }
        say("stopped")
    }

    /// Waits until `ready` holds for a child just started; fails at once when the child exits.
    static func waitFor(_ child: Child, timeout: Double = 60, _ ready: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let status = child.exitStatus {
                throw MeterCtl.Failure("\(child.name) exited with status \(status) while starting. \(lastLine(of: child.logPath))")
            }
            if ready() {
                say("\(child.name) is ready")
                return
            }
            usleep(50_000)
        }
        throw MeterCtl.Failure("\(child.name) did not become ready in \(Int(timeout)) s; see \(child.logPath)")
    }
}
