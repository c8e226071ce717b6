import EventStore
import Foundation
import JetStreamStore
import NATS
import Wire

/// `meterctl log migrate`: copies a stopped ingest's embedded log into a JetStream stream, record
/// for record (partition, sequence, enqueued time, idempotency key, payload), under the log's own
/// identity, so meter-aggregator and meter-query keep what they folded (docs/SCALING.md).
enum MigrateCommand {
    static let natsURL = Option(
        "nats-url", .value("URL"), "the NATS server (nats://user:password@host:port)", environment: "METERING_NATS_URL",
        fallback: .value("nats://127.0.0.1:4222"))
    static let stream = Option(
        "nats-stream", .value("NAME"), "the stream to fill", environment: "METERING_NATS_STREAM", fallback: .value("METERING"))
    static let replicas = Option(
        "nats-replicas", .value("N"), "copies of every record (1, 3 or 5)", environment: "METERING_NATS_REPLICAS", fallback: .value("3"),
        choices: ["1", "3", "5"])

    static let command = Command(
        name: "migrate",
        summary: "copy the embedded log into a JetStream stream, to run ingest with METERING_STORE=jetstream (ingest stopped)",
        details:
            "The stream is made (or, when a copy was interrupted, continued) with the log's identity, partition count and clock; every record keeps its partition, sequence and enqueued time. Then every record is read back from the stream and compared. The log itself is left as it was.",
        options: [natsURL, stream, replicas, .home],
        examples: ["meterctl log migrate --nats-url nats://ingest:secret@127.0.0.1:4222 --nats-replicas 3"], run: { try migrate($0) })

    /// Records per commit group, and about how many bytes.
    static let groupRecords = 2000
    static let groupBytes = 4 << 20

    static func migrate(_ invocation: Invocation) throws {
        let directory = invocation.home + "/data/log"
        guard FileManager.default.fileExists(atPath: directory + "/log.json") else {
            throw MeterCtl.Failure("there is no log at \(directory)")
        }
        let url = invocation.value(natsURL) ?? "nats://127.0.0.1:4222"
        guard let servers = NATSServerAddress.list(url) else { throw UsageError("--nats-url must be nats://[user:password@]host[:port]") }
        let streamName = invocation.value(stream) ?? "METERING"
        let replicaCount = Int(invocation.value(replicas) ?? "3") ?? 3

        let log: EventLog
        do {
            var options = EventLog.Options(partitionCount: 1)
            options.clock = LogManifest.recordedClock(directory) ?? "system"
            log = try EventLog(directory: directory, options: options)
        } catch {
            throw MeterCtl.Failure("\(error)")
        }
        var options = JetStreamStore.Options(servers: servers, partitionCount: log.partitions.count)
        options.partitionCountIsExplicit = true
        options.stream = streamName
        options.replicas = replicaCount
        options.clock = log.manifest.clock
        options.identity = log.manifest.identity
        options.connectionName = "meterctl-migrate"
        let store: JetStreamStore
        do {
            store = try JetStreamStore(options: options)
        } catch {
            throw MeterCtl.Failure("\(error)")
        }
        defer { store.shutDown() }
        guard store.identity == log.manifest.identity else {
            throw MeterCtl.Failure(
                "the stream \(streamName) already holds another log (identity \(store.identity), not \(log.manifest.identity)); name another with --nats-stream"
            )
        }
        let resumed = store.partitions.contains { $0.nextSequence > 0 }
        print(
            "copying the log at \(directory) (identity \(log.manifest.identity), \(log.partitions.count) partitions) into the stream \(streamName) (R\(replicaCount))"
                + (resumed ? ", continuing an earlier copy" : ""))
        var copied = 0
        for partition in log.partitions {
            let total = partition.durableNextSequence
            var next = store.partitions[partition.partition].nextSequence
            guard next <= total else {
                throw MeterCtl.Failure("the stream's partition \(partition.partition) has \(next) records, more than the log's \(total)")
            }
            while next < total {
                let records = try partition.read(from: next, maxRecords: groupRecords, maxBytes: groupBytes)
                guard !records.isEmpty else { throw MeterCtl.Failure("partition \(partition.partition) ends at \(next) of \(total)") }
                try store.commitRecords(records.map(pending))
                next += UInt64(records.count)
                copied += records.count
            }
            print("partition \(partition.partition): \(total) records")
        }
        // Everything read back and compared, so a stream is never trusted on the copy's word.
        for partition in log.partitions {
            var next: UInt64 = 0
            let copy = store.partitions[partition.partition]
            guard copy.durableNextSequence == partition.durableNextSequence else {
                throw MeterCtl.Failure(
                    "partition \(partition.partition): the stream has \(copy.durableNextSequence) records, the log \(partition.durableNextSequence)"
                )
            }
            while next < partition.durableNextSequence {
                let original = try partition.read(from: next, maxRecords: groupRecords, maxBytes: groupBytes)
                let copied = try copy.read(from: next, maxRecords: original.count, maxBytes: 2 * groupBytes)
                guard copied.count == original.count else {
                    throw MeterCtl.Failure("partition \(partition.partition): the stream lacks records from \(next)")
                }
                for (left, right) in zip(original, copied) where !same(left, right) {
                    throw MeterCtl.Failure(
                        "partition \(partition.partition), record \(left.sequence): the stream's copy differs from the log")
                }
                next += UInt64(original.count)
            }
        }
        print("copied \(copied) records; every record of the stream compared with the log")
        print("")
        print(
            "Next: start meter-ingest with METERING_STORE=jetstream METERING_NATS_STREAM=\(streamName) METERING_NATS_REPLICAS=\(replicaCount)"
        )
        print("and METERING_NATS_URL; the aggregator and query keep their state (the identity is the log's).")
    }

    /// A log record as a record to append, its digests worked out when an old log lacks them.
    static func pending(_ record: LogRecord) -> EventLog.Pending {
        var meta = record.meta
        if let key = meta.idempotencyKey {
            if meta.keyDigest == nil { meta.keyDigest = IdempotencyIndex.digest(key) }
            if meta.payloadDigest == nil, let json = try? JSONParser.parse(record.payload) {
                meta.payloadDigest = PayloadDigest.ofMessage(json)
            }
        }
        return EventLog.Pending(partition: record.partition, time: record.enqueuedTime, meta: meta, payload: record.payload)
    }

    private static func same(_ left: LogRecord, _ right: LogRecord) -> Bool {
        left.partition == right.partition && left.sequence == right.sequence && left.enqueuedTime == right.enqueuedTime
            && left.payload == right.payload && left.meta.idempotencyKey == right.meta.idempotencyKey
            && left.meta.purchasedResource == right.meta.purchasedResource
    }
}

extension LogManifest {
    /// The clock `log.json` in `directory` records, nil when it cannot be read.
    static func recordedClock(_ directory: String) -> String? {
        guard let data = FileManager.default.contents(atPath: directory + "/log.json"),
            case .success(.current(let manifest)) = LogManifest.decode(Array(data))
        else { return nil }
        return manifest.clock
    }
}
