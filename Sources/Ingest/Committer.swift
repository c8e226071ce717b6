import Daemon
import EventStore
import Foundation
import Metrics
import Synchronization
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The result of one event of an `append`.
enum AppendResult: Sendable {
    case accepted(IdempotencyIndex.Position)
    case duplicate(IdempotencyIndex.Position)
    /// The key was first used with a different message, at this position; nothing was appended.
    case conflict(IdempotencyIndex.Position, key: String)
    case rejected(WireError)

    /// The `append` response, written directly as bytes (a batch has thousands of results).
    static func response(id: JSONValue?, _ results: [AppendResult?]) -> [UInt8] {
        response(id: id, count: results.count) { results[$0] }
    }

    /// The reply when every event of the append reached the committer.
    static func response(id: JSONValue?, _ results: [AppendResult]) -> [UInt8] {
        response(id: id, count: results.count) { results[$0] }
    }

    private static func response(id: JSONValue?, count: Int, _ result: (Int) -> AppendResult?) -> [UInt8] {
        var out = Response.beginOK(id: id, arrayMember: "results", capacity: 64 + count * 100)
        // A commit group's records share their time: it is written once, then copied.
        var times = TimeTexts()
        for index in 0..<count {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            switch result(index) {
            case .accepted(let position)?: position.appendJSON(status: "accepted", times: &times, to: &out)
            case .duplicate(let position)?: position.appendJSON(status: "duplicate", times: &times, to: &out)
            case .conflict(let position, let key)?:
                position.appendJSON(status: "conflict", times: &times, error: Self.conflictError(key: key, position), to: &out)
            case .rejected(let error)?: JSONWriter.write(["status": "rejected", "error": error.json], to: &out)
            case nil: JSONWriter.write(["status": "rejected", "error": WireError(.internalError, "no result").json], to: &out)
            }
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }

    /// Why a reused key was refused: where its first message is, and what to do.
    static func conflictError(key: String, _ original: IdempotencyIndex.Position) -> WireError {
        WireError(
            .conflict,
            "id \"\(key.prefix(200))\" was first used for a different message (partition \(original.partition), sequence \(original.sequence), enqueued \(original.enqueuedTime.iso8601)); nothing was appended. A retry must resend the same message; a new message needs a new id"
        )
    }
}

/// The single writer of the log, with group commit: it takes every job waiting, writes their
/// records, makes them durable with one fdatasync whatever the partitions, and only then answers them.
/// While it syncs, new jobs queue up and form the next group (LevelDB's `BuildBatchGroup`).
///
/// No thread of its own: the thread that submits work to an idle committer commits it (and every
/// group queued meanwhile) itself, so one client's append is written, synced and answered on the
/// thread that read it, without waking another. Threads that submit while a commit is under way
/// only queue their work: the committing thread takes it as the next group and answers it.
final class Committer: @unchecked Sendable {
    /// How an append is answered: makes the reply from the events' results and returns what sends
    /// it. The committer may call it on another thread while the records are being synced, and
    /// for results it then throws away (a group decided again); only the send it returns waits
    /// for the records to be durable.
    typealias Answer = @Sendable ([AppendResult]) -> @Sendable () -> Void

    enum Work {
        /// An append's events and how they are answered.
        case events([ValidatedEvent], answer: Answer)
        case ticks(reason: String, completion: @Sendable ([IdempotencyIndex.Position]) -> Void)
    }

    let log: any RecordStore
    let clock: Clock
    /// Written into every tick, so the folds attribute usage as ingest checks it.
    let attribution: Attribution
    /// A condition, not a `Mutex`: `stop` waits here for the commits under way.
    private let condition = NSCondition()
    private var queue: [Work] = []
    private var running = true
    /// Whether a thread is committing: it takes every group queued before it lets go.
    private var committing = false
    private var router: PartitionRouter
    private var idempotency: IdempotencyIndex
    private var catalog: PlanCatalog
    /// Plan definitions other ingest instances committed to a shared store, not read yet.
    private var othersDefinitions: [(partition: Int, sequence: UInt64)] = []
    /// Lets one thread at a time take `othersDefinitions` into the catalog, so versions keep their order.
    private let adoption = Mutex(())
    private var retentionDays: Int { Int(idempotency.retentionMicroseconds / Timestamp.microsecondsPerDay) }
    private var groups = 0
    private var syncs = 0
    private var recordsWritten = 0
    /// The index's growths already counted in the metrics (those of recovery are not growths
    /// while appending).
    private var reportedGrowths: (count: Int, seconds: Double)

    /// Group-commit counters since start: groups committed, fdatasync calls, records written.
    var commitCounters: (groups: Int, syncs: Int, records: Int) { condition.withLock { (groups, syncs, recordsWritten) } }

    init(
        log: any RecordStore, clock: Clock, attribution: Attribution = .enqueued, router: PartitionRouter, idempotency: IdempotencyIndex,
        catalog: PlanCatalog = PlanCatalog()
    ) {
        self.log = log
        self.clock = clock
        self.attribution = attribution
        self.router = router
        self.idempotency = idempotency
        self.catalog = catalog
        reportedGrowths = (idempotency.growths, idempotency.growthSeconds)
        ingestMetrics.idempotencyKeys.set(idempotency.count)
        ingestMetrics.idempotencyTableBytes.set(idempotency.memoryBytes)
        log.observeOthers { [unowned self] partition, sequence, time, meta in learn(partition, sequence, time, meta) }
    }

    /// A record another ingest instance committed to the shared store: its key, route and plan
    /// definition count here too.
    private func learn(_ partition: Int, _ sequence: UInt64, _ time: Timestamp, _ meta: RecordMeta) {
        condition.withLock {
            if let resource = meta.purchasedResource { router.learnPurchase(resource) }
            if let digest = meta.keyDigest {
                idempotency.remember(
                    digest: digest,
                    at: IdempotencyIndex.Position(
                        partition: partition, sequence: sequence, enqueuedTime: time, payloadDigest: meta.payloadDigest))
            }
            // Its record is readable only once the store has applied the whole group: read later.
            if meta.definesPlan { othersDefinitions.append((partition, sequence)) }
        }
    }

    /// Takes the plans other ingest instances defined (noted by `learn`) into the catalog, in log
    /// order, as far as their records are readable; called before the catalog is used.
    private func adoptOthersDefinitions() {
        adoption.withLock { _ in
            let pending = condition.withLock { othersDefinitions }
            guard !pending.isEmpty else { return }
            var adopted = 0
            for (partition, sequence) in pending {
                let record: LogRecord?
                do {
                    let partitions = log.storedPartitions
                    record = partitions.indices.contains(partition) ? try partitions[partition].record(at: sequence) : nil
                } catch {
                    Log.error("a plan definition another ingest committed cannot be read yet: \(error)")
                    break
                }
                guard let record else { break }
                let failure = condition.withLock { () -> (any Error)? in
                    do {
                        try catalog.learn(definition: record)
                        return nil
                    } catch {
                        return error
                    }
                }
                if let failure { Log.error("a plan definition another ingest committed is unusable: \(failure)") }
                adopted += 1
            }
            condition.withLock { othersDefinitions.removeFirst(adopted) }
        }
    }

    /// How many plans the catalog holds (for status).
    var catalogCount: Int {
        adoptOthersDefinitions()
        return condition.withLock { catalog.count }
    }

    /// The plan catalog's entries as the `plans` operation answers them (one plan with `planId`).
    func catalogJSON(only planId: String? = nil) -> [JSONValue] {
        adoptOthersDefinitions()
        return condition.withLock { catalog.json(only: planId) }
    }

    /// Idempotency keys remembered (for status).
    var idempotencyKeyCount: Int { condition.withLock { idempotency.count } }
    var idempotencyTableBytes: Int { condition.withLock { idempotency.memoryBytes } }

    /// Queues work and, when no commit is under way, commits it (and whatever queues meanwhile)
    /// on this thread before returning, or with `commitsHere` false on a Dispatch worker (for a
    /// thread that must not wait for the disk); its completion runs once the records are durable,
    /// on the thread that commits them.
    func submit(_ work: Work, commitsHere: Bool = true) {
        condition.lock()
        guard running else {
            condition.unlock()
            switch work {
            case .events(let events, let answer):
                answer(events.map { _ in .rejected(WireError(.unavailable, "meter-ingest is shutting down; retry")) })()
            case .ticks(_, let completion):
                completion([])
            }
            return
        }
        queue.append(work)
        guard !committing else {
            condition.unlock()
            return
        }
        committing = true
        guard commitsHere else {
            condition.unlock()
            DispatchQueue.global().async { [self] in
                condition.lock()
                commitQueued()
            }
            return
        }
        commitQueued()
    }

    /// Commits the queue, group by group, until it is empty. Called by the committing thread with
    /// `condition` locked; returns with it unlocked.
    private func commitQueued() {
        while !queue.isEmpty {
            let group = queue
            queue.removeAll()
            condition.unlock()
            commit(group)
            condition.lock()
        }
        committing = false
        condition.broadcast()
        condition.unlock()
    }

    /// Refuses new work and waits for the commit under way (which takes every group queued).
    func stop() {
        condition.lock()
        running = false
        while committing { condition.wait() }
        condition.unlock()
    }

    /// What one attempt at a group came to: answered, or decide the group again (another writer
    /// of a shared store appended first).
    private enum Attempt {
        case done
        case again
    }

    private func commit(_ group: [Work]) {
        while true {
            adoptOthersDefinitions()
            switch log.exclusive({ attempt(group) }) {
            case .done: return
            case .again: continue
            }
        }
    }

    /// From how many events a group's replies are made on another thread while its records are
    /// written and synced, instead of after: below it, waking a thread costs more than it saves.
    static let repliesAheadFromEvents = 256

    private func attempt(_ group: [Work]) -> Attempt {
        let began = MonotonicClock.now()
        let partitions = log.storedPartitions
        let now = clock.now
        var records: [EventLog.Pending] = []
        var placedCount = [UInt64](repeating: 0, count: partitions.count)
        var times = [Timestamp?](repeating: nil, count: partitions.count)
        // What this group adds to the indexes, applied once it is durable: a group that fails to
        // be written must leave no key and no route behind.
        var newKeys = GroupKeys()
        var newRoutes = PartitionRouter(partitionCount: partitions.count)
        var newDefinitions: [String: PlanCatalog.Entry] = [:]
        func time(for partition: Int) -> Timestamp {
            if let time = times[partition] { return time }
            let time = max(now, partitions[partition].lastTime ?? now)
            times[partition] = time
            return time
        }
        func place(_ partition: Int, meta: consuming RecordMeta, payload: [UInt8], keyInPayload: Range<Int>? = nil)
            -> IdempotencyIndex.Position
        {
            let enqueued = time(for: partition)
            let sequence = partitions[partition].nextSequence + placedCount[partition]
            placedCount[partition] += 1
            let position = IdempotencyIndex.Position(
                partition: partition, sequence: sequence, enqueuedTime: enqueued, payloadDigest: meta.payloadDigest)
            records.append(EventLog.Pending(partition: partition, time: enqueued, meta: meta, payload: payload, keyInPayload: keyInPayload))
            return position
        }

        /// A `UsageVoided` checked and placed (one record per key), or the answer why not.
        func placeVoid(_ event: borrowing ValidatedEvent) -> AppendResult {
            let plan = planVoid(
                event, lookup: { newKeys[$0] ?? idempotency.lookup(digest: $0) },
                placed: { position in
                    // A record of this group: the n-th placed in its partition.
                    let offset = position.sequence &- partitions[position.partition].nextSequence
                    guard position.sequence >= partitions[position.partition].nextSequence else { return nil }
                    var seen: UInt64 = 0
                    for record in records where record.partition == position.partition {
                        if seen == offset { return record.payload }
                        seen += 1
                    }
                    return nil
                }, retained: { idempotency.isRetained($0, now: now) }, retentionDays: retentionDays)
            switch plan {
            case .refused(let error): return .rejected(error)
            case .duplicate(let original): return .duplicate(original)
            case .records(let voids):
                var first: IdempotencyIndex.Position?
                for void in voids {
                    let position = place(void.partition, meta: void.meta, payload: void.payload)
                    if let digest = void.meta.keyDigest { newKeys.set(digest, position) }
                    if first == nil { first = position }
                }
                return first.map { .accepted($0) } ?? .rejected(WireError(.invalidEvent, "UsageVoided names no usage"))
            }
        }

        /// A `PlanDefined` numbered and placed in the catalog's partition; the same plan as the
        /// newest version is answered as a duplicate of it.
        func placeDefinition(_ event: borrowing ValidatedEvent, planId: String) -> AppendResult {
            guard event.payload.count <= PlanCatalog.maximumDefinitionBytes else {
                return .rejected(
                    WireError(.invalidEvent, "value.plan: a catalog plan takes at most \(PlanCatalog.maximumDefinitionBytes) bytes"))
            }
            guard let plan = PlanCatalog.plan(ofDefinition: event.payload) else {
                return .rejected(WireError(.invalidEvent, "value.plan: unreadable"))
            }
            let newest = newDefinitions[planId] ?? catalog[planId]
            if let newest, newest.plan == plan { return .duplicate(newest.position) }
            if newest == nil && catalog.count + newDefinitions.count >= PlanDefined.maximumPlans {
                return .rejected(
                    WireError(
                        .invalidEvent,
                        "value.plan.planId: the plan catalog holds \(PlanDefined.maximumPlans) plans, its most; a new plan id is refused (a new version of a plan is still taken)"
                    ))
            }
            let version = (newest?.version ?? 0) + 1
            guard let payload = PlanCatalog.numbered(event.payload, version: version) else {
                return .rejected(WireError(.invalidEvent, "value: unreadable"))
            }
            let meta = RecordMeta(
                idempotencyKey: event.idempotencyKey, payloadDigest: event.idempotencyKey == nil ? nil : event.payloadDigest,
                keyDigest: event.idempotencyKey == nil ? nil : event.keyDigest, definesPlan: true)
            let position = place(PlanCatalog.partition, meta: meta, payload: payload)
            if let digest = meta.keyDigest { newKeys.set(digest, position) }
            newDefinitions[planId] = PlanCatalog.Entry(version: version, plan: plan, position: position)
            return .accepted(position)
        }

        // The group's answers in its order: an append's by its place in `decided`, a tick's whole.
        var answers: [GroupAnswer] = []
        var decided: [(answer: Answer, results: [AppendResult])] = []
        var duplicates = 0
        var conflicts = 0
        /// What an event of an append comes to: placed, a duplicate, a conflict, or refused. Read
        /// in place through the buffer: an event passed by value was copied for the call (the
        /// compiler cannot see that nothing writes the buffer meanwhile), its strings retained.
        func decide(_ events: UnsafeBufferPointer<ValidatedEvent>, _ index: Int) -> AppendResult {
            if events[index].type == .usageVoided {
                return placeVoid(events[index])
            }
            let hasKey = events[index].hasIdempotencyKey
            if hasKey, let digest = events[index].keyDigest, let original = newKeys[digest] ?? idempotency.lookup(digest: digest) {
                if IdempotencyIndex.samePayload(original.payloadDigest, events[index].payloadDigest) {
                    duplicates += 1
                    return .duplicate(original)
                }
                conflicts += 1
                return .conflict(original, key: events[index].idempotencyKey ?? "")
            }
            // Only the payload may change (a catalog plan written out whole): no copy of the event.
            var payload = events[index].payload
            // The key stays in the payload when it is kept there and the payload is stored as read.
            var keyInPayload = events[index].keyInPayload
            if let planId = events[index].catalogPlanId {
                if events[index].type == .planDefined {
                    return placeDefinition(events[index], planId: planId)
                }
                // A purchase or plan change naming a catalog plan: stored with the plan whole,
                // as defined before it in the log. Its key's digest stays that of the message
                // as sent, so a resend is still a duplicate after the plan got a new version.
                guard let entry = newDefinitions[planId] ?? catalog[planId],
                    let expanded = PlanCatalog.expanded(events[index].payload, type: events[index].type, with: entry)
                else {
                    return .rejected(PlanCatalog.unknown(planId, type: events[index].type))
                }
                payload = expanded
                keyInPayload = nil
            }
            let partition: Int
            if var addressed = events[index].addressedPartition {
                if events[index].type == .ping && addressed >= partitions.count {
                    // A tick from a deployment with more partitions (the reference's samples
                    // name partition 7): it only moves time, so any partition may carry it.
                    addressed %= partitions.count
                }
                guard addressed < partitions.count else {
                    return .rejected(
                        WireError(
                            .invalidEvent,
                            "value.partitionId: partition \(addressed) does not exist; the log has \(partitions.count) (0 to \(partitions.count - 1))"
                        ))
                }
                partition = addressed
            } else {
                if events[index].isPurchase, let resource = events[index].resource { newRoutes.learnPurchase(resource) }
                // Only a `resourceUri` may route elsewhere than the hash: no names made for others.
                partition = router.partition(
                    for: events[index].namesResourceUri ? events[index].resource : nil, routeHash: events[index].routeHash,
                    pending: newRoutes)
            }
            if case .event = attribution, let eventTime = events[index].eventTime,
                eventTime.microseconds > time(for: partition).microseconds + Attribution.maximumClockSkew
            {
                let enqueued = time(for: partition)
                return .rejected(
                    WireError(
                        .invalidEvent,
                        "value.timestamp: \(eventTime.iso8601) is \((eventTime.microseconds - enqueued.microseconds) / 1_000_000) s ahead of ingest's clock (\(enqueued.iso8601)); usage is attributed by its timestamp here, which may be at most \(Attribution.maximumClockSkew / 1_000_000) s ahead: check the sender's clock"
                    ))
            }
            let keyDigest = hasKey ? events[index].keyDigest : nil
            // The meta goes into the record with its last use: not copied (its strings retained).
            let position = place(
                partition,
                meta: RecordMeta(
                    idempotencyKey: hasKey && keyInPayload == nil ? events[index].idempotencyKey : nil,
                    purchasedResource: events[index].isPurchase ? events[index].resource : nil,
                    payloadDigest: hasKey ? events[index].payloadDigest : nil, keyDigest: keyDigest),
                payload: payload, keyInPayload: keyInPayload)
            if let keyDigest { newKeys.set(keyDigest, position) }
            return .accepted(position)
        }

        condition.lock()
        // The table is far larger than the caches: ask for every key's slot first, so the
        // lookups below find them there instead of waiting for memory one after another.
        var keyed = 0
        for work in group {
            guard case .events(let events, _) = work else { continue }
            // In place: `for event in events` copied each event (its strings and payload retained).
            events.withUnsafeBufferPointer { events in
                for index in events.indices {
                    guard let digest = events[index].keyDigest else { continue }
                    idempotency.prefetch(digest: digest)
                    keyed += 1
                }
            }
        }
        newKeys = GroupKeys(capacity: keyed)
        records.reserveCapacity(
            group.reduce(0) { count, work in
                if case .events(let events, _) = work { return count + events.count }
                return count + partitions.count
            })
        for work in group {
            switch work {
            case .events(let events, let answer):
                var results: [AppendResult] = []
                results.reserveCapacity(events.count)
                // Through a buffer: `for event in events`, or `events[index]`, copied each event (a
                // retain and a release of each of its strings and of its payload) only to read it.
                events.withUnsafeBufferPointer { events in
                    for index in events.indices { results.append(decide(events, index)) }
                }
                answers.append(.append(decided.count))
                decided.append((answer, results))
            case .ticks(let reason, let completion):
                var positions: [IdempotencyIndex.Position] = []
                for partition in partitions.indices {
                    let enqueued = time(for: partition)
                    let payload = JSONWriter.bytes(
                        Self.tick(partition: partition, time: enqueued, reason: reason, attribution: attribution))
                    positions.append(place(partition, meta: RecordMeta(), payload: payload))
                }
                let placed = positions
                answers.append(.tick { completion(placed) })
            }
        }
        condition.unlock()
        if duplicates > 0 { ingestMetrics.duplicates.add(duplicates) }
        if conflicts > 0 { ingestMetrics.refusals.labels("conflict").add(conflicts) }

        // A large group's replies are made on another thread while its records are encoded,
        // written and synced (the sync leaves a core idle); a small one's after, on this thread.
        let replies = decided.reduce(0, { $0 + $1.results.count }) >= Self.repliesAheadFromEvents ? RepliesAhead(decided) : nil
        let started = MonotonicClock.now()
        do {
            try log.commitRecords(records)
        } catch {
            _ = replies?.sends()  // waited for and dropped: the group was not written
            switch error {
            case .notWritten(let message):
                // Nothing reached the log (a new segment could not be made, say, out of descriptors):
                // refuse this group and go on; clients retry with their idempotency keys.
                Log.error("\(message); refusing this group of appends (nothing was written) and going on")
                refuse(group, WireError(.unavailable, "the log could not take these appends now (\(message)); nothing was appended; retry"))
                return .done
            case .superseded(let message):
                // The store has read what the other writer appended (keys and routes included):
                // the same group, decided again, sees it.
                Log.debug("\(message); deciding the group again")
                return .again
            case .unknown:
                // The disk refused a write or a sync: what is on disk is unknown, so nothing may be
                // acknowledged. Stop; on restart, recovery cuts any torn tail and clients retry
                // (their idempotency keys make the retry safe).
                Log.error("\(error); nothing of this group was acknowledged; stopping so recovery can run")
                refuse(group, WireError(.unavailable, "the log could not be made durable; retry"))
                exit(75)
            }
        }
        let stored = MonotonicClock.now()
        // Answered before the keys are remembered: no group is decided before they are (this
        // thread decides the next), and the client has its answer a little sooner.
        let sends = replies?.sends() ?? decided.map { $0.answer($0.results) }
        for answer in answers {
            switch answer {
            case .append(let index): sends[index]()
            case .tick(let completion): completion()
            }
        }
        let answered = MonotonicClock.now()
        if !records.isEmpty {
            ingestMetrics.syncSeconds.observe(stored - started)
            ingestMetrics.groupRecords.observe(Double(records.count))
            ingestMetrics.records.add(records.count)
            ingestMetrics.bytes.add(records.reduce(0) { $0 + $1.payload.count })
        }
        condition.withLock {
            idempotency.remember(newKeys.entries)
            // A process taking the index's file over after a crash remembers only the keys after these.
            if idempotency.isKeptInFile && !records.isEmpty { idempotency.cover(log.storedPartitions.map(\.nextSequence)) }
            router.adopt(newRoutes)
            for (planId, entry) in newDefinitions { catalog.adopt(planId, entry) }
            groups += 1
            syncs += records.isEmpty ? 0 : 1
            recordsWritten += records.count
            if let newest = times.compactMap({ $0 }).max() { idempotency.expire(now: newest) }
            reportIndexLocked()
        }
        ingestMetrics.addStep(.decide, started - began)
        ingestMetrics.addStep(.store, stored - started)
        ingestMetrics.addStep(.answer, answered - stored)
        ingestMetrics.addStep(.index, MonotonicClock.now() - answered)
        return .done
    }

    /// The idempotency index's figures to the metrics, and its growths since the last report
    /// counted and, from 4 MiB on, logged: appends waited for them (condition held; once per
    /// commit group).
    private func reportIndexLocked() {
        ingestMetrics.idempotencyKeys.set(idempotency.count)
        ingestMetrics.idempotencyTableBytes.set(idempotency.memoryBytes)
        guard idempotency.growths > reportedGrowths.count else { return }
        let growths = idempotency.growths - reportedGrowths.count
        let seconds = idempotency.growthSeconds - reportedGrowths.seconds
        ingestMetrics.tableGrowths.add(growths)
        ingestMetrics.tableGrowthSeconds.add(seconds)
        reportedGrowths = (idempotency.growths, idempotency.growthSeconds)
        let bytes = idempotency.memoryBytes
        guard bytes >= 4 << 20 else { return }
        Log.info(
            "the idempotency table grew\(growths > 1 ? " \(growths) times" : "") to \(bytes / IdempotencyIndex.slotBytes) slots (\(bytes >> 20) MiB) for \(idempotency.count) keys in \(Int(seconds * 1000)) ms, appends waiting; \(IngestConfiguration.expectedKeysHint)"
        )
    }

    /// Answers every job of `group` with `error` (ticks with no position).
    private func refuse(_ group: [Work], _ error: WireError) {
        for work in group {
            switch work {
            case .events(let events, let answer):
                ingestMetrics.refusals.labels(error.code.rawValue).add(events.count)
                answer(events.map { _ in .rejected(error) })()
            case .ticks(_, let completion): completion([])
            }
        }
    }

    /// A tick record: the reference's `Ping` message, with the attribution ingest runs with.
    static func tick(partition: Int, time: Timestamp, reason: String, attribution: Attribution) -> JSONValue {
        Message(body: .ping(Ping(partition: partition, localTime: time, reason: reason, attribution: attribution, sender: "meter-ingest")))
            .json
    }
}

/// One answer of a commit group: an append's (its index among the group's appends) or a tick's.
private enum GroupAnswer {
    case append(Int)
    case tick(@Sendable () -> Void)
}

/// A commit group's replies, made on a Dispatch worker from its creation, while the group's records
/// are written and synced; `sends` waits for them.
private final class RepliesAhead: Sendable {
    private let made = Mutex<[@Sendable () -> Void]>([])
    private let making = DispatchGroup()

    init(_ decided: [(answer: Committer.Answer, results: [AppendResult])]) {
        DispatchQueue.global().async(group: making) { [self] in
            let sends = decided.map { $0.answer($0.results) }
            made.withLock { $0 = sends }
        }
    }

    /// The sends, in the order given, once every reply is made.
    func sends() -> [@Sendable () -> Void] {
        making.wait()
        return made.withLock { $0 }
    }
}

/// The ISO 8601 text of the last few times written, so a time repeated across results (all of
/// one commit group's records share theirs) is formatted once.
struct TimeTexts {
    private var entries: [(time: Timestamp, text: [UInt8])] = []

    mutating func text(_ time: Timestamp) -> [UInt8] {
        for entry in entries where entry.time == time { return entry.text }
        var text: [UInt8] = []
        text.reserveCapacity(27)
        time.appendISO8601(to: &text)
        if entries.count == 8 { entries.removeFirst() }
        entries.append((time, text))
        return text
    }
}

extension IdempotencyIndex.Position {
    /// `{"status":…,"partition":p,"sequence":n,"enqueuedTime":"…"}`, with `"error"` when given.
    func appendJSON(status: String, times: inout TimeTexts, error: WireError? = nil, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"status":""#.utf8)
        out.append(contentsOf: status.utf8)
        out.append(contentsOf: #"","partition":"#.utf8)
        JSONWriter.writeInteger(partition, to: &out)
        out.append(contentsOf: #","sequence":"#.utf8)
        JSONWriter.writeInteger(sequence, to: &out)
        out.append(contentsOf: #","enqueuedTime":""#.utf8)
        out.append(contentsOf: times.text(enqueuedTime))
        out.append(UInt8(ascii: "\""))
        if let error {
            out.append(contentsOf: #","error":"#.utf8)
            JSONWriter.write(error.json, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }
}
