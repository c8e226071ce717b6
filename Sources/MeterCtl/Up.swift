import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meterctl up`: the whole stack as separate processes under one `METERING_HOME`, with embedded
/// defaults (the marketplace emulator stands in for Azure), supervised: a process that dies is
/// started again with backoff; Ctrl-C (or SIGTERM) stops them all, the submitter first.
enum Up {
    /// One supervised process.
    final class Child: @unchecked Sendable {
        let name: String
        let environment: [String: String]
        let logPath: String
        let pidPath: String
        private let lock = NSLock()
        private var process: Process?
        private var stopping = false
        private(set) var restarts = 0

        init(name: String, environment: [String: String], home: String) {
            self.name = name
            self.environment = environment
            self.logPath = home + "/log/" + name + ".log"
            self.pidPath = home + "/run/" + name + ".pid"
        }

        var pid: Int32? { lock.withLock { process?.isRunning == true ? process?.processIdentifier : nil } }

        func start() throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Up.binary(name))
            process.environment = environment
            if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            log.seekToEndOfFile()
            process.standardError = log
            process.standardOutput = log
            try process.run()
            lock.withLock { self.process = process }
            try? "\(process.processIdentifier)\n".write(toFile: pidPath, atomically: true, encoding: .utf8)
        }

        /// Waits for the process and starts it again while the stack runs (backoff 0.5 s to 10 s,
        /// reset after a minute of good health).
        func supervise() {
            var backoff = 0.5
            while true {
                guard let process = lock.withLock({ self.process }) else { return }
                let started = Date()
                process.waitUntilExit()
                if lock.withLock({ stopping }) { return }
                if Date().timeIntervalSince(started) > 60 { backoff = 0.5 }
                Up.say("\(name) exited (status \(process.terminationStatus)); restarting in \(backoff) s (log: \(logPath))")
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 10)
                if lock.withLock({ stopping }) { return }
                do {
                    try start()
                    lock.withLock { restarts += 1 }
                } catch {
                    Up.say("cannot restart \(name): \(error)")
                }
            }
        }

        func stop() {
            let process = lock.withLock { () -> Process? in
                stopping = true
                return self.process
            }
            guard let process, process.isRunning else { return }
            process.terminate()
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            unlink(pidPath)
        }
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
            Starts meter-ingest, meter-aggregator, meter-query (with the run-rate page on a loopback
            port), the marketplace emulator and meter-submitter under one home, each once the one
            before answers; restarts any that dies; stops them all on Ctrl-C or SIGTERM.
            Their logs: $METERING_HOME/log/<process>.log. Their settings come from the environment:
            METERING_CLOCK=manual for the manual clock, METERING_LOG_LEVEL=debug|info|notice|warning|error,
            and each process's own (meter-ingest --help, ...).
            """,
        options: [.home], examples: ["METERING_CLOCK=manual meterctl up --home /tmp/stack"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        var settings = try Settings(arguments: ["--home", invocation.home])
        let (children, marketplace) = try startStack(home: settings.home(), environment: [:])
        say("marketplace emulator at \(marketplace); try: METERING_HOME=\(settings.home()) \(binary("meterctl")) status")
        if let page = try? String(contentsOfFile: settings.home() + "/run/query-http.addr", encoding: .utf8) {
            let address = page.trimmingCharacters(in: .whitespacesAndNewlines)
            say("run-rate page at \(address); a link for one subscription: \(binary("meterctl")) token --resource-id ID --url \(address)")
        }
        say("Ctrl-C stops everything")
        waitForSignal()
        stop(children)
    }

    /// Starts the five processes in order, each once the previous one answers, under supervision;
    /// `environment` adds to (or overrides) this process's environment for all of them.
    static func startStack(home: String, environment extra: [String: String]) throws -> (children: [Child], marketplace: String) {
        for directory in ["run", "log", "data"] {
            try FileManager.default.createDirectory(
                atPath: home + "/" + directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        }
        for name in ["meter-ingest", "meter-aggregator", "meter-query", "meter-marketplace-emulator", "meter-submitter"]
        where !FileManager.default.isExecutableFile(atPath: binary(name)) {
            throw MeterCtl.Failure("\(binary(name)) is missing; build the stack first (swift build)")
        }
        var base = ProcessInfo.processInfo.environment
        for (key, value) in extra { base[key] = value }
        base["METERING_HOME"] = home
        for key in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] { base.removeValue(forKey: key) }
        let addressFile = home + "/run/emulator.addr"
        unlink(addressFile)

        let ingest = Child(name: "meter-ingest", environment: base, home: home)
        var aggregatorEnvironment = base
        aggregatorEnvironment["METERING_INGEST_SOCKET"] = base["METERING_INGEST_SOCKET"] ?? home + "/run/ingest.sock"
        let aggregator = Child(name: "meter-aggregator", environment: aggregatorEnvironment, home: home)
        var queryEnvironment = aggregatorEnvironment
        // The customer run-rate page, on a loopback port of the kernel's choosing.
        queryEnvironment["METERING_QUERY_HTTP"] = base["METERING_QUERY_HTTP"] ?? "127.0.0.1:0"
        unlink(home + "/run/query-http.addr")
        let query = Child(name: "meter-query", environment: queryEnvironment, home: home)
        var emulatorEnvironment = base
        emulatorEnvironment["METERING_EMULATOR_PORT"] = base["METERING_EMULATOR_PORT"] ?? "0"
        emulatorEnvironment["METERING_EMULATOR_CLOCK"] = base["METERING_EMULATOR_CLOCK"] ?? "ingest"
        let emulator = Child(name: "meter-marketplace-emulator", environment: emulatorEnvironment, home: home)

        say("starting the stack under \(home) (logs in \(home)/log)")
        try ingest.start()
        try waitFor("meter-ingest") { (try? UnixClient(path: home + "/run/ingest-admin.sock").call("status")) != nil }
        try aggregator.start()
        try waitFor("meter-aggregator") { (try? UnixClient(path: home + "/run/aggregator.sock").call("status")) != nil }
        try query.start()
        try waitFor("meter-query") { (try? UnixClient(path: home + "/run/query.sock").call("status")) != nil }
        try emulator.start()
        var marketplace = ""
        try waitFor("meter-marketplace-emulator") {
            marketplace = ((try? String(contentsOfFile: addressFile, encoding: .utf8)) ?? "").trimmingCharacters(
                in: .whitespacesAndNewlines)
            return marketplace.hasPrefix("http")
        }
        var submitterEnvironment = base
        if base["METERING_MARKETPLACE_URL"] == nil {
            // The emulator stands in for Azure, with a service principal it accepts.
            submitterEnvironment["METERING_MARKETPLACE_URL"] = marketplace
            submitterEnvironment["METERING_TOKEN_URL"] = marketplace + "/local/oauth2/token"
            submitterEnvironment["AZURE_METERING_MARKETPLACE_TENANT_ID"] = "local"
            submitterEnvironment["AZURE_METERING_MARKETPLACE_CLIENT_ID"] = "meterctl-up"
            submitterEnvironment["AZURE_METERING_MARKETPLACE_CLIENT_SECRET"] = "local"
        }
        let submitter = Child(name: "meter-submitter", environment: submitterEnvironment, home: home)
        try submitter.start()
        let children = [ingest, aggregator, query, emulator, submitter]
        for child in children { Thread { child.supervise() }.start() }
        say("running:")
        for child in children {
            say("  \(child.name.padding(toLength: 28, withPad: " ", startingAt: 0)) pid \(child.pid.map(String.init) ?? "-")")
        }
        return (children, marketplace)
    }

    /// Blocks until SIGINT or SIGTERM.
    static func waitForSignal() {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let stopped = DispatchSemaphore(value: 0)
        let queue = DispatchQueue(label: "up-signals")
        let sources = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { stopped.signal() }
            source.resume()
            return source
        }
        withExtendedLifetime(sources) { stopped.wait() }
    }

    /// Stops the children, the submitter first and ingest last.
    static func stop(_ children: [Child]) {
        say("stopping (submitter, emulator, query, aggregator, ingest)")
        for child in children.reversed() { child.stop() }
        say("stopped")
    }

    static func waitFor(_ name: String, timeout: Double = 60, _ ready: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if ready() {
                say("\(name) is ready")
                return
            }
            usleep(50_000)
        }
        throw MeterCtl.Failure("\(name) did not become ready in \(Int(timeout)) s; see its log under METERING_HOME/log")
    }
}
