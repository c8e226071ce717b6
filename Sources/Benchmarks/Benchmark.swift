import Foundation
import Synchronization
import SystemIO
import Transport
import Wire

/// URLs printed without their credentials.
enum NATSRedaction {
    static func redact(_ url: String) -> String {
        url.split(separator: ",").map { part -> String in
            guard let at = part.lastIndex(of: "@") else { return String(part) }
            let scheme = part.hasPrefix("nats://") ? "nats://" : ""
            return scheme + part[part.index(after: at)...]
        }.joined(separator: ",")
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// `meter-bench`: measures what DESIGN.md §7 asks of ingest and prints a table, with how it was
/// measured. Not a test: figures depend on the machine.
enum Benchmark {
    static let usage = """
        meter-bench: durable-ingest benchmark.

          meter-bench [--seconds N] [--events N] [--partitions N] [--catch-up-events N] [--query-subscriptions N]
                      [--query-events N] [--home DIR] [--only NAME] [--json FILE]
                      [--store embedded|jetstream] [--nats-url URL] [--nats-replicas N] [--ids N] [--nats-pid PID]

        Starts the meter-ingest beside this executable on a fresh METERING_HOME (default: a new
        directory under /tmp), measures each case for N seconds (default 5), and prints a table.
        --events N: the ingest cases append N events in all (split over their clients) instead of
        running for --seconds, so another system can be given exactly the same work.
        --json FILE: also writes the figures to FILE as JSON, for scripts (scripts/bench-compare).
        --store jetstream: ingest keeps its records in a JetStream stream (a fresh one per ingest
        started, named BENCH<pid>_<n>) on the NATS server at --nats-url (default nats://127.0.0.1:4222)
        with --nats-replicas copies (default 1); the servers are not started by meter-bench.
        Memory cases (only with --only): index-memory (ingest's idempotency index holding --ids ids, default
        10,000,000) and window-memory (JetStream's duplicate window holding --ids Nats-Msg-Ids, measured on
        the nats-server of --nats-pid on this machine). fold-large (only with --only): the query case's
        records (--query-subscriptions, --query-events) decoded beforehand and folded on one thread, 3 passes;
        view-fold-large: the same into meter-query's read model.
        Cases: decode-parse, decode-validate, decode-prepare (or decode for all three), fold, decode-fold, batch-1000,
        batch-1000-pipelined, single-1, single-16, catch-up (aggregator, with --catch-up-events usage events), query
        (meter-query with --query-subscriptions subscriptions × 5 meters, default 100,000, and --query-events usage
        events, default 1,000,000, the clock moving a minute every 10,000 events and no submitter settling items;
        then meter-aggregator's catch-up and restart on that same log: catch-up-large, restart-large).
        """

    static func main(_ arguments: [String]) -> Int32 {
        var seconds = 5.0
        var home: String?
        var only: String?
        var partitions = 4
        var catchUpEvents = 1_000_000
        var querySubscriptions = 100_000
        var queryEvents = 1_000_000
        var events: Int?
        var json: String?
        var index = 0
        var store = StoreChoice()
        var ids = 10_000_000
        var natsPID: Int32?
        /// The text after the flag at `index`, if there is one.
        func text() -> String? { index + 1 < arguments.count ? arguments[index + 1] : nil }
        /// Says what the flag at `index` takes; the exit status of a usage error.
        func refuse(_ what: String) -> Int32 {
            FileHandle.standardError.write(Data("meter-bench: \(arguments[index]) takes \(what)\n".utf8))
            return 64
        }
        while index < arguments.count {
            let positive = text().flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
            switch arguments[index] {
            case "--seconds":
                guard let value = text().flatMap({ Double($0) }), value > 0 else { return refuse("a positive number") }
                seconds = value
            case "--partitions":
                guard let positive else { return refuse("a positive integer") }
                partitions = positive
            case "--catch-up-events":
                guard let positive else { return refuse("a positive integer") }
                catchUpEvents = positive
            case "--query-events":
                guard let positive else { return refuse("a positive integer") }
                queryEvents = positive
            case "--query-subscriptions":
                guard let positive else { return refuse("a positive integer") }
                querySubscriptions = positive
            case "--events":
                guard let positive else { return refuse("a positive integer") }
                events = positive
            case "--ids":
                guard let positive else { return refuse("a positive integer") }
                ids = positive
            case "--nats-pid":
                guard let positive, let pid = Int32(exactly: positive) else { return refuse("a process id") }
                natsPID = pid
            case "--nats-replicas":
                guard let positive, [1, 3, 5].contains(positive) else { return refuse("1, 3 or 5") }
                store.replicas = positive
            case "--store":
                guard let kind = text(), ["embedded", "jetstream"].contains(kind) else { return refuse("embedded or jetstream") }
                store.kind = kind
            case "--json":
                guard let value = text() else { return refuse("a file") }
                json = value
            case "--home":
                guard let value = text() else { return refuse("a directory") }
                home = value
            case "--only":
                guard let value = text() else { return refuse("a case name") }
                only = value
            case "--nats-url":
                guard let value = text() else { return refuse("a URL") }
                store.url = value
            case "--help":
                print(usage)
                return 0
            default:
                FileHandle.standardError.write(Data("meter-bench: unknown argument \(arguments[index])\n\(usage)\n".utf8))
                return 64
            }
            index += 2  // every flag but --help takes one value
        }
        UnixSocket.ignoreSIGPIPE()
        IngestServer.store = store
        var rows: [Row] = []
        func wanted(_ name: String) -> Bool { only == nil || only == name }
        for stage in DecodeStage.allCases where wanted(stage.rawValue) || wanted("decode") {
            rows.append(decodeBenchmark(stage, seconds: seconds))
        }
        if only == "index-memory" { rows.append(indexMemoryBenchmark(ids: ids)) }
        if only == "window-memory" {
            guard let natsPID else {
                FileHandle.standardError.write(Data("meter-bench: window-memory needs --nats-pid (the local nats-server)\n".utf8))
                return 64
            }
            do {
                rows.append(try windowMemoryBenchmark(ids: ids, url: store.url, pid: natsPID))
            } catch {
                FileHandle.standardError.write(Data("meter-bench: \(error)\n".utf8))
                return 1
            }
        }
        if only == "fold-large" || only == "view-fold-large" {
            rows.append(
                largeFoldBenchmark(subscriptions: querySubscriptions, events: queryEvents, passes: 3, view: only == "view-fold-large"))
        }
        if wanted("fold") { rows.append(foldBenchmark(decode: false, seconds: seconds)) }
        if wanted("decode-fold") { rows.append(foldBenchmark(decode: true, seconds: seconds)) }
        let ingestCases = ["batch-1000", "batch-1000-pipelined", "single-1", "single-16", "catch-up", "query"].filter(wanted)
        if !ingestCases.isEmpty {
            let directory = home ?? "/tmp/meter-bench-\(getpid())"
            do {
                let server = try IngestServer(home: directory, partitions: partitions)
                defer { server.stop(removing: home == nil) }
                for name in ingestCases {
                    if name != "catch-up" { progress("running \(name) for \(events.map { "\($0) events" } ?? "\(seconds) s")") }
                    let limit = events.map(Limit.events) ?? .seconds(seconds)
                    switch name {
                    case "batch-1000":
                        rows.append(try ingestBenchmark(name: name, server: server, clients: 1, batch: 1000, depth: 1, limit: limit))
                    case "batch-1000-pipelined":
                        rows.append(try ingestBenchmark(name: name, server: server, clients: 1, batch: 1000, depth: 4, limit: limit))
                    case "single-1":
                        rows.append(try ingestBenchmark(name: name, server: server, clients: 1, batch: 1, depth: 1, limit: limit))
                    case "catch-up":
                        // A log of its own: the ingest cases' usage names no purchased subscription.
                        let fresh = try IngestServer(home: directory + "-catch-up", partitions: partitions)
                        defer { fresh.stop(removing: home == nil) }
                        rows += try catchUpBenchmark(server: fresh, events: catchUpEvents)
                    case "query":
                        let fresh = try IngestServer(home: directory + "-query", partitions: partitions)
                        defer { fresh.stop(removing: home == nil) }
                        rows += try queryBenchmark(
                            server: fresh, subscriptions: querySubscriptions, events: queryEvents, seconds: seconds)
                    default: rows.append(try ingestBenchmark(name: name, server: server, clients: 16, batch: 1, depth: 1, limit: limit))
                    }
                }
            } catch {
                FileHandle.standardError.write(Data("meter-bench: \(error)\n".utf8))
                return 1
            }
        }
        report(rows, seconds: seconds, events: events, partitions: partitions, store: store, arguments: arguments)
        if let json {
            let document = jsonReport(rows, seconds: seconds, events: events, partitions: partitions, arguments: arguments)
            guard FileManager.default.createFile(atPath: json, contents: Data(JSONWriter.bytes(document) + [10])) else {
                FileHandle.standardError.write(Data("meter-bench: cannot write --json \(json)\n".utf8))
                return 1
            }
        }
        return 0
    }

    struct Row {
        var name: String
        var description: String
        var events: Int
        var elapsed: Double
        var latencies: [Double]  // seconds per request
        var perSecond: Double { Double(events) / elapsed }
    }

    static func progress(_ text: String) {
        FileHandle.standardError.write(Data("meter-bench: \(text)\n".utf8))
    }

    // MARK: decode

    /// One usage event of the benchmarks, as a client sends it. The C clients of
    /// `scripts/bench-compare` (bench/compare/events.c) make the same fields.
    static func sampleEvent(_ index: Int, client: Int = 0, run: String = "decode") -> [UInt8] {
        Array(
            #"{"type":"UsageReported","id":"\#(run)-c\#(client)-e\#(index)","value":{"resourceId":"fdc778a6-1281-40e4-cade-\#(String(100_000_000_000 + index % 10_000))","timestamp":"2022-09-19T13:26:22Z","meterName":"cpu","quantity":1.5,"properties":{"campaign":"spring"}}}"#
                .utf8)
    }

    /// Appends `sampleEvent(index, client:, run:)`'s bytes to `bytes` without making a String:
    /// the ingest cases' client builds its requests with this, so that the figure measures ingest
    /// rather than the client's string formatting (a C client formats an event in well under a
    /// microsecond). `checkSampleEventBytes` holds the two equal.
    static func appendSampleEvent(_ index: Int, client: Int, run: [UInt8], to bytes: inout [UInt8]) {
        bytes += sampleHead
        bytes += run
        bytes += sampleClient
        JSONWriter.writeInteger(client, to: &bytes)
        bytes += sampleIndex
        JSONWriter.writeInteger(index, to: &bytes)
        bytes += sampleResource
        JSONWriter.writeInteger(100_000_000_000 + index % 10_000, to: &bytes)
        bytes += sampleTail
    }

    private static let sampleHead = Array(#"{"type":"UsageReported","id":""#.utf8)
    private static let sampleClient = Array("-c".utf8)
    private static let sampleIndex = Array("-e".utf8)
    private static let sampleResource = Array(#"","value":{"resourceId":"fdc778a6-1281-40e4-cade-"#.utf8)
    private static let sampleTail = Array(
        #"","timestamp":"2022-09-19T13:26:22Z","meterName":"cpu","quantity":1.5,"properties":{"campaign":"spring"}}}"#.utf8)

    /// Stops meter-bench if the byte builder and the String form of the sample event ever differ.
    static func checkSampleEventBytes() {
        for (index, client, run) in [(0, 0, "decode"), (9, 3, "batch-1000"), (10_000, 15, "single-16"), (123_456_789, 1, "x")] {
            var bytes: [UInt8] = []
            appendSampleEvent(index, client: client, run: Array(run.utf8), to: &bytes)
            precondition(
                bytes == sampleEvent(index, client: client, run: run), "the sample event's byte builder differs from its String form")
        }
    }

    /// How far the in-process decode benchmark goes: the stages of ingest's work per event
    /// before the log, measured separately so the ceiling they set is visible.
    enum DecodeStage: String, CaseIterable {
        case parse = "decode-parse"
        case validate = "decode-validate"
        case prepare = "decode-prepare"

        var description: String {
            switch self {
            case .parse: return "JSON parse of 1,000-event append requests, 1 thread, no I/O"
            case .validate: return "parse + message validation, 1 thread, no I/O"
            case .prepare: return "parse + validation + stored bytes (ingest's whole CPU work), 1 thread"
            }
        }
    }

    static func decodeBenchmark(_ stage: DecodeStage, seconds: Double) -> Row {
        progress("running \(stage.rawValue) for \(seconds) s")
        let request =
            Array(#"{"op":"append","events":["#.utf8) + (0..<1000).map { sampleEvent($0) }.joined(separator: Array(",".utf8))
            + Array("]}".utf8)
        var events = 0
        var checksum = 0
        let start = Date()
        var latencies: [Double] = []
        while Date().timeIntervalSince(start) < seconds {
            let begin = Date()
            switch stage {
            case .parse:
                guard case .success(let parsed) = Request.decode(request) else { fatalError("sample request does not decode") }
                events += parsed["events"]?.arrayValue?.count ?? 0
            case .validate:
                guard case .success(let parsed) = Request.decode(request) else { fatalError("sample request does not decode") }
                for event in parsed["events"]?.arrayValue ?? [] {
                    if case .success = Message.decode(event) { checksum &+= 1 }
                    events += 1
                }
            case .prepare:
                guard case .success(let batch) = AppendBatch.decode(request) else { fatalError("sample request does not decode") }
                for event in batch.events {
                    if case .success(let prepared) = event { checksum &+= prepared.payload.count }
                    events += 1
                }
            }
            latencies.append(Date().timeIntervalSince(begin))
        }
        precondition(events > 0)
        return Row(
            name: stage.rawValue, description: stage.description, events: events, elapsed: Date().timeIntervalSince(start),
            latencies: latencies)
    }

    // MARK: durable ingest

    /// Where the ingest under test keeps its records.
    struct StoreChoice {
        var kind = "embedded"
        var url = "nats://127.0.0.1:4222"
        var replicas = 1

        var method: String {
            kind == "embedded"
                ? "every append is acknowledged only after fdatasync"
                : "JetStream store (R\(replicas), \(NATSRedaction.redact(url))): every append is acknowledged only after JetStream acknowledged it"
        }
    }

    /// Appends `payloads` in one request on `client` and waits for the answer.
    static func appendBatch(_ payloads: [[UInt8]], on client: UnixClient) throws {
        var body = Array(#"{"op":"append","events":["#.utf8)
        for (offset, payload) in payloads.enumerated() {
            if offset > 0 { body.append(UInt8(ascii: ",")) }
            body += payload
        }
        body += Array("]}".utf8)
        try client.sendRaw(FrameEncoder.frame(body))
        _ = try client.receiveFrame()
    }

    /// The records in ingest's log, all partitions together (its `status`).
    static func recordCount(_ client: UnixClient) throws -> Int {
        try client.call("status")["partitions"]?.arrayValue?.compactMap { $0["nextSequence"]?.intValue }.reduce(0, +) ?? 0
    }

    /// Starts `executable` (beside this one) on `home` with `settings` and waits until the partitions
    /// its status on `socket` lists have folded `total` records; returns it and the seconds taken.
    static func startFollower(_ executable: String, home: String, socket: String, total: Int, settings: [String: String]) throws -> (
        Process, Double
    ) {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent(executable).path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        var environment = ProcessInfo.processInfo.environment
        environment["METERING_HOME"] = home
        environment["METERING_LOG_LEVEL"] = "warning"
        environment.merge(settings) { _, setting in setting }
        environment.removeValue(forKey: "NOTIFY_SOCKET")
        process.environment = environment
        let begin = Date()
        try process.run()
        while Date().timeIntervalSince(begin) < 900 {
            if let client = try? UnixClient(path: socket), let answer = try? client.call("status"),
                let partitions = answer["partitions"]?.arrayValue, !partitions.isEmpty,
                partitions.compactMap({ $0["position"]?.intValue }).reduce(0, +) >= total
            {
                return (process, Date().timeIntervalSince(begin))
            }
            if !process.isRunning { throw Failure("\(executable) exited with status \(process.terminationStatus)") }
            usleep(5_000)
        }
        throw Failure("\(executable) did not catch up in 900 s")
    }

    /// Prints the CPU a follower used from its start until it caught up with `records` records
    /// (user + system of all its threads, from /proc), and that per record: the catch-up's wall
    /// time alone says little on a shared machine, whose speed drifts from minute to minute.
    static func reportCatchUpCPU(_ name: String, _ process: Process, records: Int) {
        guard let seconds = ProcessCPU.seconds(process.processIdentifier), records > 0 else { return }
        progress(
            "\(name) used \(format(seconds * 1000)) ms of CPU (user + system, /proc) from start to caught up, \(String(format: "%.2f", seconds * 1e6 / Double(records))) µs per record"
        )
    }

    final class IngestServer {
        nonisolated(unsafe) static var store = StoreChoice()
        nonisolated(unsafe) static var started = 0
        let home: String
        let partitions: Int
        var process = Process()
        /// The stream of this server's records (JetStream store), kept across a restart.
        let stream: String

        /// SIGKILLs ingest and starts it again on the same log; returns the seconds until it answers.
        /// SIGKILLs meter-ingest, runs `before` (on the files it left), and times a new one from
        /// start to serving.
        func crashAndRestart(before: () -> Void = {}) throws -> Double {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            before()
            let begin = Date()
            process = Process()
            try launch(removing: false)
            return Date().timeIntervalSince(begin)
        }

        init(home: String, partitions: Int) throws {
            self.home = home
            self.partitions = partitions
            Self.started += 1
            stream = "BENCH\(getpid())_\(Self.started)"
            try launch(removing: true)
        }

        private func launch(removing: Bool) throws {
            let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
                .appendingPathComponent("meter-ingest").path
            guard FileManager.default.isExecutableFile(atPath: binary) else {
                throw Failure("meter-ingest not found beside meter-bench (\(binary)); build with: swift build -c release")
            }
            if removing { try? FileManager.default.removeItem(atPath: home) }
            process.executableURL = URL(fileURLWithPath: binary)
            var environment = ProcessInfo.processInfo.environment
            environment["METERING_HOME"] = home
            environment["METERING_CLOCK"] = "manual"
            environment["METERING_PARTITIONS"] = String(partitions)
            environment["METERING_LOG_LEVEL"] = "warning"
            environment["METERING_STORE"] = Self.store.kind
            if Self.store.kind == "jetstream" {
                environment["METERING_NATS_URL"] = Self.store.url
                environment["METERING_NATS_REPLICAS"] = String(Self.store.replicas)
                environment["METERING_NATS_STREAM"] = stream
            }
            environment.removeValue(forKey: "NOTIFY_SOCKET")
            process.environment = environment
            try process.run()
            // Recovery of a large log takes a while: that is what `ingest-restart` measures.
            let deadline = Date().addingTimeInterval(600)
            while Date() < deadline {
                if let client = try? UnixClient(path: socket), (try? client.call("status")) != nil { return }
                usleep(2_000)
            }
            throw Failure("meter-ingest did not start")
        }

        var socket: String { home + "/run/ingest.sock" }

        func stop(removing: Bool) {
            process.terminate()
            process.waitUntilExit()
            if removing { try? FileManager.default.removeItem(atPath: home) }
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// What the client threads of a run report, added up as they finish.
    final class Results: Sendable {
        struct Totals {
            var events = 0
            var latencies: [Double] = []
            var failures: [String] = []
        }

        let totals = Mutex(Totals())
    }

    /// When an ingest case stops: after a time, or after a fixed number of events in all.
    enum Limit {
        case seconds(Double)
        case events(Int)
    }

    /// `clients` connections, each sending append requests of `batch` events with up to `depth`
    /// outstanding, until `limit`. Every event carries a unique idempotency key; every request is
    /// acknowledged only after fsync.
    static func ingestBenchmark(name: String, server: IngestServer, clients: Int, batch: Int, depth: Int, limit: Limit) throws -> Row {
        let results = Results()
        let group = DispatchGroup()
        let socket = server.socket
        let commitBefore = (try? UnixClient(path: socket).call("status"))?["commit"]
        let cpuBefore = ProcessCPU.seconds(server.process.processIdentifier)
        let start = Date()
        let runBytes = Array(name.utf8)
        checkSampleEventBytes()
        for client in 0..<clients {
            // With an event limit each client gets its share, the first ones one more when it does not divide.
            let quota: Int?
            let deadline: Date
            switch limit {
            case .seconds(let seconds):
                quota = nil
                deadline = start.addingTimeInterval(seconds)
            case .events(let events):
                quota = events / clients + (client < events % clients ? 1 : 0)
                deadline = .distantFuture
            }
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let connection = try UnixClient(path: socket)
                    var counter = 0
                    var sent: [(time: Date, events: Int)] = []
                    var latencies: [Double] = []
                    var acknowledged = 0
                    latencies.reserveCapacity(100_000)
                    func more() -> Bool { quota.map { counter < $0 } ?? (Date() < deadline) }
                    func request() -> (frame: [UInt8], events: Int) {
                        let size = quota.map { min(batch, $0 - counter) } ?? batch
                        var body = Array(#"{"op":"append","events":["#.utf8)
                        body.reserveCapacity(size * 240)
                        for offset in 0..<size {
                            if offset > 0 { body.append(UInt8(ascii: ",")) }
                            appendSampleEvent(counter + offset, client: client, run: runBytes, to: &body)
                        }
                        body += Array("]}".utf8)
                        counter += size
                        return (FrameEncoder.frame(body), size)
                    }
                    while more() || !sent.isEmpty {
                        while sent.count < depth && more() {
                            let (frame, size) = request()
                            sent.append((Date(), size))
                            try connection.sendRaw(frame)
                        }
                        guard !sent.isEmpty else { break }
                        let payload = try connection.receiveFrame()
                        let (began, size) = sent.removeFirst()
                        latencies.append(Date().timeIntervalSince(began))
                        // Every event must be newly accepted: a duplicate would measure the wrong thing.
                        let accepted = occurrences(of: acceptedMarker, in: payload)
                        guard accepted == size else {
                            throw Failure(
                                "append answered \(accepted) of \(size) accepted: \(String(decoding: payload.prefix(300), as: UTF8.self))")
                        }
                        acknowledged += size
                    }
                    results.totals.withLock { totals in
                        totals.events += acknowledged
                        totals.latencies += latencies
                    }
                } catch {
                    results.totals.withLock { $0.failures.append("\(error)") }
                }
            }.start()
        }
        group.wait()
        let elapsed = Date().timeIntervalSince(start)
        let totals = results.totals.withLock { $0 }
        if let status = try? UnixClient(path: socket).call("status"), let commit = status["commit"] {
            progress("\(name): ingest commit counters so far: \(JSONWriter.string(commit))")
            if let steps = stepsPerGroup(before: commitBefore, after: commit) { progress("\(name): \(steps)") }
        }
        if let before = cpuBefore, let after = ProcessCPU.seconds(server.process.processIdentifier), totals.events > 0 {
            progress(
                "\(name): meter-ingest used \(format((after - before) * 1000)) ms of CPU (user + system, /proc), \(String(format: "%.2f", (after - before) * 1e6 / Double(totals.events))) µs per event"
            )
        }
        if let failure = totals.failures.first { throw Failure("\(name): \(failure)") }
        let description: String
        switch (clients, batch, depth) {
        case (1, 1000, 1): description = "1 client, 1,000 events per request, waits for each ack"
        case (1, 1000, _): description = "1 client, 1,000 events per request, \(depth) requests in flight"
        case (1, 1, _): description = "1 client, 1 event per request"
        default: description = "\(clients) concurrent clients, 1 event per request (group commit)"
        }
        return Row(name: name, description: description, events: totals.events, elapsed: elapsed, latencies: totals.latencies)
    }

    /// Where ingest's time went during a case: each append step's microseconds (ingest's status,
    /// `commit.stepMicroseconds`) per commit group of the case, or nil when ingest does not say.
    static func stepsPerGroup(before: JSONValue?, after: JSONValue) -> String? {
        func number(_ value: JSONValue?, _ key: String) -> Double { value?[key]?.intValue.map(Double.init) ?? 0 }
        let groups = number(after, "groups") - number(before, "groups")
        guard groups > 0, let steps = after["stepMicroseconds"]?.objectValue else { return nil }
        let parts = steps.members.map { member in
            "\(member.key) \(Int((number(after["stepMicroseconds"], member.key) - number(before?["stepMicroseconds"], member.key)) / groups))"
        }
        return "ingest's append steps, µs per commit group (read: by the worker that read the request): " + parts.joined(separator: ", ")
            + " (\(Int(groups)) groups)"
    }

    static let acceptedMarker = Array(#""status":"accepted""#.utf8)

    /// How many times `needle` occurs in `haystack`, not overlapping.
    static func occurrences(of needle: [UInt8], in haystack: [UInt8]) -> Int {
        haystack.withUnsafeBytes { hay in
            needle.withUnsafeBytes { pattern in
                guard let first = pattern.first else { return 0 }
                var count = 0
                var index = 0
                let last = hay.count - pattern.count
                while index <= last {
                    if hay[index] == first && memcmp(hay.baseAddress! + index, pattern.baseAddress!, pattern.count) == 0 {
                        count += 1
                        index += pattern.count
                    } else {
                        index += 1
                    }
                }
                return count
            }
        }
    }

    // MARK: report

    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
    }

    static func format(_ value: Double) -> String {
        let rounded = Int(value.rounded())
        var digits = String(rounded)
        var index = digits.count - 3
        while index > 0 {
            digits.insert(",", at: digits.index(digits.startIndex, offsetBy: index))
            index -= 3
        }
        return digits
    }

    static func milliseconds(_ seconds: Double) -> String { String(format: "%.3f ms", seconds * 1000) }

    static var kernel: String {
        var uname = utsname()
        Glibc.uname(&uname)
        return withUnsafeBytes(of: uname.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static func report(_ rows: [Row], seconds: Double, events: Int?, partitions: Int, store: StoreChoice, arguments: [String]) {
        print("meter-bench — the data path's targets (docs/BENCHMARKS.md)")
        // A NATS URL's password is never printed.
        let shown = arguments.map { $0.hasPrefix("nats://") ? NATSRedaction.redact($0) : $0 }
        print("command: .build/release/meter-bench \(shown.joined(separator: " "))".trimmingCharacters(in: .whitespaces))
        let extent =
            events.map { "\(format(Double($0))) events per ingest case, \(format(seconds)) s per other case" }
            ?? "\(format(seconds)) s per case"
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, Linux \(kernel); release build; \(extent)")
        print("method: a fresh meter-ingest (\(partitions) partitions, manual clock); \(store.method);")
        print("        each event carries a unique idempotency key; client and server share the machine's cores.")
        // meter-ingest inherits the environment: a table sized ahead changes what the ingest cases measure.
        if let expected = ProcessInfo.processInfo.environment["METERING_INGEST_EXPECTED_KEYS"], expected != "0" {
            print("        idempotency table made at start for \(expected) keys (METERING_INGEST_EXPECTED_KEYS); else it grows from empty.")
        }
        print("")
        var table = [["case", "events/s", "events", "requests", "p50 ack", "p99 ack", "what"]]
        for row in rows {
            let sorted = row.latencies.sorted()
            table.append([
                row.name, format(row.perSecond), format(Double(row.events)), format(Double(row.latencies.count)),
                milliseconds(percentile(sorted, 0.5)), milliseconds(percentile(sorted, 0.99)), row.description,
            ])
        }
        var widths = table[0].map(\.count)
        for line in table { for (index, cell) in line.enumerated() { widths[index] = max(widths[index], cell.count) } }
        for (number, line) in table.enumerated() {
            print(line.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            if number == 0 { print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        let goals = targets(rows)
        guard goals.count > 1 else { return }
        print("")
        print("against the targets (the ratios to SQLite and PostgreSQL: scripts/bench-compare):")
        var goalWidths = goals[0].map(\.count)
        for line in goals { for (index, cell) in line.enumerated() { goalWidths[index] = max(goalWidths[index], cell.count) } }
        for (number, line) in goals.enumerated() {
            print(line.enumerated().map { $1.padding(toLength: goalWidths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            if number == 0 { print(goalWidths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
    }

    /// The project's targets that this run's rows measure, each with the figure that decides it:
    /// printed under the table, so a run says plainly which are met.
    static func targets(_ rows: [Row]) -> [[String]] {
        func row(_ name: String) -> Row? { rows.first { $0.name == name } }
        func rate(_ row: Row) -> String { format(row.perSecond) + "/s" }
        var lines: [[String]] = [["target", "figure", "met", "from"]]
        func add(_ target: String, _ figure: String, _ met: Bool, _ from: String) {
            lines.append([target, figure, met ? "yes" : "no", from])
        }
        if let batch = row("batch-1000") {
            add("batched durable ingest ≥ 1,000,000 events/s", rate(batch), batch.perSecond >= 1_000_000, "batch-1000")
        }
        if let sixteen = row("single-16") {
            add("1 event per request, 16 clients ≥ 50,000 events/s", rate(sixteen), sixteen.perSecond >= 50_000, "single-16")
        }
        if let catchUp = row("catch-up") {
            add(
                "aggregator catch-up ≥ 2,000,000 records/s", rate(catchUp), catchUp.perSecond >= 2_000_000,
                "catch-up (\(format(Double(catchUp.events))) records)")
        }
        if let catchUp = row("catch-up-large") {
            add(
                "aggregator catch-up ≥ 2,000,000 records/s, query case's log", rate(catchUp), catchUp.perSecond >= 2_000_000,
                "catch-up-large (\(format(Double(catchUp.events))) records)")
        }
        if let catchUp = row("query-catch-up") {
            add(
                "query catch-up ≥ 1,000,000 records/s", rate(catchUp), catchUp.perSecond >= 1_000_000,
                "query-catch-up (\(format(Double(catchUp.events))) records)")
        }
        if let restart = row("ingest-restart") {
            add(
                "ingest restart to serving ≤ 1 s", milliseconds(restart.elapsed), restart.elapsed <= 1,
                "ingest-restart (\(format(Double(restart.events))) records)")
        }
        if let restart = row("ingest-restart-rebuild") {
            add(
                "ingest restart ≤ 1 s, after a reboot", milliseconds(restart.elapsed), restart.elapsed <= 1,
                "ingest-restart-rebuild (\(format(Double(restart.events))) records)")
        }
        if let restart = row("restart") {
            add(
                "aggregator restart to serving ≤ 1 s", milliseconds(restart.elapsed), restart.elapsed <= 1,
                "restart (\(format(Double(restart.events))) records)")
        }
        if let restart = row("restart-large") {
            add(
                "aggregator restart ≤ 1 s, query case's log", milliseconds(restart.elapsed), restart.elapsed <= 1,
                "restart-large (\(format(Double(restart.events))) records)")
        }
        if let restart = row("query-restart") {
            add(
                "query restart to serving ≤ 2 s", milliseconds(restart.elapsed), restart.elapsed <= 2,
                "query-restart (\(format(Double(restart.events))) records)")
        }
        if let restart = row("query-restart-open") {
            add(
                "query restart to serving ≤ 2 s, an hour open", milliseconds(restart.elapsed), restart.elapsed <= 2,
                "query-restart-open (\(format(Double(restart.events))) records)")
        }
        if let load = row("runrate-4") {
            let p99 = percentile(load.latencies.sorted(), 0.99)
            add("runrate p99 ≤ 1 ms, 4 clients", milliseconds(p99), p99 <= 0.001, "runrate-4")
        }
        if let memory = row("query-memory") {
            add("memory per subscription-meter ≤ 1 KiB", "\(memory.events) B", memory.events <= 1024, "query-memory")
        }
        if let memory = row("query-memory-open") {
            add(
                "memory per subscription-meter ≤ 1 KiB, usage in the open hour", "\(memory.events) B", memory.events <= 1024,
                "query-memory-open")
        }
        return lines
    }

    /// The figures as one JSON object (times in seconds), so scripts need not parse the table.
    static func jsonReport(_ rows: [Row], seconds: Double, events: Int?, partitions: Int, arguments: [String]) -> JSONValue {
        func number(_ value: Double) -> JSONValue { .number(String(format: "%.9f", value)) }
        let cases: [JSONValue] = rows.map { row in
            let sorted = row.latencies.sorted()
            return [
                "name": .string(row.name), "what": .string(row.description), "events": .number(String(row.events)),
                "requests": .number(String(row.latencies.count)), "elapsed": number(row.elapsed),
                "eventsPerSecond": number(row.perSecond), "p50": number(percentile(sorted, 0.5)),
                "p99": number(percentile(sorted, 0.99)), "requestSeconds": number(row.latencies.reduce(0, +)),
            ]
        }
        return [
            "command": .string(
                (["meter-bench"] + arguments.map { $0.hasPrefix("nats://") ? NATSRedaction.redact($0) : $0 }).joined(separator: " ")),
            "cores": .number(String(ProcessInfo.processInfo.activeProcessorCount)), "kernel": .string(kernel),
            "partitions": .number(String(partitions)), "seconds": number(seconds),
            "events": events.map { .number(String($0)) } ?? .null, "cases": .array(cases),
        ]
    }
}
