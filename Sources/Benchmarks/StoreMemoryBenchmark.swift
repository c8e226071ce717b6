import EventStore
import Foundation
import NATS
import Wire

/// What remembering idempotency ids for the window costs in memory, for the two places they can
/// be kept: ingest's own index (rebuilt from the log or stream at start-up), and JetStream's
/// de-duplication window (`Nats-Msg-Id`, kept by every server holding a replica of the stream).
extension Benchmark {
    static func megabytes(_ bytes: Int) -> String { String(format: "%.0f MB", Double(bytes) / 1_000_000) }

    /// Remembers `ids` keys in an `IdempotencyIndex` as ingest does, and measures this process's
    /// resident memory before and after.
    static func indexMemoryBenchmark(ids: Int) -> Row {
        let before = residentBytes(getpid()) ?? 0
        let start = Date()
        var index = IdempotencyIndex(retentionDays: 7)
        let time = Timestamp(seconds: 1_700_000_000)
        for number in 0..<ids {
            let key = "evt-" + String(number)
            index.remember(
                digest: IdempotencyIndex.digest(key),
                at: IdempotencyIndex.Position(
                    partition: number & 3, sequence: UInt64(number >> 2), enqueuedTime: time, payloadDigest: PayloadDigest.hash(key)))
        }
        let elapsed = Date().timeIntervalSince(start)
        let after = residentBytes(getpid()) ?? 0
        precondition(index.count == ids)
        return Row(
            name: "index-memory",
            description:
                "ingest's idempotency index with \(format(Double(ids))) ids: \(megabytes(after - before)) resident (\(megabytes(index.memoryBytes)) table)",
            events: ids, elapsed: elapsed, latencies: [elapsed])
    }

    /// Publishes `ids` messages with distinct `Nats-Msg-Id`s to a fresh stream that keeps one
    /// message but a 7-day window of ids, and measures the NATS server's resident memory (process
    /// `pid`, on this machine) before and after: the window's cost alone.
    static func windowMemoryBenchmark(ids: Int, url: String, pid: Int32) throws -> Row {
        guard let servers = NATSServerAddress.list(url) else { throw Failure("--nats-url is not a NATS URL") }
        let connection = NATSConnection(options: NATSConnection.Options(servers: servers))
        try connection.start(timeout: 10)
        defer { connection.close() }
        let jetStream = JetStream(connection: connection, timeout: 30)
        let stream = "DEDUP\(getpid())"
        let config: JSONValue = [
            "name": .string(stream), "subjects": [.string(stream + ".ids")], "storage": "memory", "num_replicas": 1, "max_msgs": 1,
            "discard": "old", "duplicate_window": .number(String(UInt64(7 * 86_400) * 1_000_000_000)),
        ]
        guard
            case .success(let message) = connection.requestAndWait(
                subject: "$JS.API.STREAM.CREATE." + stream, payload: JSONWriter.bytes(config), timeout: 10),
            (try? JSONParser.parse(message.payload))?["error"] == nil
        else { throw Failure("cannot create the stream \(stream)") }
        Thread.sleep(forTimeInterval: 1)
        let before = residentBytes(pid) ?? 0
        let start = Date()
        let window = 2000
        var sent = 0
        while sent < ids {
            var requests: [NATSRequest] = []
            for number in sent..<min(ids, sent + window) {
                requests.append(
                    try jetStream.publishAsync(
                        subject: stream + ".ids", headers: NATSHeaders([(JetStream.messageID, "evt-" + String(number))]), payload: [0x31]))
            }
            for request in requests {
                guard case .success(let answer) = request.wait(timeout: 30), case .success = PublishAck.decode(answer.payload) else {
                    throw Failure("a publish of the window benchmark failed")
                }
            }
            sent += requests.count
        }
        let elapsed = Date().timeIntervalSince(start)
        Thread.sleep(forTimeInterval: 1)
        let after = residentBytes(pid) ?? 0
        _ = connection.requestAndWait(subject: "$JS.API.STREAM.DELETE." + stream, payload: [], timeout: 30)
        return Row(
            name: "window-memory",
            description:
                "JetStream's duplicate window with \(format(Double(ids))) ids: \(megabytes(after - before)) more resident in nats-server (one replica)",
            events: ids, elapsed: elapsed, latencies: [elapsed])
    }
}
