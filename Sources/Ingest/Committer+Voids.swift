import EventStore
import Wire

/// What ingest does with a `UsageVoided` (docs/PROTOCOL.md §7, docs/BILLING.md "Corrections"):
/// every key it names must be a `UsageReported` still inside the window of ids and not voided yet;
/// then it becomes one record per key, in the partition of that usage, with the usage attached,
/// so the fold sees the void after the usage and knows what to take back without remembering
/// every usage report. All or nothing: one bad key refuses the message.
///
/// "Already voided" needs no state of its own: each record is kept in the index of idempotency
/// keys under a key derived from the usage's (`voidKeyDigest`), which no client key can equal. The
/// index is rebuilt from the records at start-up like any key, and forgets it with the usage's key.
extension Committer {
    /// How a void is written, or why not.
    enum VoidPlan {
        /// The records to place: one per key, each in its usage's partition.
        case records([VoidRecord])
        /// Sent before: every key was voided by this same message.
        case duplicate(IdempotencyIndex.Position)
        case refused(WireError)
    }

    struct VoidRecord {
        var partition: Int
        var meta: RecordMeta
        var payload: [UInt8]
    }

    /// The index key of the void of the usage sent with `key`: its digest over bytes that are not
    /// UTF-8 (a 0xFF first), so no idempotency key of a client can have it.
    static func voidKeyDigest(_ key: String) -> PayloadDigest {
        var bytes: [UInt8] = [0xFF]
        bytes.append(contentsOf: "voided:".utf8)
        bytes.append(contentsOf: key.utf8)
        return bytes.withUnsafeBytes { PayloadDigest.hash($0) }
    }

    /// Checks `event` (a `UsageVoided`) against the log at `now`. `lookup` finds a key digest in
    /// the index or in the group being placed; `placed` gives the payload of a record of that group
    /// (not in the log yet); `retained` tells whether a key recorded then is still inside the window.
    func planVoid(
        _ event: ValidatedEvent, lookup: (PayloadDigest) -> IdempotencyIndex.Position?,
        placed: (IdempotencyIndex.Position) -> [UInt8]?, retained: (Timestamp) -> Bool, retentionDays: Int
    ) -> VoidPlan {
        guard let json = try? JSONParser.parse(event.payload), case .success(let message) = Message.decode(json),
            case .usageVoided(let void) = message.body, case .object(let envelope) = json, case .object(let value)? = envelope["value"]
        else { return .refused(WireError(.invalidEvent, "not a UsageVoided message")) }
        let digest = PayloadDigest.ofMessage(json)

        var earlier: [(key: String, position: IdempotencyIndex.Position)] = []
        for key in void.ids {
            if let position = lookup(Self.voidKeyDigest(key)) { earlier.append((key, position)) }
        }
        if earlier.count == void.ids.count, earlier.allSatisfy({ IdempotencyIndex.samePayload($0.position.payloadDigest, digest) }) {
            return .duplicate(earlier[0].position)
        }
        if let (key, position) = earlier.first {
            return .refused(
                WireError(
                    .conflict,
                    "value.ids: the usage sent with id \"\(key.prefix(200))\" was already voided (partition \(position.partition), sequence \(position.sequence), enqueued \(position.enqueuedTime.iso8601)); nothing was appended"
                ))
        }

        var records: [VoidRecord] = []
        for key in void.ids {
            let window = "ids are remembered for \(retentionDays) days (METERING_IDEMPOTENCY_DAYS)"
            guard let position = lookup(PayloadDigest.hash(key)) else {
                return .refused(
                    WireError(
                        .notFound,
                        "value.ids: no event was sent with id \"\(key.prefix(200))\" in the last \(retentionDays) days (\(window)): it was never sent, or it is older and can no longer be voided; nothing was appended"
                    ))
            }
            guard retained(position.enqueuedTime) else {
                return .refused(
                    WireError(
                        .notFound,
                        "value.ids: the event sent with id \"\(key.prefix(200))\" (enqueued \(position.enqueuedTime.iso8601)) is older than the window of ids (\(window)); it can no longer be voided; nothing was appended"
                    ))
            }
            let payload: [UInt8]
            if let inGroup = placed(position) {
                payload = inGroup
            } else {
                do {
                    guard let record = try log.storedPartitions[position.partition].record(at: position.sequence) else {
                        return .refused(
                            WireError(.internalError, "the record of id \"\(key.prefix(200))\" cannot be read; nothing was appended"))
                    }
                    payload = record.payload
                } catch {
                    return .refused(WireError(.internalError, "the record of id \"\(key.prefix(200))\" cannot be read (\(error)); retry"))
                }
            }
            guard let usageJSON = try? JSONParser.parse(payload), case .success(let usage) = Message.decode(usageJSON) else {
                return .refused(
                    WireError(.internalError, "the record of id \"\(key.prefix(200))\" does not read back; nothing was appended"))
            }
            guard case .usageReported = usage.body else {
                return .refused(
                    WireError(
                        .invalidEvent,
                        "value.ids: id \"\(key.prefix(200))\" names a \(usage.type.rawValue) (partition \(position.partition), sequence \(position.sequence)), not usage; only UsageReported events can be voided; nothing was appended"
                    ))
            }
            var one = value
            one["ids"] = .array([.string(key)])
            one["voided"] = [
                "sequence": .number(String(position.sequence)), "enqueuedTime": .string(position.enqueuedTime.iso8601),
                "event": usageJSON,
            ]
            var record = envelope
            record["value"] = .object(one)
            records.append(
                VoidRecord(
                    partition: position.partition, meta: RecordMeta(payloadDigest: digest, keyDigest: Self.voidKeyDigest(key)),
                    payload: CanonicalJSON.bytes(.object(record))))
        }
        return .records(records)
    }
}
