import Daemon
import Foundation
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meter-soak --help`.
let soakUsage = """
    meter-soak: a bounded hostile-client soak against a live stack (see docs/OPERATIONS.md, "Limits").

    Settings (flag, environment variable, default):
      --seconds      METERING_SOAK_SECONDS       120 (how long the attacks run)
      --max-rss-mb   METERING_SOAK_MAX_RSS_MB    400 (the resident memory no process may exceed)
      --nofile       METERING_SOAK_NOFILE        512 (meter-ingest's open-file limit)

    The executables are taken from the directory of meter-soak itself (.build/debug).
    """

/// Writes a line to standard output at once (a CI log shows progress as it happens).
func say(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress!, $0.count) }
}

/// The hostile-client soak. Starts the real stack (ingest under a low open-file
/// limit, the aggregator, query with its run-rate page, the front door), attacks it for a while
/// with malformed frames and HTTP, slowloris, clients that never read, and connection floods,
/// while a well-behaved client appends usage with idempotency ids and polls the HTTP health
/// endpoints. Then it checks that every acknowledged event is in the log exactly once, that the
/// followers caught up, that every process is alive and stayed under the memory bound, and that
/// each stops cleanly. Exit status 0 when all holds, 1 otherwise (the home is kept then).
nonisolated func runSoak() -> Never {
    let seconds: Int
    let maximumResident: Int
    let ingestFiles: Int
    do {
        var settings = try Settings()
        if settings.wantsHelp {
            say(soakUsage)
            exit(0)
        }
        seconds = try settings.integer("seconds", "METERING_SOAK_SECONDS", default: 120, range: 5...86_400)
        maximumResident = try settings.integer("max-rss-mb", "METERING_SOAK_MAX_RSS_MB", default: 400, range: 50...100_000) << 20
        ingestFiles = try settings.integer("nofile", "METERING_SOAK_NOFILE", default: 512, range: 256...1_000_000)
        try settings.rejectUnknownFlags()
    } catch {
        FileHandle.standardError.write(Data("meter-soak: \(error)\n".utf8))
        exit(64)
    }
    UnixSocket.ignoreSIGPIPE()
    UnixSocket.raiseOpenFileLimit()

    /// Everything that went wrong; the soak fails when it is not empty.
    var faults: [String] = []
    func fault(_ message: String) {
        faults.append(message)
        say("FAULT: \(message)")
    }

    let home = "/tmp/soak-" + String(UUID().uuidString.prefix(8))
    try? FileManager.default.createDirectory(atPath: home + "/log", withIntermediateDirectories: true)
    let run = home + "/run"
    let ingestSocket = run + "/ingest.sock"
    let adminSocket = run + "/ingest-admin.sock"
    say("meter-soak: \(seconds) s of hostile clients against the stack in \(home) (binaries from \(StackProcess.binaryDirectory))")

    // MARK: the stack

    var processes: [StackProcess] = []
    @discardableResult
    func start(_ name: String, _ environment: [String: String], openFileLimit: Int? = nil, ready: () -> Bool) -> StackProcess {
        do {
            let process = try StackProcess(name, home: home, environment: environment, openFileLimit: openFileLimit)
            processes.append(process)
            guard waitUntil(60, { ready() || !process.isRunning }), process.isRunning else {
                say("meter-soak: \(name) did not start:\n\(process.logTail())")
                for started in processes { _ = started.terminate(within: 10) }
                exit(1)
            }
            return process
        } catch {
            say("meter-soak: cannot start \(name): \(error)")
            for started in processes { _ = started.terminate(within: 10) }
            exit(1)
        }
    }
    func answers(_ socket: String) -> Bool { (try? UnixClient(path: socket).call("status")) != nil }

    let common = ["METERING_CLOCK": "manual"]
    start(
        "meter-ingest", common.merging(["METERING_SEGMENT_BYTES": "262144"]) { $1 }, openFileLimit: ingestFiles
    ) { answers(adminSocket) }
    start("meter-aggregator", common) { answers(run + "/aggregator.sock") }
    start("meter-query", common.merging(["METERING_QUERY_HTTP": "127.0.0.1:0"]) { $1 }) {
        answers(run + "/query.sock") && publishedPort(run + "/query-http.addr") != nil
    }
    start("meter-frontdoor", common.merging(["METERING_FRONTDOOR_LISTEN": "127.0.0.1:0"]) { $1 }) {
        publishedPort(run + "/frontdoor.addr") != nil
    }
    let pagePort = publishedPort(run + "/query-http.addr")!
    let frontDoorPort = publishedPort(run + "/frontdoor.addr")!
    say(
        "stack up: ingest (open-file limit \(ingestFiles)), aggregator, query (page on port \(pagePort)), front door (port \(frontDoorPort))"
    )

    // MARK: the soak

    let appender = GoodAppender(socket: ingestSocket)
    let poller = GoodPoller([(pagePort, "/healthz"), (frontDoorPort, "/v1/health")])
    let bigID = JSONValue.string(String(repeating: "i", count: 64 << 10))
    let attacks = [
        Attacks.malformedFrames([ingestSocket, run + "/aggregator.sock", run + "/query.sock"]),
        Attacks.malformedHTTP([pagePort, frontDoorPort]),
        Attacks.slowloris(port: pagePort, connections: 300, label: "page"),
        Attacks.slowloris(port: frontDoorPort, connections: 300, label: "front door"),
        Attacks.nonReaders(
            [
                (ingestSocket, Request(op: "read", fields: JSONObject(["partition": 0, "max": 1000]))),
                (ingestSocket, Request(op: "status", id: bigID)),
                (run + "/aggregator.sock", Request(op: "status", id: bigID)),
                (run + "/query.sock", Request(op: "status", id: bigID)),
            ], connections: 25),
        Attacks.flood(ingestSocket, holding: 600, label: "ingest"),
        Attacks.flood(run + "/query.sock", holding: 300, label: "query"),
    ]

    let started = Date()
    var nextReport = started.addingTimeInterval(10)
    while Date().timeIntervalSince(started) < Double(seconds) {
        for process in processes {
            process.sample()
            if !process.isRunning && !faults.contains(where: { $0.hasPrefix(process.name + " exited") }) {
                fault("\(process.name) exited during the soak (status \(process.process.terminationStatus)):\n\(process.logTail())")
            }
        }
        if Date() >= nextReport {
            nextReport = nextReport.addingTimeInterval(10)
            let good = appender.outcome
            let memory = processes.map { "\($0.name) \(($0.sample() ?? 0) >> 20) MB" }.joined(separator: ", ")
            say(
                "\(Int(Date().timeIntervalSince(started))) s: \(good.acknowledged.count) events acknowledged (\(good.latencies.summary)); \(memory)"
            )
        }
        usleep(500_000)
    }

    say("stopping the attacks")
    for attack in attacks { attack.stop() }
    appender.stop()
    poller.stop()

    // MARK: the checks

    let good = appender.outcome
    let http = poller.outcome
    say(
        "good appends: \(good.acknowledged.count) events acknowledged; \(good.latencies.summary); \(good.failedCalls) calls failed and were retried"
    )
    say("good HTTP requests: \(http.latencies.summary)")
    for attack in attacks { say("  \(attack.summary)") }

    if good.acknowledged.count < 3 { fault("the well-behaved client got almost nothing acknowledged (\(good.acknowledged.count) events)") }
    if good.longestWait > 30 { fault(String(format: "the well-behaved client waited %.1f s for an acknowledgement", good.longestWait)) }
    for rejection in good.rejected.prefix(5) { fault("a well-behaved event was rejected: \(rejection)") }
    for failure in http.failures.prefix(5) { fault("a well-behaved HTTP request failed: \(failure)") }

    // Every acknowledged event in the log exactly once, read back through ingest's `read`.
    var occurrences: [String: Int] = [:]
    do {
        let reader = try UnixClient(path: adminSocket)
        reader.setReceiveTimeout(seconds: 60)
        let partitions = try reader.call("status")["partitions"]?.arrayValue?.count ?? 0
        var records = 0
        for partition in 0..<partitions {
            var next = 0
            while true {
                let answer = try reader.call(
                    Request(
                        op: "read",
                        fields: JSONObject(["partition": .number(String(partition)), "from": .number(String(next)), "max": 10000])))
                let batch = answer["records"]?.arrayValue ?? []
                if batch.isEmpty { break }
                records += batch.count
                for record in batch {
                    if let id = record["event"]?["id"]?.stringValue { occurrences[id, default: 0] += 1 }
                }
                next = (batch.last?["sequence"]?.intValue ?? next) + 1
            }
        }
        let missing = good.acknowledged.filter { occurrences[$0] == nil }
        let doubled = occurrences.filter { $0.value > 1 }
        say("log: \(records) records in \(partitions) partitions, \(occurrences.count) with an idempotency id")
        if !missing.isEmpty { fault("\(missing.count) acknowledged events are not in the log, e.g. \(missing.sorted().prefix(5))") }
        if !doubled.isEmpty { fault("\(doubled.count) events are in the log more than once, e.g. \(doubled.keys.sorted().prefix(5))") }
    } catch {
        fault("cannot read the log back: \(error)")
    }

    // The followers fold everything ingest has.
    func caughtUp(_ socket: String) -> Bool {
        guard
            let target = try? UnixClient(path: adminSocket).call("status")["partitions"]?.arrayValue?.map({
                $0["nextSequence"]?.intValue ?? 0
            }),
            let positions = try? UnixClient(path: socket).call("status")["partitions"]?.arrayValue, !positions.isEmpty
        else { return false }
        return positions.allSatisfy { entry in
            guard let partition = entry["partition"]?.intValue, partition < target.count else { return false }
            return (entry["position"]?.intValue ?? -1) >= target[partition]
        }
    }
    for (name, socket) in [("meter-aggregator", run + "/aggregator.sock"), ("meter-query", run + "/query.sock")] {
        if !waitUntil(60, { caughtUp(socket) }) { fault("\(name) did not catch up with ingest within 60 s") }
    }

    // Alive, under the memory bound, and a clean stop.
    for process in processes {
        process.sample()
        say("\(process.name): peak resident \(process.peakResident >> 20) MB")
        if process.peakResident > maximumResident {
            fault("\(process.name) peaked at \(process.peakResident >> 20) MB, over the bound of \(maximumResident >> 20) MB")
        }
    }
    for process in processes.reversed() {
        guard process.isRunning else { continue }
        let status = process.terminate(within: 30)
        if status != 0 {
            fault("\(process.name) did not stop cleanly on SIGTERM (\(status.map { "status \($0)" } ?? "still running after 30 s"))")
        }
    }

    if faults.isEmpty {
        try? FileManager.default.removeItem(atPath: home)
        say("meter-soak: passed")
        exit(0)
    }
    say("meter-soak: \(faults.count) faults; logs kept in \(home)/log")
    exit(1)
}
