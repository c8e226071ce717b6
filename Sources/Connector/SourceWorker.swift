import Daemon
import Foundation
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One source, on a thread of its own: read what is new, fold it, close the hours whose grace has
/// passed, and emit them, over and over.
///
/// The order that keeps counts exact across crashes: closed hours go into the outbox and the
/// watermark (position, open sums, outbox) is **persisted before** the outbox is sent; the outbox
/// is emptied (and persisted again) only after ingest answers. A crash before the send resends the
/// same events from the persisted outbox; a crash after it resends them too, and ingest answers
/// `duplicate` because the idempotency keys are the same. Lines read after the persisted position
/// are read again, and those for an hour already in the outbox count as late, into an open hour.
final class SourceWorker: @unchecked Sendable {
    let config: SourceConfig
    private let pollSeconds: Double
    private let store: WatermarkStore
    private let link: IngestLink
    private let board: StatusBoard
    private let failpoint: ConnectorSettings.Failpoint?
    private let follower: FileFollower?
    private var state: SourceState
    private var saved: SourceState
    private var savedAt = Date.distantPast
    private var lastError: (message: String, at: Date)?
    private var clockTime: Timestamp?
    private var nextRun = Date.distantPast
    private var lastRun: JSONValue = .null
    private var retryAt = Date.distantPast
    private var backoff = 0.0
    private let stopping = Atomic<Bool>(false)

    /// Events per append request.
    static let batchSize = 500

    init(
        config: SourceConfig, state: SourceState, pollSeconds: Double, store: WatermarkStore, link: IngestLink, board: StatusBoard,
        failpoint: ConnectorSettings.Failpoint?
    ) {
        self.config = config
        self.state = state
        self.saved = state
        self.pollSeconds = pollSeconds
        self.store = store
        self.link = link
        self.board = board
        self.failpoint = failpoint
        if case .file(let path, let startAtEnd, let wait) = config.input {
            follower = FileFollower(config: config, path: path, startAtEnd: startAtEnd, rotateWaitSeconds: wait)
        } else {
            follower = nil
        }
    }

    func stop() { stopping.store(true, ordering: .relaxed) }
    private var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Steps until stopped, then persists and publishes a last time.
    func run() {
        while !isStopping {
            step()
            var waited = 0.0
            while waited < pollSeconds && !isStopping {
                let slice = min(0.05, pollSeconds - waited)
                Thread.sleep(forTimeInterval: slice)
                waited += slice
            }
        }
        do {
            try save()
        } catch {
            failed("cannot write the watermark at shutdown: \(error)")
        }
        publish()
    }

    private func step() {
        do {
            try flush()
            switch config.input {
            case .file:
                while try follower!.poll(&state) {
                    // A long catch-up: close hours and checkpoint between budgets.
                    try closeHours(catchingUp: true)
                    try saveIfDue()
                    publish()
                    if isStopping { return }
                }
            case .command(let arguments, let interval, let timeout):
                if Date() >= nextRun {
                    nextRun = Date().addingTimeInterval(Double(interval))
                    try runCommand(arguments, timeoutSeconds: timeout)
                }
            }
            // A rotated file finished while the new one waits (a restart during a rotation finds
            // both): the clock alone must not close an hour the new file may still hold lines of.
            try closeHours(catchingUp: follower?.nextFileWaiting ?? false)
            try saveIfDue()
        } catch {
            failed("\(error)")
        }
        publish()
    }

    private func failed(_ message: String) {
        if lastError?.message != message { Log.warning("source \(config.name): \(message)") }
        lastError = (message, Date())
    }

    // MARK: hours and emission

    /// Closes the hours whose grace has passed. `catchingUp`: more is waiting to be read (the rest
    /// of a backlog, or the next file of a rotation), so no hour closes beyond the newest record
    /// read (plus grace) either: a backlog read in time order then closes hour after hour instead
    /// of making everything after the first chunk late, and nothing closes before anything is read.
    private func closeHours(catchingUp: Bool) throws {
        let now: Timestamp
        do {
            now = try link.now()
        } catch {
            failed("cannot read the clock from meter-ingest at \(link.socket): \(error)")
            return
        }
        clockTime = now
        let emittedBefore = state.accumulator.emittedBefore
        var boundary = HourlyAccumulator.boundary(now: now, graceSeconds: config.graceSeconds)
        if catchingUp {
            guard let newest = state.accumulator.newestTime else { return }
            boundary = min(boundary, HourlyAccumulator.boundary(now: newest, graceSeconds: config.graceSeconds))
        }
        let added = state.close(before: boundary, config: config)
        // Persisted at once when hours close, so which records are late is decided once, even
        // across a crash: the outbox and the line between emitted and open hours go together.
        if added > 0 || state.accumulator.emittedBefore != emittedBefore { try save() }
        if added > 0 { try flush() }
    }

    /// Sends the outbox, persisted first, in batches; stops at the first failure (retried later,
    /// with backoff, the same events under the same keys).
    private func flush() throws {
        while !state.outbox.isEmpty && Date() >= retryAt && !isStopping {
            if state != saved { try save() }
            let batch = Array(state.outbox.prefix(Self.batchSize))
            if failpoint == .beforeAppend { die("before-append") }
            let results: [JSONValue]
            do {
                results = try link.append(batch)
            } catch {
                retryLater("cannot append \(batch.count) events to meter-ingest at \(link.socket): \(error)")
                return
            }
            guard results.count == batch.count else {
                retryLater("meter-ingest answered \(results.count) results for \(batch.count) events")
                return
            }
            if failpoint == .afterAppend { die("after-append") }
            let before = state.outbox.count
            state.acknowledge(results)
            try save()
            if state.outbox.count > before - batch.count {
                retryLater("meter-ingest is unavailable for some events; they are sent again")
                return
            }
            backoff = 0
            retryAt = .distantPast
        }
    }

    private func retryLater(_ message: String) {
        backoff = backoff == 0 ? 0.5 : min(backoff * 2, 30)
        retryAt = Date().addingTimeInterval(backoff)
        failed(message + "; retrying in \(backoff) s")
    }

    private func die(_ point: String) -> Never {
        Log.notice("failpoint \(point) reached: killing this process (METERING_CONNECTOR_FAILPOINT)")
        kill(getpid(), SIGKILL)
        while true { pause() }
    }

    // MARK: the watermark

    private func save() throws {
        try store.save(state)
        saved = state
        savedAt = Date()
    }

    /// A checkpoint at most every second while the position moves: a crash re-reads that much.
    private func saveIfDue() throws {
        if state != saved && Date().timeIntervalSince(savedAt) >= 1 { try save() }
    }

    // MARK: command sources

    private func runCommand(_ arguments: [String], timeoutSeconds: Int) throws {
        let until: Timestamp
        do {
            until = try link.now()
        } catch {
            failed("cannot read the clock from meter-ingest at \(link.socket) to run the command: \(error)")
            return
        }
        if let since = state.since, until < since {
            failed("the clock (\(until.iso8601)) is behind the end of the last run's window (\(since.iso8601)); waiting")
            return
        }
        let started = Date()
        let environment = [
            "METERING_CONNECTOR_SOURCE": config.name, "METERING_CONNECTOR_SINCE": state.since?.iso8601 ?? "",
            "METERING_CONNECTOR_UNTIL": until.iso8601,
        ]
        switch CommandRunner.run(arguments, environment: environment, timeoutSeconds: timeoutSeconds, isStopping: { isStopping }) {
        case .failure(let failure):
            lastRun = [
                "until": .string(until.iso8601), "seconds": .number(String(format: "%.3f", Date().timeIntervalSince(started))),
                "result": .string("\(failure)"),
            ]
            failed("run for the window up to \(until.iso8601) not used: \(failure)")
        case .success(let output):
            let split = LineSplitter.split(output, discarding: false, maxLineBytes: config.maxLineBytes, atEnd: true)
            var header: CSVHeader?
            let run = "run up to \(until.iso8601)"
            for (index, piece) in split.pieces.enumerated() {
                switch piece {
                case .line(let range): state.fold(line: output[range], config: config, header: &header, at: "\(run), line \(index + 1)")
                case .tooLong(let range): state.foldTooLong(output[range], limit: config.maxLineBytes, at: "\(run), line \(index + 1)")
                }
            }
            state.since = until
            state.counters.runs += 1
            lastRun = [
                "until": .string(until.iso8601), "seconds": .number(String(format: "%.3f", Date().timeIntervalSince(started))),
                "lines": .number(String(split.pieces.count)), "result": "ok",
            ]
            try save()
        }
    }

    // MARK: status

    private func publish() {
        board.publish(config.name, statusJSON())
    }

    private func statusJSON() -> JSONValue {
        var members: [JSONObject.Member] = [.init("name", .string(config.name))]
        var watermark = JSONObject()
        var lagBytes: JSONValue = .null
        switch config.input {
        case .file(let path, _, _):
            members.append(.init("type", "file"))
            members.append(.init("path", .string(path)))
            members.append(.init("activity", .string(follower?.activity ?? "")))
            if let position = state.file {
                watermark = JSONObject([
                    "file": .string(follower?.openedAs ?? path), "device": .number(String(position.device)),
                    "inode": .number(String(position.inode)), "offset": .number(String(position.offset)),
                    "line": .number(String(position.line)),
                ])
            }
            if let lag = follower?.lagBytes(state) { lagBytes = .number(String(lag)) }
        case .command(let arguments, let interval, _):
            members.append(.init("type", "command"))
            members.append(.init("command", .array(arguments.map { .string($0) })))
            members.append(.init("intervalSeconds", .number(String(interval))))
            members.append(.init("lastRun", lastRun))
            watermark["since"] = state.since.map { .string($0.iso8601) } ?? .null
        }
        let counters = state.counters
        let hours = Set(state.accumulator.open.keys.map(\.hour))
        members += [
            .init("watermark", .object(watermark)),
            .init(
                "lag",
                [
                    "bytes": lagBytes, "records": .number(String(state.accumulator.openRecords)),
                    "openHours": .number(String(hours.count)),
                    "oldestOpenHour": state.accumulator.oldestOpenHour.map { .string($0.iso8601) } ?? .null,
                ]),
            .init("emittedBefore", state.accumulator.emittedBefore.map { .string($0.iso8601) } ?? .null),
            .init("clock", clockTime.map { .string($0.iso8601) } ?? .null),
            .init(
                "records",
                [
                    "read": .number(String(counters.read)), "counted": .number(String(counters.counted)),
                    "skipped": .number(String(counters.skipped)), "malformed": .number(String(counters.malformed)),
                    "late": .number(String(counters.late)),
                ]),
            .init(
                "malformedExamples",
                .array(counters.examples.map { ["at": .string($0.at), "reason": .string($0.reason), "text": .string($0.text)] })),
            .init(
                "events",
                [
                    "accepted": .number(String(counters.accepted)), "duplicates": .number(String(counters.duplicates)),
                    "rejected": .number(String(counters.rejected)), "pending": .number(String(state.outbox.count)),
                ]),
            .init("meters", .array(config.meters.map { meterJSON($0, counters.meters[$0.name] ?? MeterCounters()) })),
            .init("rotations", .number(String(counters.rotations))),
            .init("truncations", .number(String(counters.truncations))),
            .init("runs", .number(String(counters.runs))),
            .init("problems", .array(counters.problems.map { .string($0) })),
            .init("lastError", lastError.map { .string($0.message) } ?? .null),
            .init(
                "lastErrorAt",
                lastError.map { .string(Timestamp(microseconds: Int64($0.at.timeIntervalSince1970 * 1_000_000)).iso8601) } ?? .null),
        ]
        return .object(JSONObject(members))
    }

    private func meterJSON(_ rule: MeterRule, _ meter: MeterCounters) -> JSONValue {
        [
            "name": .string(rule.name), "meterName": .string(rule.meterName), "counted": .number(String(meter.counted)),
            "skipped": .number(String(meter.skipped)), "malformed": .number(String(meter.malformed)), "late": .number(String(meter.late)),
            "events": .number(String(meter.events)), "quantity": meter.quantity.json,
        ]
    }
}
