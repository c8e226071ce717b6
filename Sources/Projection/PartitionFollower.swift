public import Billing
import Daemon
import Foundation
import Synchronization
import Transport
public import Wire

/// The owner of one partition's folded state, fed by a `PartitionFollower`.
public protocol PartitionFolding: AnyObject, Sendable {
    /// The sequence number of the next record the state needs (0 for an empty state).
    func nextSequence() -> UInt64
    /// Folds `records`: consecutive, starting at `nextSequence()`, in log order. Handed over, so a
    /// fold takes each record out of the batch (`takeEach`) instead of copying it to pass it on.
    func fold(_ records: RecordBatch)
}

/// Follows one partition of the log from ingest (`follow` on its client socket) and hands the
/// decoded records to a `PartitionFolding` owner.
///
/// Asks from the owner's next sequence every time it connects, so a restart of either process never
/// skips or repeats a record; a lost connection is retried with backoff. Records already folded (a
/// resend after reconnecting) are dropped, and a gap stops the connection rather than folding wrong
/// numbers. Shared by the aggregator and the query service, so both see the log the same way.
///
/// Unchecked only for `owner`, a weak reference (so a `var`), set in `init` and never after;
/// everything that changes is in `state`.
public final class PartitionFollower: @unchecked Sendable {
    public let partition: Int
    private let ingestSocket: String
    private let maximumFrameBytes: Int
    private weak var owner: (any PartitionFolding)?
    private let state = Mutex(State())
    private let caughtUp = DispatchSemaphore(value: 0)

    /// Unchecked for `connection`, a `UnixClient` that `stop` uses from another thread only to
    /// shut down its writing side.
    private struct State: @unchecked Sendable {
        var stopped = false
        var connection: UnixClient?
        var connected = false
        var lastError: String?
        var ingestNext: UInt64?
        var recordsFolded = 0
        var signalledCaughtUp = false
    }

    private let binding: LogBinding

    /// A follower of `partition` on `ingestSocket` for `owner` (held weakly), whose state belongs
    /// to the log `binding` names.
    public init(partition: Int, ingestSocket: String, maximumFrameBytes: Int, binding: LogBinding, owner: any PartitionFolding) {
        self.partition = partition
        self.ingestSocket = ingestSocket
        self.maximumFrameBytes = maximumFrameBytes
        self.binding = binding
        self.owner = owner
    }

    /// Where following stands, for status pages.
    public struct Progress: Sendable {
        /// Ingest's next sequence for the partition, as last seen.
        public var ingestNext: UInt64?
        public var connected: Bool
        public var lastError: String?
        /// Records folded since this process started.
        public var recordsFolded: Int
    }

    public var progress: Progress {
        state.withLock {
            Progress(ingestNext: $0.ingestNext, connected: $0.connected, lastError: $0.lastError, recordsFolded: $0.recordsFolded)
        }
    }

    /// Whether a state that needs `nextSequence` next is behind the head ingest reported when the
    /// follower connected: catching up, when log time races through hours in seconds (snapshot
    /// schedules then go by the record count only).
    public func isCatchingUp(nextSequence: UInt64) -> Bool { (progress.ingestNext ?? 0) > nextSequence }

    /// Starts following on a thread of its own.
    public func start(threadName: String) {
        let thread = Thread { [self] in run() }
        thread.name = threadName
        thread.start()
    }

    /// Waits until the first catch-up finished (or `timeout` seconds).
    public func waitUntilCaughtUp(timeout: Double) -> Bool { caughtUp.wait(timeout: .now() + timeout) == .success }

    /// Stops following (the record batch in hand is still folded).
    public func stop() {
        let open = state.withLock { state -> UnixClient? in
            state.stopped = true
            return state.connection
        }
        open?.shutdownWrite()
    }

    private func run() {
        var backoff = 0.1
        while !state.withLock({ $0.stopped }) {
            do {
                try follow()
                backoff = 0.1
            } catch {
                let message = "\(error)"
                let changed = state.withLock { state -> Bool in
                    defer {
                        state.lastError = message
                        state.connected = false
                        state.connection = nil
                    }
                    return state.lastError != message
                }
                if state.withLock({ $0.stopped }) { break }
                if changed { Log.warning("partition \(partition): \(message); retrying") }
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
    }

    private func follow() throws {
        guard let owner else {
            // Nothing left to fold into: stop rather than reconnect forever.
            state.withLock { $0.stopped = true }
            return
        }
        let client = try UnixClient(path: ingestSocket, maximumFrameLength: maximumFrameBytes)
        state.withLock { $0.connection = client }
        let from = owner.nextSequence()
        let status = try client.call("status")
        let partitions = status["partitions"]?.arrayValue ?? []
        guard partition < partitions.count else {
            throw WireError(.notFound, "ingest's log has \(partitions.count) partitions; this process follows partition \(partition)")
        }
        var head = UInt64(partitions[partition]["nextSequence"]?.intValue ?? 0)
        guard let identity = status["log"]?["identity"]?.stringValue else {
            throw WireError(.badJSON, "ingest's status names no log identity; it is older than this process: upgrade meter-ingest first")
        }
        do {
            try binding.check(identity)
        } catch {
            refuse(error.description)
            return
        }
        if from > head {
            refuse(
                "partition \(partition): this state has folded records up to \(from - 1), but ingest's log \(identity) ends \(head == 0 ? "empty" : "at record \(head - 1)"): the log lost records it had served, and new records would reuse their numbers. Folding stopped; rebuild this read model from the log with `meterctl rebuild` (docs/OPERATIONS.md)"
            )
            return
        }
        state.withLock { state in
            state.ingestNext = head
            state.connected = true
            state.lastError = nil
        }
        if from >= head { markCaughtUp() }
        try client.send(
            Request(
                op: "follow",
                fields: JSONObject([
                    "partition": .number(String(partition)), "from": .number(String(from)), "max": .number(String(Self.recordsPerAnswer)),
                ])))
        Log.info("partition \(partition): following ingest from sequence \(from) (ingest is at \(head))")
        while true {
            let (decoded, frameLog) = try Self.records(try client.receiveFrame(), partition: partition)
            if let frameLog, frameLog != identity {
                refuse("partition \(partition): ingest switched from log \(identity) to log \(frameLog) while it was being followed")
                return
            }
            let expected = try Self.dropFolded(decoded, expected: owner.nextSequence())
            let count = decoded.count
            if count > 0 { owner.fold(decoded) }
            head = max(head, expected)
            state.withLock { state in
                state.recordsFolded += count
                state.ingestNext = max(state.ingestNext ?? 0, head)
            }
            if expected >= head { markCaughtUp() }
        }
    }

    /// Stops following for good: the state and the log disagree (`FoldingRefusal`).
    private func refuse(_ message: String) {
        state.withLock { state in
            state.stopped = true
            state.connected = false
            state.lastError = message
        }
        FoldingRefusal.refuse(message)
    }

    private func markCaughtUp() {
        let first = state.withLock { state -> Bool in
            defer { state.signalledCaughtUp = true }
            return !state.signalledCaughtUp
        }
        if first { caughtUp.signal() }
    }

    /// The most records a `follow` answer carries.
    public static let recordsPerAnswer = 5000

    /// Drops the records already folded (a resend after reconnecting: sequences below `expected`)
    /// and checks that the rest follow on without a gap; the sequence expected after them. The
    /// records are read where they lie and none is moved: a catch-up hands millions of them on.
    public static func dropFolded(_ records: RecordBatch, expected: UInt64) throws -> UInt64 {
        let folded = records.withRecords { buffer in
            var count = 0
            while count < buffer.count && buffer[count].sequence < expected { count += 1 }
            return count
        }
        if folded > 0 { records.dropFirst(folded) }
        var next = expected
        try records.withRecords { buffer in
            for index in buffer.indices {
                guard buffer[index].sequence == next else {
                    throw WireError(.internalError, "gap: record \(buffer[index].sequence) where \(next) was expected")
                }
                next += 1
            }
        }
        return next
    }

    /// A `follow` answer's records as the billing fold takes them, and the log's identity: read on
    /// the fast path (`RecordFrameReader`), or as JSON when it does not recognise the answer.
    public static func records(_ frame: [UInt8], partition: Int) throws -> (records: RecordBatch, log: String?) {
        // About what a usage record takes in an answer: one growth at most, no chain of copies.
        let records = RecordBatch(capacity: frame.count / 160)
        var undecodable: (sequence: UInt64, error: MessageError)?
        let end = RecordFrameReader.read(
            frame,
            record: { _, sequence, time, message in
                records.append(BillingRecord(partition: partition, sequence: sequence, enqueuedTime: time, message: consume message))
            },
            undecodable: { _, sequence, _, error in
                if undecodable == nil { undecodable = (sequence, error) }
            })
        guard let end else {
            let response: JSONObject
            switch Response.check(try JSONParser.parse(frame)) {
            case .success(let object): response = object
            case .failure(let error): throw error
            }
            let records = try (response["records"]?.arrayValue ?? []).map { try billingRecord($0, partition: partition) }
            return (RecordBatch(records), response["log"]?.stringValue)
        }
        if let undecodable {
            // Ingest validated it when it was appended; a record that no longer decodes means the
            // two disagree on the format: stop rather than fold wrong numbers.
            throw WireError(.internalError, "record \(partition)/\(undecodable.sequence) does not decode: \(undecodable.error)")
        }
        return (records, end.log)
    }

    /// A record of the wire protocol as the billing fold takes it.
    public static func billingRecord(_ record: JSONValue, partition: Int) throws -> BillingRecord {
        guard let sequence = record["sequence"]?.intValue, sequence >= 0,
            let timeText = record["enqueuedTime"]?.stringValue, let time = Timestamp(iso8601: timeText), let event = record["event"]
        else { throw WireError(.badJSON, "malformed record from ingest: \(JSONWriter.string(record).prefix(200))") }
        switch Message.decode(event) {
        case .success(let message):
            return BillingRecord(partition: partition, sequence: UInt64(sequence), enqueuedTime: time, message: message)
        case .failure(let error):
            // Ingest validated it when it was appended; a record that no longer decodes means the
            // two disagree on the format: stop rather than fold wrong numbers.
            throw WireError(.internalError, "record \(partition)/\(sequence) does not decode: \(error)")
        }
    }

    /// Asks ingest how many partitions its log has, waiting for ingest to come up.
    public static func waitForPartitionCount(ingestSocket: String, maximumFrameBytes: Int) -> Int {
        var announced = false
        while true {
            if let client = try? UnixClient(path: ingestSocket, maximumFrameLength: maximumFrameBytes),
                let status = try? client.call("status"), let count = status["partitions"]?.arrayValue?.count, count > 0
            {
                return count
            }
            if !announced {
                Log.notice("waiting for meter-ingest at \(ingestSocket) to learn the partition count")
                Systemd.notifyStatus("waiting for meter-ingest at \(ingestSocket)")
                announced = true
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }
}
