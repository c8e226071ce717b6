import Billing
import Foundation
import Wire

/// Follows one partition of the log from ingest and folds it into that partition's state.
///
/// Restores from the newest valid snapshot, then asks ingest to `follow` from the next
/// sequence; a lost connection is retried with backoff from where the state stands, so a
/// restart of either process never skips or repeats a record.
final class PartitionWorker: @unchecked Sendable {
    let partition: Int
    private let configuration: AggregatorConfiguration
    private let store: SnapshotStore
    private let lock = NSLock()
    private var state: PartitionState
    private var stopped = false
    private var connection: UnixClient?
    private var appliedSinceSnapshot = 0
    private var lastSnapshotTime: Timestamp?
    private var lastSnapshotSequence: UInt64?
    private var connected = false
    private var lastError: String?
    private var ingestNext: UInt64?
    private var recordsApplied = 0
    private let caughtUp = DispatchSemaphore(value: 0)
    private var signalledCaughtUp = false

    init(partition: Int, configuration: AggregatorConfiguration) {
        self.partition = partition
        self.configuration = configuration
        self.store = SnapshotStore(root: configuration.snapshotDirectory, partition: partition, kept: configuration.snapshotsKept)
        if let restored = store.loadNewest() {
            state = restored
            lastSnapshotSequence = restored.lastSequence
            lastSnapshotTime = restored.time
        } else {
            state = PartitionState(partition: partition)
        }
    }

    /// Reads the state under the lock.
    func read<T>(_ body: (PartitionState) -> T) -> T { lock.withLock { body(state) } }

    struct Progress {
        var nextSequence: UInt64
        var ingestNext: UInt64?
        var connected: Bool
        var lastError: String?
        var snapshotSequence: UInt64?
        var recordsApplied: Int
    }

    var progress: Progress {
        lock.withLock {
            Progress(
                nextSequence: state.lastSequence.map { $0 + 1 } ?? 0, ingestNext: ingestNext, connected: connected, lastError: lastError,
                snapshotSequence: lastSnapshotSequence, recordsApplied: recordsApplied)
        }
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "aggregator-p\(partition)"
        thread.start()
    }

    /// Waits until the first catch-up finished (or `timeout` seconds).
    func waitUntilCaughtUp(timeout: Double) -> Bool { caughtUp.wait(timeout: .now() + timeout) == .success }

    /// Stops following and writes a final snapshot.
    func stop() {
        let open = lock.withLock { () -> UnixClient? in
            stopped = true
            return connection
        }
        open?.shutdownWrite()
        lock.withLock { saveSnapshot() }
    }

    private func run() {
        var backoff = 0.1
        while !lock.withLock({ stopped }) {
            do {
                try follow()
                backoff = 0.1
            } catch {
                let message = "\(error)"
                let changed = lock.withLock { () -> Bool in
                    defer {
                        lastError = message
                        connected = false
                        connection = nil
                    }
                    return lastError != message
                }
                if lock.withLock({ stopped }) { break }
                if changed { Log.warning("partition \(partition): \(message); retrying") }
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
    }

    private func follow() throws {
        let client = try UnixClient(path: configuration.ingestSocket, maximumFrameLength: configuration.maximumFrameBytes)
        let from = lock.withLock { () -> UInt64 in
            connection = client
            return state.lastSequence.map { $0 + 1 } ?? 0
        }
        let status = try client.call("status")
        let partitions = status["partitions"]?.arrayValue ?? []
        guard partition < partitions.count else {
            throw WireError(.notFound, "ingest's log has \(partitions.count) partitions; this aggregator owns partition \(partition)")
        }
        var head = UInt64(partitions[partition]["nextSequence"]?.intValue ?? 0)
        lock.withLock {
            ingestNext = head
            connected = true
            lastError = nil
        }
        if from == 0 && head == 0 { markCaughtUp() }
        try client.send(
            Request(
                op: "follow",
                fields: JSONObject(["partition": .number(String(partition)), "from": .number(String(from)), "max": 5000])))
        Log.info("partition \(partition): following ingest from sequence \(from) (ingest is at \(head))")
        while true {
            let frame = try client.receive()
            let response: JSONObject
            switch Response.check(frame) {
            case .success(let object): response = object
            case .failure(let error): throw error
            }
            let records = response["records"]?.arrayValue ?? []
            var decoded: [BillingRecord] = []
            decoded.reserveCapacity(records.count)
            for record in records {
                decoded.append(try Self.billingRecord(record, partition: partition))
            }
            lock.withLock {
                for record in decoded {
                    let expected = state.lastSequence.map { $0 + 1 } ?? 0
                    if record.sequence < expected { continue }  // already folded (a resend after reconnecting)
                    guard record.sequence == expected else {
                        lastError = "gap: record \(record.sequence) where \(expected) was expected"
                        break
                    }
                    state.apply(record)
                    recordsApplied += 1
                    appliedSinceSnapshot += 1
                }
                if let last = decoded.last { head = max(head, last.sequence + 1) }
                ingestNext = max(ingestNext ?? 0, head)
                if snapshotDue() { saveSnapshot() }
            }
            if let error = lock.withLock({ lastError }), error.hasPrefix("gap") { throw WireError(.internalError, error) }
            if lock.withLock({ (state.lastSequence.map { $0 + 1 } ?? 0) >= head }) { markCaughtUp() }
        }
    }

    private func markCaughtUp() {
        let first = lock.withLock { () -> Bool in
            defer { signalledCaughtUp = true }
            return !signalledCaughtUp
        }
        if first { caughtUp.signal() }
    }

    /// A record of the wire protocol as the billing fold takes it.
    static func billingRecord(_ record: JSONValue, partition: Int) throws -> BillingRecord {
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

    // MARK: snapshots (lock held)

    private func snapshotDue() -> Bool {
        if appliedSinceSnapshot >= configuration.snapshotEveryRecords { return true }
        guard appliedSinceSnapshot > 0, let time = state.time else { return false }
        guard let last = lastSnapshotTime else {
            lastSnapshotTime = time
            return false
        }
        return time.microseconds - last.microseconds >= Int64(configuration.snapshotEverySeconds) * 1_000_000
    }

    private func saveSnapshot() {
        guard appliedSinceSnapshot > 0 || (lastSnapshotSequence == nil && state.lastSequence != nil) else { return }
        do {
            try store.save(state)
            appliedSinceSnapshot = 0
            lastSnapshotTime = state.time
            lastSnapshotSequence = state.lastSequence
        } catch {
            Log.error("partition \(partition): cannot write a snapshot: \(error); will retry")
        }
    }
}
