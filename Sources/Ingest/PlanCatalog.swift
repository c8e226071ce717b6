import EventStore
import Wire

/// The plan catalog as ingest keeps it: the newest version of every plan id, made from the log's
/// `PlanDefined` records (docs/BILLING.md, "The plan catalog"). The log stays the only source:
/// this is rebuilt from it on every start, from the records the segment summaries point at.
///
/// Pure: the committer owns one and changes it only under its lock, in log order, so a purchase
/// that names a plan gets the version defined before it in the log, never one defined after.
struct PlanCatalog: Sendable {
    /// The partition that holds the catalog's records: every log has it, whatever its size.
    static let partition = 0
    /// The largest plan definition taken, in bytes of its stored message: the catalog is held in
    /// memory, so its size must be bounded (10,000 plans of at most 64 KiB).
    static let maximumDefinitionBytes = 64 << 10

    /// One plan's newest version.
    struct Entry: Sendable, Equatable {
        var version: Int
        /// The plan object as stored (canonical JSON: `planId`, `billingDimensions`, `prices`...).
        var plan: JSONValue
        /// Where its definition is in the log.
        var position: IdempotencyIndex.Position
    }

    private(set) var entries: [String: Entry] = [:]

    var count: Int { entries.count }

    subscript(planId: String) -> Entry? { entries[planId] }

    /// Makes `entry` the newest version of `planId`.
    mutating func adopt(_ planId: String, _ entry: Entry) { entries[planId] = entry }

    /// The catalog of `log`, from its `PlanDefined` records at `definitions` (as the segment
    /// summaries list them): each record's plan becomes its id's newest version, in log order.
    static func recovered(from log: any RecordStore, definitions: [(partition: Int, sequence: UInt64)]) throws -> PlanCatalog {
        var catalog = PlanCatalog()
        for (partition, sequence) in definitions.sorted(by: { ($0.partition, $0.sequence) < ($1.partition, $1.sequence) }) {
            try catalog.learn(definitionAt: partition, sequence, in: log)
        }
        return catalog
    }

    /// Takes the plan defined by the record at `partition`, `sequence` of `log` as its id's newest
    /// version (at start, from the records the segment summaries list).
    mutating func learn(definitionAt partition: Int, _ sequence: UInt64, in log: any RecordStore) throws {
        let partitions = log.storedPartitions
        guard partitions.indices.contains(partition), let record = try partitions[partition].record(at: sequence) else {
            throw EventLogError("partition \(partition) has no record \(sequence), which the log lists as a plan definition")
        }
        try learn(definition: record)
    }

    /// Takes the plan `record` defines as its id's newest version.
    mutating func learn(definition record: LogRecord) throws {
        let json = try JSONParser.parse(record.payload)
        guard case .success(let message) = Message.decode(json), case .planDefined(let definition) = message.body,
            let plan = json["value"]?["plan"]
        else {
            throw EventLogError("partition \(record.partition), record \(record.sequence) is listed as a plan definition but is none")
        }
        let version = definition.version ?? (self[definition.plan.planId]?.version ?? 0) + 1
        let position = IdempotencyIndex.Position(
            partition: record.partition, sequence: record.sequence, enqueuedTime: record.enqueuedTime,
            payloadDigest: record.meta.payloadDigest)
        adopt(definition.plan.planId, Entry(version: version, plan: plan, position: position))
    }

    /// The plan object of a definition's canonical payload (`{"type":"PlanDefined","value":{"plan":…}}`).
    static func plan(ofDefinition payload: [UInt8]) -> JSONValue? {
        guard let json = try? JSONParser.parse(payload) else { return nil }
        return json["value"]?["plan"]
    }

    /// A definition's payload with the version ingest gave it (a client's `version` is replaced).
    static func numbered(_ payload: [UInt8], version: Int) -> [UInt8]? {
        guard case .object(var envelope)? = try? JSONParser.parse(payload), case .object(var value)? = envelope["value"] else {
            return nil
        }
        value["version"] = .number(String(version))
        envelope["value"] = .object(value)
        return CanonicalJSON.bytes(.object(envelope))
    }

    /// A purchase's or plan change's payload with its plan reference replaced by the catalog's plan
    /// (and the version it is, `catalogVersion`): what followers read is the whole plan, in the
    /// reference's format.
    static func expanded(_ payload: [UInt8], type: MessageType, with entry: Entry) -> [UInt8]? {
        guard case .object(var envelope)? = try? JSONParser.parse(payload), case .object(var value)? = envelope["value"],
            case .object(var plan) = entry.plan
        else { return nil }
        plan["catalogVersion"] = .number(String(entry.version))
        switch type {
        case .subscriptionPurchased:
            guard case .object(var subscription)? = value["subscription"] else { return nil }
            subscription["plan"] = .object(plan)
            value["subscription"] = .object(subscription)
        case .planChanged:
            value["plan"] = .object(plan)
        default:
            return nil
        }
        envelope["value"] = .object(value)
        return CanonicalJSON.bytes(.object(envelope))
    }

    /// Why a message naming `planId` was refused: the catalog has no such plan.
    static func unknown(_ planId: String, type: MessageType) -> WireError {
        let path = type == .subscriptionPurchased ? "value.subscription.plan.planId" : "value.plan.planId"
        return WireError(
            .invalidEvent,
            "\(path): no plan \"\(planId.prefix(200))\" in the plan catalog; define it first (meterctl plans add, a PlanDefined message), or give the whole plan with its billingDimensions"
        )
    }

    /// The catalog's entries as the `plans` operation answers them, by plan id.
    func json(only planId: String? = nil) -> [JSONValue] {
        entries.filter { planId == nil || $0.key == planId }.sorted { $0.key < $1.key }.map { id, entry in
            .object(
                JSONObject([
                    .init("planId", .string(id)), .init("version", .number(String(entry.version))),
                    .init("definedAt", .string(entry.position.enqueuedTime.iso8601)),
                    .init("partition", .number(String(entry.position.partition))),
                    .init("sequence", .number(String(entry.position.sequence))), .init("plan", entry.plan),
                ]))
        }
    }
}
