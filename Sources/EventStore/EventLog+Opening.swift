import Daemon
import Foundation
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

extension EventLog {
    /// Opening a log: checks every piece against the others, recovers the write-ahead log
    /// (summaries of sealed segments, a scan of the rest), converts a format-1 log, and refuses
    /// whatever would serve a log that lost acknowledged records. Nothing on disk changes until
    /// every check has passed (or the operator accepted the loss).
    struct Opening {
        let directory: String
        let options: Options
        var notices: [String] = []
        let now = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))
        var manifestPath: String { directory + "/" + EventLog.manifestName }
        var marksPath: String { directory + "/" + EventLog.marksName }
        var walDirectory: String { directory + "/" + EventLog.walName }

        init(directory: String, options: Options) {
            self.directory = directory
            self.options = options
        }

        /// A segment as recovery found it.
        struct Found {
            var segment: WALSegment
            var summary: SegmentSummary
            /// The summary was rebuilt by reading the segment (a sealed one's file must be rewritten).
            var scanned: Bool
            /// The summary was read without its keys (they are read again when wanted).
            var keysLeftOut = false
        }

        /// Where reading the log had to stop before the end of the written bytes.
        struct Stop {
            var segment: Int
            var offset: Int
            var reason: String
            /// Bytes after it that are a record of this log: damage, not a torn write.
            var validRecordsFollow: Bool
        }

        mutating func run(
            willVisit: (Int, Timestamp?) -> Void, visit: (Int, UInt64, Timestamp, RecordMeta) -> Void,
            keys: (([SegmentSummary.Key]) -> Void)? = nil, keysFrom: ((_ identity: String, _ next: [UInt64]) -> [UInt64])? = nil
        ) throws(EventLogError) -> Opened {
            // The high-water marks, when there are any.
            var marks: HighWaterMarks?
            let marksExist = FileManager.default.fileExists(atPath: marksPath)
            if marksExist {
                switch EventLog.readMarks(directory) {
                case .success(let read): marks = read
                case .failure(let failure):
                    guard options.acceptingLoss else {
                        throw EventLogError(
                            "\(marksPath) is unreadable: \(failure); without it lost records cannot be detected. Restore it from a backup, or rewrite it from the log as it is with `meterctl log accept-loss`."
                        )
                    }
                    notices.append("\(marksPath) was unreadable (\(failure)) and was rewritten")
                }
            }

            // What log.json says, or what the log must be created as.
            let legacy = try Self.legacyPartitionDirectories(directory)
            var manifest: LogManifest
            var creating = false
            var converting: Int?
            if let data = FileManager.default.contents(atPath: manifestPath) {
                switch LogManifest.decode(Array(data)) {
                case .failure(let failure):
                    throw EventLogError("\(manifestPath) is damaged: \(failure); restore it from a backup")
                case .success(.formatOne(let partitions)):
                    manifest = LogManifest(
                        identity: LogManifest.newIdentity(), partitions: partitions, clock: options.clock, created: now.iso8601)
                    converting = partitions
                case .success(.current(let read)):
                    manifest = read
                }
            } else if try !Self.walHoldsRecords(walDirectory) && legacy.isEmpty && marks == nil {
                // A new log, or one whose creation a crash cut short (log.json is written last).
                guard options.partitionCount > 0 else { throw EventLogError("a log needs at least one partition") }
                manifest = LogManifest(
                    identity: LogManifest.newIdentity(), partitions: options.partitionCount, clock: options.clock, created: now.iso8601)
                creating = true
            } else if options.acceptingLoss {
                let count = max(marks?.next.count ?? 0, options.partitionCount)
                manifest = LogManifest(
                    identity: marks?.identity ?? LogManifest.newIdentity(), partitions: count, clock: options.clock, created: now.iso8601)
                notices.append("\(manifestPath) was missing and was rewritten for \(count) partitions")
            } else {
                var known = "segments in \(walDirectory)"
                if let marks { known += " and \(EventLog.marksName) (\(marks.next.count) partitions, written \(marks.written))" }
                if !legacy.isEmpty {
                    known = "partition directories " + legacy.map(EventLog.partitionDirectoryName).joined(separator: ", ")
                }
                throw EventLogError(
                    "\(manifestPath) is missing, but the log holds \(known). Starting a new log over them would accept their idempotency keys again and bill them twice. Restore \(EventLog.manifestName) from a backup, or rebuild it with `meterctl log accept-loss` (the log then gets a new identity and the aggregator and query must be rebuilt)."
                )
            }

            if manifest.partitions != options.partitionCount && !creating {
                if options.partitionCountIsExplicit {
                    throw EventLogError(
                        "METERING_PARTITIONS=\(options.partitionCount) but the log at \(directory) was created with \(manifest.partitions) partitions; the count is fixed once the log exists"
                    )
                }
                notices.append("the log has \(manifest.partitions) partitions (fixed when it was created)")
            }
            if let marks, converting == nil, marks.next.count != manifest.partitions || marks.identity != manifest.identity {
                guard options.acceptingLoss else {
                    throw EventLogError(
                        "\(EventLog.manifestName) (identity \(manifest.identity), \(manifest.partitions) partitions) and \(EventLog.marksName) (identity \(marks.identity), \(marks.next.count) partitions, written \(marks.written)) disagree: one of them was edited or restored from another log. Restore both from the same backup."
                    )
                }
                manifest.partitions = max(manifest.partitions, marks.next.count)
            }

            if let partitions = converting {
                try convertFormatOne(partitions: partitions, identity: manifest.identity)
                notices.append(
                    "converted the format-1 log to format \(LogManifest.currentFormat): identity \(manifest.identity), clock \(manifest.clock); the old files are kept in \(directory)/format-1-*"
                )
            } else if creating {
                try? FileManager.default.removeItem(atPath: walDirectory)
                do {
                    try FileIO.makeDirectory(walDirectory)
                    _ = try WALSegment.create(
                        directory: walDirectory, number: 0, capacity: options.segmentBytes, identity: manifest.identity)
                } catch {
                    throw EventLogError("cannot create the log's first segment: \(error)")
                }
            } else if !legacy.isEmpty {
                // Converted, but moving the format-1 files aside was cut short.
                try moveLegacyAside(legacy)
            }
            if marks == nil && !creating && converting == nil && !options.acceptingLoss {
                throw EventLogError(
                    "\(marksPath) is missing; without it lost records cannot be detected. Restore it from a backup, or rewrite it from the log as it is with `meterctl log accept-loss`."
                )
            }

            // The segments, each with its summary.
            var (found, stop, missingSegments) = try recoverSegments(
                identities: [manifest.identity] + manifest.losses.map(\.previousIdentity), partitions: manifest.partitions)
            let count = manifest.partitions
            var next = [UInt64](repeating: 0, count: count)
            var lastTimes = [Timestamp?](repeating: nil, count: count)
            for item in found {
                for extent in item.summary.extents {
                    next[extent.partition] = extent.nextSequence
                    lastTimes[extent.partition] = extent.lastTime
                }
            }
            let acknowledged: [UInt64] = (0..<count).map { partition in
                guard converting == nil, let marks, marks.next.indices.contains(partition) else { return 0 }
                return marks.next[partition]
            }
            var lost: [String] = []
            for partition in 0..<count where next[partition] < acknowledged[partition] {
                lost.append(
                    "partition \(partition): records \(next[partition]) to \(acknowledged[partition] - 1) (the log ends \(next[partition] == 0 ? "before its first record" : "at record \(next[partition] - 1)"), but \(acknowledged[partition]) records were acknowledged)"
                )
            }
            var damage: String?
            if let stop {
                let path = found[stop.segment].segment.path
                damage = "\(path) holds damaged bytes at byte \(stop.offset) (\(stop.reason))"
                if stop.validRecordsFollow {
                    damage! += ", and records of this log follow them, so this is not a torn write"
                } else if !lost.isEmpty {
                    damage! += " where acknowledged records were, so this is not a torn write"
                }
            }
            if !missingSegments.isEmpty {
                lost.append(
                    "segments \(missingSegments.map(String.init).joined(separator: ", ")) of \(walDirectory) are missing (with every record after them)"
                )
            }
            let corrupt = stop.map { $0.validRecordsFollow } ?? false
            if (!lost.isEmpty || corrupt) && !options.acceptingLoss {
                var message = "the log at \(directory) lost acknowledged records"
                if let marks { message += " (high-water marks written \(marks.written))" }
                message += ": " + (lost.isEmpty ? "records after the damage" : lost.joined(separator: "; "))
                if let damage { message += ". The segment \(damage)" }
                message +=
                    ". Refusing to start: serving it would reuse their sequence numbers and accept their idempotency keys again. Restore the missing or damaged segments from a backup, or accept the loss with `meterctl log accept-loss` (the log then gets a new identity and the aggregator and query must be rebuilt)."
                throw EventLogError(message)
            }

            // The clock the log's times come from.
            let clockSwitched = manifest.clock != options.clock && !creating && converting == nil
            if clockSwitched {
                guard options.allowClockChange else {
                    let newest = lastTimes.compactMap { $0 }.max()
                    throw EventLogError(
                        "the log at \(directory) was written on the \(manifest.clock) clock\(newest.map { " (its newest record is at \($0.iso8601))" } ?? ""), but METERING_CLOCK=\(options.clock): its times would jump and hours, periods and the 24-hour window would be decided by another clock. Start with METERING_CLOCK=\(manifest.clock), or switch the log for good with METERING_CLOCK_CHANGE=allow."
                    )
                }
                notices.append("the log was switched from the \(manifest.clock) clock to the \(options.clock) clock")
                manifest.clock = options.clock
            }

            // Every check passed, or the operator accepted what did not: now the disk may change.
            if let stop {
                try cut(&found, at: stop)
                if options.acceptingLoss && stop.validRecordsFollow {
                    lost.append("everything from byte \(stop.offset) of \(found[stop.segment].segment.path) on")
                }
            }
            if options.acceptingLoss {
                let previous = manifest.identity
                manifest.identity = LogManifest.newIdentity()
                manifest.losses.append(LogManifest.Loss(previousIdentity: previous, accepted: now.iso8601, missing: lost))
                notices.append(
                    lost.isEmpty
                        ? "no acknowledged record was missing; the log now has identity \(manifest.identity)"
                        : "accepted the loss of \(lost.joined(separator: "; ")); the log now has identity \(manifest.identity) (was \(previous))"
                )
                // New segments carry the new identity; the old ones keep theirs (recorded in log.json).
            }
            let finalNext = found.reduce(into: [UInt64](repeating: 0, count: count)) { next, item in
                for extent in item.summary.extents { next[extent.partition] = extent.nextSequence }
            }
            var writtenMarks = marks?.next
            if creating || converting != nil || options.acceptingLoss || marks == nil {
                let written = HighWaterMarks(identity: manifest.identity, next: finalNext, written: now.iso8601)
                do {
                    try FileIO.writeAtomically(written.bytes, to: marksPath)
                } catch {
                    throw EventLogError("cannot write \(marksPath): \(error)")
                }
                writtenMarks = finalNext
            }
            if creating || converting != nil || options.acceptingLoss || clockSwitched {
                do {
                    try FileIO.writeAtomically(JSONWriter.bytes(manifest.json) + [0x0A], to: manifestPath)
                } catch {
                    throw EventLogError("cannot write \(manifestPath): \(error)")
                }
            }
            if let partitions = converting { try moveLegacyAside(Array(0..<partitions)) }

            // The partitions as readers see them, and what indexes need.
            let partitions = (0..<count).map { PartitionLog(partition: $0) }
            var newest: Timestamp?
            var stored = 0
            for item in found {
                for extent in item.summary.extents {
                    partitions[extent.partition].adopt(extent, in: item.segment)
                    stored += extent.bytes
                }
                if let time = item.summary.newestTime { newest = max(newest ?? time, time) }
            }
            for partition in partitions { partition.recovered() }
            // Keys of records before `from` are known to the index already (a table file taken over).
            var from = keysFrom?(manifest.identity, finalNext) ?? []
            if from.count != count { from = [UInt64](repeating: 0, count: count) }
            // The segments whose keys are still wanted: all of their keys, or those after what the
            // table covers. A summary read without its keys is read again with them, one or two
            // segments ahead on a worker while this thread gives the keys of the one before, and
            // its keys are let go once given: holding every segment's keys at once (56 bytes each,
            // half a gigabyte for ten million) made a rebuild mostly page faults.
            let needed = Set(
                found.indices.filter { index in found[index].summary.extents.contains { $0.nextSequence > from[$0.partition] } })
            let rereads = found.indices.filter { needed.contains($0) && found[$0].keysLeftOut }
            let ahead = SummaryReadAhead(paths: rereads.map { walDirectory + "/" + EventLog.summaryName(found[$0].segment.number) })
            defer { ahead.stop() }
            // At most this many: a segment the table covers in part gives fewer.
            willVisit(needed.reduce(0) { $0 + found[$1].summary.keyCount }, newest)
            var reread = 0
            for (index, item) in found.enumerated() {
                for purchase in item.summary.purchases {
                    visit(purchase.partition, 0, newest ?? .epoch, RecordMeta(purchasedResource: purchase.resource))
                }
                for definition in item.summary.definitions {
                    visit(definition.partition, definition.sequence, newest ?? .epoch, RecordMeta(definesPlan: true))
                }
                guard needed.contains(index) else { continue }
                let extents = item.summary.extents
                var all = item.summary.keys
                if item.keysLeftOut {
                    // Never the last segment (always scanned), whose summary the log goes on with.
                    let path = walDirectory + "/" + EventLog.summaryName(item.segment.number)
                    let read = ahead.take(reread)
                    reread += 1
                    if let read {
                        guard read.extents == extents else {
                            throw EventLogError("\(path) changed while the log was being opened; start again")
                        }
                        all = read.keys
                    } else {
                        // Its head was sound, its keys are not (damage): read them from the segment,
                        // and write the summary again.
                        let scanned = try Self.keysScanned(item.segment, summary: item.summary, partitions: count, path: path)
                        notices.append("\(path): its keys were unreadable; read them from its segment and wrote the summary again")
                        found[index].summary = scanned
                        found[index].scanned = true
                        found[index].keysLeftOut = false
                        all = scanned.keys
                    }
                }
                let wanted =
                    extents.allSatisfy { $0.firstSequence >= from[$0.partition] } ? all : all.filter { $0.sequence >= from[$0.partition] }
                guard !wanted.isEmpty else { continue }
                if let keys {
                    keys(wanted)
                } else {
                    for key in wanted {
                        visit(key.partition, key.sequence, key.time, RecordMeta(payloadDigest: key.payload, keyDigest: key.key))
                    }
                }
            }
            let last = found[found.count - 1]
            return Opened(
                partitions: partitions, manifest: manifest, notices: notices, current: last.segment, currentSummary: last.summary,
                segmentCount: found.count, storedBytes: stored, marks: writtenMarks,
                unsummarized: found.dropLast().filter(\.scanned).map(\.summary))
        }

        // MARK: segments

        /// Opens every segment in order with its summary (read from its file when sealed and the
        /// file is sound, else rebuilt by reading the segment), checking that each partition's
        /// sequences continue from segment to segment. Returns where reading had to stop, if it did,
        /// and segment numbers missing in the middle. A summary is trusted only beside a segment
        /// written under one of `identities` (the log's, and those it had before accepted losses).
        func recoverSegments(identities: [String], partitions: Int) throws(EventLogError) -> (
            [Found], Stop?, [UInt64]
        ) {
            var names: [String] = []
            if FileManager.default.fileExists(atPath: walDirectory) {
                let all: [String]
                do {
                    all = try FileManager.default.contentsOfDirectory(atPath: walDirectory)
                } catch {
                    throw EventLogError("cannot list \(walDirectory): \(error.localizedDescription)")
                }
                for leftover in all where leftover.hasSuffix(".tmp") { unlink(walDirectory + "/" + leftover) }
                names = all.filter { $0.hasSuffix(".wal") && $0.count == 24 }.sorted()
            }
            guard !names.isEmpty else {
                throw EventLogError(
                    "\(walDirectory) holds no segment, but log.json says the log exists: its records are gone. Restore \(walDirectory) from a backup, or start over with `meterctl log accept-loss` (a new identity; the aggregator and query must then be rebuilt)."
                )
            }
            var found: [Found] = []
            var missing: [UInt64] = []
            var next = [UInt64](repeating: 0, count: partitions)
            var lastTimes = [Int64](repeating: Int64.min, count: partitions)
            for (position, name) in names.enumerated() {
                let (segment, segmentIdentity) = try WALSegment.open(path: walDirectory + "/" + name, capacity: options.segmentBytes)
                if let previous = found.last?.segment.number, segment.number != previous + 1 {
                    missing += Array((previous + 1)..<segment.number)
                }
                let isLast = position == names.count - 1
                var summary: SegmentSummary?
                // A segment's header holds the first 16 digits of the log's identity when it was written
                // (an earlier one for segments from before an accepted loss).
                if !isLast, identities.contains(where: { $0.prefix(16) == segmentIdentity }) || options.acceptingLoss,
                    let read = SegmentSummary.read(path: walDirectory + "/" + EventLog.summaryName(segment.number), keys: false),
                    read.number == segment.number, read.dataEnd <= segment.capacity,
                    Self.continues(read, next: next, lastTimes: lastTimes)
                {
                    summary = read
                }
                if let summary {
                    segment.end = summary.dataEnd
                    for extent in summary.extents {
                        next[extent.partition] = extent.nextSequence
                        lastTimes[extent.partition] = extent.lastTime.microseconds
                    }
                    found.append(Found(segment: segment, summary: summary, scanned: false, keysLeftOut: true))
                    continue
                }
                let (scanned, problem) = Self.scan(segment, partitions: partitions, next: &next, lastTimes: &lastTimes)
                segment.end = scanned.dataEnd
                found.append(Found(segment: segment, summary: scanned, scanned: true))
                if let (offset, reason) = problem {
                    // Damage: a torn write only when nothing of this log follows it anywhere.
                    var follows = Self.containsValidRecord(segment, after: offset)
                    for later in names[(position + 1)...] where !follows {
                        if let (laterSegment, _) = try? WALSegment.open(path: walDirectory + "/" + later),
                            case .record = RecordCodec.decode(laterSegment.fileBytes, at: WALSegment.headerLength, salt: laterSegment.salt)
                        {
                            follows = true
                        }
                    }
                    if follows && options.acceptingLoss {
                        try moveAside(Array(names[(position + 1)...]))
                    }
                    return (found, Stop(segment: found.count - 1, offset: offset, reason: reason, validRecordsFollow: follows), missing)
                }
            }
            return (found, nil, missing)
        }

        /// Whether a segment's summary continues each partition where the previous segments left it.
        static func continues(_ summary: SegmentSummary, next: [UInt64], lastTimes: [Int64]) -> Bool {
            summary.extents.allSatisfy { extent in
                extent.partition < next.count && extent.firstSequence == next[extent.partition]
                    && extent.lastTime.microseconds >= lastTimes[extent.partition]
            }
        }

        /// Reads every record of `segment`, checking each (CRC, partition, consecutive sequence,
        /// time never going back within a partition), and summarizes them; stops at the end of the
        /// written bytes or at the first problem, which it returns.
        static func scan(_ segment: WALSegment, partitions: Int, next: inout [UInt64], lastTimes: inout [Int64]) -> (
            SegmentSummary, (offset: Int, reason: String)?
        ) {
            var summary = SegmentSummary(number: segment.number, dataEnd: WALSegment.headerLength)
            var offset = WALSegment.headerLength
            let bytes = segment.fileBytes
            while true {
                // Most records need only their header and digests: no text is built for them.
                var record: (partition: Int, sequence: UInt64, time: Timestamp, meta: RecordMeta, length: Int)
                if let checked = RecordCodec.check(bytes, at: offset, salt: segment.salt),
                    let meta = RecordCodec.digestsOnly(bytes, at: offset)
                {
                    record = (checked.partition, checked.sequence, checked.time, meta, checked.length)
                } else {
                    switch RecordCodec.decode(bytes, at: offset, salt: segment.salt, includePayload: false) {
                    case .end: return (summary, nil)
                    case .incomplete: return (summary, (offset, "incomplete record"))
                    case .invalid(let reason): return (summary, (offset, reason))
                    case .record(let decoded, let length):
                        var meta = decoded.meta
                        if let key = meta.idempotencyKey, meta.keyDigest == nil { meta.keyDigest = IdempotencyIndex.digest(key) }
                        record = (decoded.partition, decoded.sequence, decoded.enqueuedTime, meta, length)
                    }
                }
                let partition = record.partition
                guard partition < partitions else {
                    return (summary, (offset, "record of partition \(partition), which does not exist"))
                }
                guard record.sequence == next[partition] else {
                    return (summary, (offset, "partition \(partition): record \(record.sequence) where \(next[partition]) was expected"))
                }
                guard record.time.microseconds >= lastTimes[partition] else {
                    return (summary, (offset, "partition \(partition): enqueued time goes backwards"))
                }
                summary.note(
                    partition: partition, sequence: record.sequence, time: record.time, meta: record.meta, offset: offset,
                    length: record.length)
                next[partition] += 1
                lastTimes[partition] = record.time.microseconds
                offset += record.length
            }
        }

        /// The summary of a sealed `segment` rebuilt by reading it, when its summary file's keys
        /// are unreadable: it must hold exactly the records `summary` (the file's sound head) says.
        static func keysScanned(_ segment: WALSegment, summary: SegmentSummary, partitions: Int, path: String) throws(EventLogError)
            -> SegmentSummary
        {
            // Only the partitions the summary names may appear, each from its first sequence on.
            var next = [UInt64](repeating: .max, count: partitions)
            for extent in summary.extents where extent.partition < partitions { next[extent.partition] = extent.firstSequence }
            var lastTimes = [Int64](repeating: .min, count: partitions)
            let (scanned, problem) = scan(segment, partitions: partitions, next: &next, lastTimes: &lastTimes)
            guard scanned.extents == summary.extents, scanned.dataEnd == summary.dataEnd,
                problem == nil || problem!.offset >= summary.dataEnd
            else {
                let why = problem.map { "at offset \($0.offset): \($0.reason)" } ?? "it holds other records than the summary says"
                throw EventLogError(
                    "\(path): its keys are unreadable (damaged), and its segment cannot stand in for them (\(why)). Restore the log directory from a backup."
                )
            }
            return scanned
        }

        /// Whether a record of `segment` starts anywhere after `offset` (its salt makes a chance
        /// match of leftover bytes practically impossible).
        static func containsValidRecord(_ segment: WALSegment, after offset: Int) -> Bool {
            let bytes = segment.fileBytes
            let end = lastNonZero(bytes) + 1
            var candidate = offset + 1
            while candidate + RecordCodec.fixedHeaderLength <= end {
                if bytes.loadUnaligned(fromByteOffset: candidate + 4, as: UInt32.self) != 0,
                    case .record = RecordCodec.decode(bytes, at: candidate, salt: segment.salt, includePayload: false)
                {
                    return true
                }
                candidate += 1
            }
            return false
        }

        /// The offset of the last byte that is not zero (the header's, for an empty segment).
        static func lastNonZero(_ bytes: UnsafeRawBufferPointer) -> Int {
            var index = bytes.count - 8
            while index >= 0 && bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) == 0 { index -= 8 }
            index = max(index, 0) + 7
            while index > 0 && index < bytes.count && bytes[index] == 0 { index -= 1 }
            return min(index, bytes.count - 1)
        }

        /// Cuts the written bytes of `found[stop.segment]` at the damage: the bytes are kept aside,
        /// then overwritten with zeros and synced, so the segment ends there.
        func cut(_ found: inout [Found], at stop: Stop) throws(EventLogError) {
            let segment = found[stop.segment].segment
            let end = Self.lastNonZero(segment.fileBytes) + 1
            guard end > stop.offset else { return }
            let aside = "\(segment.path).torn-\(Int(now.microseconds / 1_000_000))-\(stop.offset)"
            do {
                let fd = try FileIO.open(aside, O_WRONLY | O_CREAT | O_TRUNC)
                defer { close(fd) }
                try FileIO.pwriteAll(fd, UnsafeRawBufferPointer(rebasing: segment.fileBytes[stop.offset..<end]), at: 0, path: aside)
                try FileIO.fdatasync(fd, path: aside)
                try FileIO.fsyncDirectory(walDirectory)
                let zeros = [UInt8](repeating: 0, count: end - stop.offset)
                try FileIO.pwriteAll(segment.fd, zeros, at: stop.offset, path: segment.path)
                try segment.sync()
            } catch {
                throw EventLogError("cannot cut the damaged tail of \(segment.path): \(error)")
            }
            let message =
                "cut \(end - stop.offset) damaged bytes at byte \(stop.offset) of \(segment.path) (\(stop.reason)); they are kept in \(aside)"
            if options.acceptingLoss {
                Log.notice(message)
            } else {
                Log.warning(message + ": a torn write from a crash, never acknowledged")
            }
        }

        /// Moves later segments (and their summaries) into `wal/aside-<time>/`, keeping them.
        func moveAside(_ names: [String]) throws(EventLogError) {
            guard !names.isEmpty else { return }
            let aside = walDirectory + "/aside-\(now.microseconds / 1_000_000)"
            do {
                try FileIO.makeDirectory(aside)
                for name in names {
                    let number = String(name.dropLast(4))
                    for file in [name, number + ".idx"] where FileManager.default.fileExists(atPath: walDirectory + "/" + file) {
                        guard rename(walDirectory + "/" + file, aside + "/" + file) == 0 else { throw SystemError("rename", file) }
                    }
                }
                try FileIO.fsyncDirectory(walDirectory)
            } catch {
                throw EventLogError("cannot move later segments aside: \(error)")
            }
        }

        /// Whether any segment of `directory` holds a record.
        static func walHoldsRecords(_ directory: String) throws(EventLogError) -> Bool {
            guard FileManager.default.fileExists(atPath: directory) else { return false }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for name in names where name.hasSuffix(".wal") && name.count == 24 {
                guard let (segment, _) = try? WALSegment.open(path: directory + "/" + name) else { return true }
                if case .end = RecordCodec.decode(segment.fileBytes, at: WALSegment.headerLength, salt: segment.salt, includePayload: false)
                {
                    continue
                }
                return true
            }
            return false
        }

        // MARK: format 1

        /// The partition numbers of format-1 `pNNN` directories in `directory`.
        static func legacyPartitionDirectories(_ directory: String) throws(EventLogError) -> [Int] {
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: directory)
            } catch {
                throw EventLogError("cannot list the log directory \(directory): \(error.localizedDescription)")
            }
            return names.compactMap { name -> Int? in
                guard name.hasPrefix("p"), name.count >= 4, let number = Int(name.dropFirst()), number >= 0,
                    name == EventLog.partitionDirectoryName(number)
                else { return nil }
                return number
            }.sorted()
        }

        /// Writes every record of the format-1 log into a new write-ahead log (merged by time, each
        /// partition's order kept, digests computed from the payloads), under a temporary name
        /// renamed into place when complete; an earlier conversion cut short is started over.
        func convertFormatOne(partitions: Int, identity: String) throws(EventLogError) {
            let readers = try LegacyLog(directory: directory, partitionCount: partitions).readers()
            let temporary = directory + "/wal.converting"
            try? FileManager.default.removeItem(atPath: temporary)
            if FileManager.default.fileExists(atPath: walDirectory) {
                // A conversion cut short: the format-1 files are intact, so it starts over.
                do {
                    try FileManager.default.moveItem(atPath: walDirectory, toPath: directory + "/wal.interrupted-\(now.microseconds)")
                } catch {
                    throw EventLogError("cannot move the interrupted conversion aside: \(error.localizedDescription)")
                }
            }
            do {
                try FileIO.makeDirectory(temporary)
            } catch {
                throw EventLogError("cannot create \(temporary): \(error)")
            }
            var segment: WALSegment
            do {
                segment = try WALSegment.create(directory: temporary, number: 0, capacity: options.segmentBytes, identity: identity)
            } catch {
                throw EventLogError("cannot create a segment in \(temporary): \(error)")
            }
            var summary = SegmentSummary(number: 0, dataEnd: segment.end)
            var buffer: [UInt8] = []
            var converted = 0
            func flush() throws(SystemError) {
                guard !buffer.isEmpty else { return }
                try segment.write(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
            do {
                while true {
                    // The partition whose next record is oldest (ties: lower partition).
                    var chosen: LegacyLog.PartitionReader?
                    for reader in readers {
                        guard let head = reader.head else { continue }
                        if let best = chosen?.head, best.enqueuedTime <= head.enqueuedTime { continue }
                        chosen = reader
                    }
                    guard let reader = chosen, let record = reader.head else { break }
                    var meta = record.meta
                    if let key = meta.idempotencyKey {
                        meta.keyDigest = IdempotencyIndex.digest(key)
                        if meta.payloadDigest == nil, let json = try? JSONParser.parse(record.payload) {
                            meta.payloadDigest = PayloadDigest.ofMessage(json)
                        }
                    }
                    let length = RecordCodec.length(meta: meta, payloadCount: record.payload.count)
                    if segment.end + buffer.count + length > segment.capacity {
                        try flush()
                        try segment.sync()
                        try FileIO.writeAtomically(summary.bytes, to: temporary + "/" + EventLog.summaryName(segment.number))
                        segment = try WALSegment.create(
                            directory: temporary, number: segment.number + 1, capacity: max(options.segmentBytes, length + 64),
                            identity: identity)
                        summary = SegmentSummary(number: segment.number, dataEnd: segment.end)
                    }
                    let offset = segment.end + buffer.count
                    record.payload.withUnsafeBytes { payload in
                        RecordCodec.encode(
                            partition: reader.partition, sequence: record.sequence, time: record.enqueuedTime, meta: meta, payload: payload,
                            salt: segment.salt, to: &buffer)
                    }
                    summary.note(
                        partition: reader.partition, sequence: record.sequence, time: record.enqueuedTime, meta: meta, offset: offset,
                        length: length)
                    converted += 1
                    if buffer.count >= 4 << 20 { try flush() }
                    try reader.advance()
                }
                try flush()
                try segment.sync()
                try FileIO.fsyncDirectory(temporary)
                guard rename(temporary, walDirectory) == 0 else { throw SystemError("rename", "\(temporary) to \(walDirectory)") }
                try FileIO.fsyncDirectory(directory)
            } catch {
                throw EventLogError("cannot convert the format-1 log: \(error)")
            }
            Log.notice("converted \(converted) records of the format-1 log at \(directory) into \(walDirectory)")
        }

        /// Moves the format-1 partition directories into `format-1-<time>/` (never deleted).
        func moveLegacyAside(_ partitions: [Int]) throws(EventLogError) {
            let aside = directory + "/format-1-\(now.microseconds / 1_000_000)"
            do {
                try FileIO.makeDirectory(aside)
                for partition in partitions {
                    let name = EventLog.partitionDirectoryName(partition)
                    guard FileManager.default.fileExists(atPath: directory + "/" + name) else { continue }
                    guard rename(directory + "/" + name, aside + "/" + name) == 0 else { throw SystemError("rename", name) }
                }
                try FileIO.fsyncDirectory(directory)
            } catch {
                throw EventLogError("cannot move the format-1 partitions aside: \(error)")
            }
        }
    }
}
