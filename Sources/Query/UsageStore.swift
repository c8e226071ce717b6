import Daemon
import Foundation
import QueryModel
import Synchronization
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The closed-hour usage records of every partition under one sequence of ids that follows from
/// the log alone, so that every replica of the query service gives every record the same id and a
/// billing adapter can move between replicas without a gap or a repeat (docs/PROTOCOL.md §12).
///
/// A partition closes the hours before `T` (a whole hour) when it folds its first record at or
/// after `T`; the records closed then form a group `(T, partition)` of consecutive ordinals. The
/// id of a record is its rank in the order `(T, partition, ordinal)`: the number of records of
/// any partition that come before it. A group gets its ids only once every partition has folded
/// (and journaled) its records up to `T` — the *horizon*, the lowest of the partitions' clocks —
/// because only then is nothing left that could sort before it. Partitions that run at different
/// speeds (a replica catching up, a slow disk) therefore only hold back when records appear, never
/// what ids they get; ingest's hourly ticks move every partition's clock, so an hour's records are
/// numbered moments after it ends.
///
/// Records stay readable for `retentionDays` of log time after their hour closed. The cutoff moves
/// by whole UTC days and is written down before any file is deleted, so an id below it is refused
/// with `expired` (naming the first id still readable), never skipped over in silence.
final class UsageStore: Sendable {
    let journals: [PartitionUsageJournal]
    let retentionDays: Int
    private let expiryPath: String
    private let state: Mutex<State>

    private struct State {
        /// Numbered groups still readable, in id order.
        var served: [Group] = []
        /// Per partition, groups not numbered yet, oldest first (`heads[p]` is the first one left).
        var waiting: [[Group]]
        var heads: [Int]
        /// Per partition, the log time up to which its records are all journaled; nil until known.
        var clocks: [Timestamp?]
        var firstReadable = 0
        var nextId = 0
        /// Unix seconds (a midnight UTC): records closed before it have aged out.
        var expiredBefore: Int64?

        /// The lowest partition clock: every record closed up to it is journaled.
        var horizon: Timestamp? {
            var lowest: Timestamp?
            for clock in clocks {
                guard let clock else { return nil }
                lowest = min(lowest ?? clock, clock)
            }
            return lowest
        }
    }

    /// A run of consecutive records of one partition closed at the same hour boundary.
    struct Group: Equatable {
        var closed: Int64
        var partition: Int
        var firstOrdinal: UInt64
        var count: Int
        /// The id of its first record, once numbered.
        var start = -1
    }

    /// Why a page cannot be served.
    enum PageError: Error {
        /// The ids below `firstId` aged out: they closed before `before`.
        case expired(firstId: Int, before: Timestamp?)
        case failed(String)
    }

    /// Opens the journals of `partitions` partitions under `directory` (`pNNN/` each, and
    /// `expired.json`, the cutoff) and counts what they hold. The ids are known again as soon as
    /// every partition's clock is (`journaled(partition:…)`).
    init(directory: String, partitions: Int, retentionDays: Int) throws(Journal.Failure) {
        self.retentionDays = retentionDays
        expiryPath = directory + "/expired.json"
        var state = State(
            waiting: Array(repeating: [], count: partitions), heads: Array(repeating: 0, count: partitions),
            clocks: Array(repeating: nil, count: partitions))
        if let data = FileManager.default.contents(atPath: expiryPath) {
            guard let text = (try? JSONParser.parse(Array(data)))?["before"]?.stringValue, let time = Timestamp(iso8601: text) else {
                throw Journal.Failure(description: "\(expiryPath) is damaged; move the query's data aside to rebuild it")
            }
            state.expiredBefore = time.microseconds / 1_000_000
        }
        // Opening reads every line of every journal: the partitions are read in parallel.
        struct Opened {
            var journal: PartitionUsageJournal
            var groups: [Group]
            var expired: Int
        }
        let cutoff = state.expiredBefore
        let expiryPath = expiryPath
        let results = Mutex([Result<Opened, Journal.Failure>?](repeating: nil, count: partitions))
        DispatchQueue.concurrentPerform(iterations: partitions) { partition in
            let digits = String(partition)
            let path = directory + "/p" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
            var groups: [Group] = []
            var expired = 0
            let result: Result<Opened, Journal.Failure>
            do throws(Journal.Failure) {
                let journal = try PartitionUsageJournal(directory: path, partition: partition) { ordinal, closed in
                    if let cutoff, closed < cutoff {
                        expired += 1
                    } else {
                        Self.add(ordinal: ordinal, closed: closed, partition: partition, to: &groups)
                    }
                }
                if journal.firstOrdinal > 0 && cutoff == nil {
                    throw Journal.Failure(
                        description:
                            "\(path) starts at record \(journal.firstOrdinal), but no usage has aged out (\(expiryPath) is missing); move the query's data aside to rebuild it (meterctl rebuild query)"
                    )
                }
                result = .success(Opened(journal: journal, groups: groups, expired: expired + Int(journal.firstOrdinal)))
            } catch {
                result = .failure(error)
            }
            results.withLock { $0[partition] = result }
        }
        var expired = 0
        var opened: [PartitionUsageJournal] = []
        for case let result? in results.withLock({ $0 }) {
            // The first failing partition in order is the one reported, as when they were read one by one.
            let partition: Opened
            switch result {
            case .success(let value): partition = value
            case .failure(let error): throw error
            }
            expired += partition.expired
            state.waiting[opened.count] = partition.groups
            opened.append(partition.journal)
        }
        journals = opened
        state.firstReadable = expired
        state.nextId = expired
        self.state = Mutex(state)
    }

    /// Adds a record to a partition's groups not numbered yet (from `head` on).
    private static func add(ordinal: UInt64, closed: Int64, partition: Int, to groups: inout [Group], head: Int = 0) {
        if groups.count > head, let last = groups.last, last.closed == closed, last.firstOrdinal + UInt64(last.count) == ordinal {
            groups[groups.count - 1].count += 1
        } else {
            groups.append(Group(closed: closed, partition: partition, firstOrdinal: ordinal, count: 1))
        }
    }

    /// Journals usage record `record` of `partition`, closed at `closed` (a whole hour), its line
    /// written straight from it (no JSON tree, the compact form), unless the journal has its ordinal already; false
    /// then. It is numbered once it is synced and reported with `journaled(partition:records:clock:)`.
    func append(partition: Int, closed: Timestamp, record: UsageRecord) -> Bool {
        journals[partition].append(ordinal: record.ordinal, closed: closed.microseconds / 1_000_000) {
            record.appendCompactFields(to: &$0)
        }
    }

    /// Tells that `partition`'s records `records` (ordinal and close time, in order) are durable
    /// and that all of its records closed up to `clock` are: numbers every group that no record
    /// still to come can precede, and lets the oldest records age out.
    func journaled(partition: Int, records: [(ordinal: UInt64, closed: Timestamp)], clock: Timestamp?) {
        state.withLock { state in
            for (ordinal, closed) in records {
                let seconds = closed.microseconds / 1_000_000
                if let cutoff = state.expiredBefore, seconds < cutoff {
                    // Cannot happen: the cutoff trails every partition's clock by the retention.
                    Log.error(
                        "partition \(partition): usage record \(ordinal) closed \(closed.iso8601), before the retention cutoff; not numbered"
                    )
                    continue
                }
                Self.add(
                    ordinal: ordinal, closed: seconds, partition: partition, to: &state.waiting[partition],
                    head: state.heads[partition])
            }
            if let clock, state.clocks[partition].map({ clock > $0 }) ?? true { state.clocks[partition] = clock }
            number(&state)
        }
    }

    /// Numbers the groups closed up to the horizon, in `(T, partition)` order (lock held).
    private func number(_ state: inout State) {
        guard let horizon = state.horizon else { return }
        let limit = horizon.microseconds / 1_000_000
        var ready: [Group] = []
        for partition in state.waiting.indices {
            var head = state.heads[partition]
            while head < state.waiting[partition].count, state.waiting[partition][head].closed <= limit {
                ready.append(state.waiting[partition][head])
                head += 1
            }
            if head > 256 && head * 2 > state.waiting[partition].count {
                state.waiting[partition].removeFirst(head)
                head = 0
            }
            state.heads[partition] = head
        }
        ready.sort { ($0.closed, $0.partition) < ($1.closed, $1.partition) }
        for var group in ready {
            group.start = state.nextId
            state.nextId += group.count
            state.served.append(group)
        }
        expire(&state, horizon: limit)
    }

    /// Moves the cutoff to the midnight `retentionDays` before the horizon, writes it down, forgets
    /// the groups before it and deletes the segments wholly before it (lock held).
    private func expire(_ state: inout State, horizon: Int64) {
        let day: Int64 = 86_400
        let target = horizon - Int64(retentionDays) * day
        let cutoff = target >= 0 ? target / day * day : (target - day + 1) / day * day
        guard cutoff > state.expiredBefore ?? Int64.min else { return }
        let text = Timestamp(microseconds: cutoff * 1_000_000).iso8601
        do {
            try FileIO.writeAtomically(JSONWriter.bytes(["before": .string(text)]) + [0x0A], to: expiryPath)
        } catch {
            // Nothing is deleted until the cutoff is durable; the next numbering tries again.
            Log.error("cannot write the usage retention cutoff to \(expiryPath): \(error); keeping every record for now")
            return
        }
        state.expiredBefore = cutoff
        let kept = state.served.firstIndex { $0.closed >= cutoff } ?? state.served.count
        if kept > 0 {
            state.firstReadable = kept < state.served.count ? state.served[kept].start : state.nextId
            state.served.removeFirst(kept)
        }
        var removed = 0
        for journal in journals { removed += journal.removeSegments(closedBefore: cutoff) }
        Log.info(
            "usage records closed before \(text) aged out (kept \(retentionDays) days); first readable id \(state.firstReadable)\(removed > 0 ? ", \(removed) segment files deleted" : "")"
        )
    }

    /// Where the ids stand: the first readable, the next to be given, the horizon and the cutoff.
    var position: (firstId: Int, nextId: Int, horizon: Timestamp?, expiredBefore: Timestamp?) {
        state.withLock { state in
            (state.firstReadable, state.nextId, state.horizon, state.expiredBefore.map { Timestamp(microseconds: $0 * 1_000_000) })
        }
    }

    /// Up to `size` records from id `start` on, each with its id; empty when `start` is not numbered yet.
    func page(from start: Int, size: Int) throws(PageError) -> [(id: Int, line: JSONObject)] {
        struct Run {
            var partition: Int
            var ordinal: UInt64
            var count: Int
            var id: Int
        }
        let planned = state.withLock { plan($0) }
        let runs = try planned.get()
        func plan(_ state: State) -> Result<[Run], PageError> {
            guard start >= state.firstReadable else {
                return .failure(
                    .expired(firstId: state.firstReadable, before: state.expiredBefore.map { Timestamp(microseconds: $0 * 1_000_000) }))
            }
            guard start < state.nextId else { return .success([]) }
            var low = 0
            var high = state.served.count
            while low < high {
                let middle = (low + high) / 2
                if state.served[middle].start + state.served[middle].count <= start { low = middle + 1 } else { high = middle }
            }
            var runs: [Run] = []
            var id = start
            var left = size
            var index = low
            while left > 0 && index < state.served.count {
                let group = state.served[index]
                let skip = id - group.start
                let count = min(left, group.count - skip)
                runs.append(Run(partition: group.partition, ordinal: group.firstOrdinal + UInt64(skip), count: count, id: id))
                id += count
                left -= count
                index += 1
            }
            return .success(runs)
        }
        var page: [(id: Int, line: JSONObject)] = []
        for run in runs {
            let lines: [JSONObject]
            do {
                lines = try journals[run.partition].read(from: run.ordinal, maximum: run.count)
            } catch {
                throw .failed("\(error)")
            }
            guard lines.count == run.count else {
                // The segment was deleted while this page was read: the retention caught up with it.
                let (first, before) = state.withLock { ($0.firstReadable, $0.expiredBefore) }
                if run.id < first { throw .expired(firstId: first, before: before.map { Timestamp(microseconds: $0 * 1_000_000) }) }
                throw .failed(
                    "partition \(run.partition)'s usage journal lacks records \(run.ordinal)..<\(run.ordinal + UInt64(run.count))")
            }
            for (offset, line) in lines.enumerated() { page.append((run.id + offset, line)) }
        }
        return page
    }
}
