import Daemon
import Foundation
import Synchronization
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// An append-only file of JSON lines with stable, gap-free ids: the query service's record of
/// marketplace outcomes (one file) and, one file per segment of each partition, of closed usage hours.
///
/// Every line starts `{"id":n,"partition":p,"ordinal":o,` (a usage line then `"closed":s,`, the
/// Unix second at which its hour was closed) — the id is the file's first id plus the line's number,
/// the partition and ordinal say which record of which partition's fold it is. A usage segment's
/// lines leave the partition and ordinal out (`{"id":n,"closed":s,`): its partition is the
/// segment's, its ordinal the id; lines of the earlier, full form are still read. A fold replayed after
/// a restart produces the same records with the same ordinals, and `nextOrdinal(partition:)` tells
/// which of them the file already has, so nothing is written twice and ids never change. Lines become
/// readable only once they are synced (`sync()`), so a page never shows a line a crash could take back.
/// A torn last line (a crash mid-write) is cut at start-up; damage anywhere else stops start-up.
final class Journal: Sendable {
    let path: String
    /// The id of the file's first line.
    let firstId: Int
    /// The partition of every line of a usage segment: its lines are written in the compact form
    /// (`{"id":n,"closed":s,`, the ordinal being the id), and read in both forms. Nil for the
    /// submissions journal, whose lines each name their partition and ordinal.
    let impliedPartition: Int?
    /// Everything that changes: the descriptor, the indexes, what is durable and what is pending.
    private let state: Mutex<State>
    private static let indexStride = 128

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What every line starts with.
    struct Header: Equatable {
        var id: Int
        var partition: Int
        var ordinal: UInt64
        /// Usage lines: the Unix second the record's hour was closed at (the log time of the
        /// partition's first record past it).
        var closed: Int64?
    }

    /// Opens (or creates) the journal at `path`, checks every line (`visit` sees each header in
    /// order) and cuts a torn tail.
    init(path: String, firstId: Int = 0, impliedPartition: Int? = nil, visit: (Header) -> Void = { _ in }) throws(Failure) {
        self.path = path
        self.firstId = firstId
        self.impliedPartition = impliedPartition
        let existed = access(path, F_OK) == 0
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        if !existed {
            // The new file's name must be durable before any line in it is served.
            let directory = (path as NSString).deletingLastPathComponent
            let directoryFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { if directoryFD >= 0 { close(directoryFD) } }
            guard directoryFD >= 0, fsync(directoryFD) == 0 else {
                close(fd)
                throw Failure(description: "cannot make \(path) durable: fsync of its directory: \(String(cString: strerror(errno)))")
            }
        }
        // Read back before the journal is shared: no lock needed yet.
        var state = State(fd: fd)
        do {
            try state.recover(path: path, firstId: firstId, impliedPartition: impliedPartition, visit: visit)
        } catch {
            close(fd)
            throw error
        }
        self.state = Mutex(state)
    }

    deinit {
        let fd = state.withLock { $0.fd }
        if fd >= 0 { close(fd) }
    }

    private struct State {
        /// Open while the file takes lines; a sealed file (`seal()`) opens it for each read
        /// instead, so that many old usage segments hold no descriptors.
        var fd: Int32
        /// Offsets of every `indexStride`-th line, for paging without reading from the start.
        var index: [UInt64] = []
        /// Per partition, the line of every `indexStride`-th of its records: where to start
        /// reading a partition's records from a given ordinal on (`line(partition:atOrBefore:)`).
        var partitionIndex: [Int: [(ordinal: UInt64, line: Int)]] = [:]
        var partitionCounts: [Int: Int] = [:]
        var durableCount = 0
        var durableBytes: UInt64 = 0
        /// Lines appended and not yet written to the file.
        var pending: [UInt8] = []
        /// Bytes of appended lines already written to the file past `durableBytes`, not yet
        /// synced: a catch-up appends hundreds of thousands of lines between syncs, written ahead
        /// in pieces (`writeAhead`) so the buffer stays small instead of growing to tens of MB.
        var unsyncedBytes: UInt64 = 0
        /// A write ahead failed: the lines wait for `sync`, which reports the error.
        var writeAheadFailed = false
        /// A sync failed after lines were written ahead: the next sync writes them again from the
        /// file (the kernel may have dropped the failed pages' dirty state) before syncing.
        var rewriteUnsynced = false
        /// Lines appended since the last sync.
        var pendingCount = 0
        /// What the pending lines add to the indexes at the next sync, kept as they are appended:
        /// the start (past `durableBytes`) of each that is an `indexStride`-th line of the file,
        /// and the pending lines as runs of one partition's consecutive records. A catch-up appends
        /// hundreds of thousands of lines between syncs (nearly all a single run: a usage segment
        /// holds one partition); a list of every line's header, regrown after each sync and indexed
        /// line by line, was a fifth of what journaling them cost besides writing the bytes.
        var pendingLineStarts: [UInt64] = []
        var pendingRuns: [Run] = []

        /// Lines `line..<line + count` of the file: records `ordinal..<ordinal + count` of `partition`.
        struct Run {
            var partition: Int
            var ordinal: UInt64
            var line: Int
            var count: Int
        }
        var nextOrdinals: [Int: UInt64] = [:]

        /// Reads back the file at `path`, whose first line has id `firstId`: checks and indexes
        /// every line (`visit` sees each header in order) and cuts a torn tail.
        mutating func recover(path: String, firstId: Int, impliedPartition: Int?, visit: (Header) -> Void) throws(Failure) {
            var offset: UInt64 = 0
            var lineStart: UInt64 = 0
            // The start of a line that the previous read cut; lines within one read are checked where
            // they lie (a restart reads every line of every journal: no copy per line).
            var carried: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            var count = 0
            var damaged = false
            while !damaged {
                let read = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
                guard read >= 0 else { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
                if read == 0 { break }
                buffer.withUnsafeBufferPointer { bytes in
                    guard let base = bytes.baseAddress else { return }
                    var position = 0
                    while position < read {
                        guard let found = memchr(base + position, 0x0A, read - position) else {
                            carried.append(contentsOf: bytes[position..<read])
                            return
                        }
                        let end = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(found))
                        let header: Header?
                        if carried.isEmpty {
                            header = Journal.header(bytes[position..<end], impliedPartition: impliedPartition)
                        } else {
                            carried.append(contentsOf: bytes[position..<end])
                            header = Journal.header(carried[...], impliedPartition: impliedPartition)
                            carried.removeAll(keepingCapacity: true)
                        }
                        guard let header, header.id == firstId + count else {
                            damaged = true
                            return
                        }
                        indexLine(header, line: count, offset: lineStart)
                        visit(header)
                        count += 1
                        position = end + 1
                        lineStart = offset + UInt64(position)
                    }
                }
                offset += UInt64(read)
            }
            if damaged {
                throw Failure(description: "\(path): line \(count + 1) at byte \(lineStart) is damaged; move the file aside to rebuild it")
            }
            if lineStart < offset {
                Log.warning("\(path): cutting a torn last line of \(offset - lineStart) bytes (a crash during a write)")
                guard ftruncate(fd, off_t(lineStart)) == 0, fsync(fd) == 0 else {
                    throw Failure(description: "cannot truncate \(path): \(String(cString: strerror(errno)))")
                }
            }
            durableCount = count
            durableBytes = lineStart
        }

        /// Writes the pending lines to the file after those written before, without syncing them:
        /// they stay unreadable until `sync`. A failure leaves them pending, for `sync` to write
        /// again and report.
        mutating func writeAhead(path: String) {
            guard fd >= 0 else { return }
            do {
                try FileIO.pwriteAll(fd, pending, at: Int(durableBytes + unsyncedBytes), path: path)
                unsyncedBytes += UInt64(pending.count)
                pending.removeAll(keepingCapacity: true)
            } catch {
                writeAheadFailed = true
            }
        }

        /// Adds a run of lines to the partitions' indexes (the file's own index has them already):
        /// each record that is an `indexStride`-th of its partition.
        mutating func indexRun(_ run: Run) {
            let seen = partitionCounts[run.partition, default: 0]
            var step = (Journal.indexStride - seen % Journal.indexStride) % Journal.indexStride
            while step < run.count {
                partitionIndex[run.partition, default: []].append((run.ordinal + UInt64(step), run.line + step))
                step += Journal.indexStride
            }
            partitionCounts[run.partition] = seen + run.count
            nextOrdinals[run.partition] = max(nextOrdinals[run.partition] ?? 0, run.ordinal + UInt64(run.count))
        }

        /// Adds line number `line` (of the file) to the indexes.
        mutating func indexLine(_ header: Header, line: Int, offset: UInt64) {
            if line % Journal.indexStride == 0 { index.append(offset) }
            indexRun(Run(partition: header.partition, ordinal: header.ordinal, line: line, count: 1))
        }
    }

    /// The id, partition, ordinal (and close time) at the start of a line (without its newline);
    /// nil when the line is not one of ours. With `impliedPartition` (a usage segment), a line may
    /// also be in the compact form `{"id":n,"closed":s,`: of that partition, its ordinal its id.
    static func header<Line: RandomAccessCollection<UInt8>>(_ line: Line, impliedPartition: Int? = nil) -> Header?
    where Line.Index == Int {
        guard line.last == UInt8(ascii: "}") else { return nil }
        var position = line.startIndex
        func expect(_ text: String) -> Bool {
            let start = position
            for byte in text.utf8 {
                guard position < line.endIndex, line[position] == byte else {
                    position = start
                    return false
                }
                position += 1
            }
            return true
        }
        func number() -> UInt64? {
            var value: UInt64 = 0
            let start = position
            while position < line.endIndex, line[position] >= 0x30, line[position] <= 0x39, position - start < 19 {
                value = value * 10 + UInt64(line[position] - 0x30)
                position += 1
            }
            return position > start ? value : nil
        }
        // Numbers of 19 digits may exceed `Int`: a damaged line, never a trap.
        guard expect("{\"id\":"), let id = number().flatMap(Int.init(exactly:)) else { return nil }
        if let impliedPartition, expect(",\"closed\":") {
            guard let seconds = number().flatMap(Int64.init(exactly:)), expect(",") else { return nil }
            return Header(id: id, partition: impliedPartition, ordinal: UInt64(id), closed: seconds)
        }
        guard expect(",\"partition\":"), let partition = number().flatMap(Int.init(exactly:)), expect(",\"ordinal\":"),
            let ordinal = number()
        else { return nil }
        var closed: Int64?
        if expect(",\"closed\":") {
            guard let seconds = number().flatMap(Int64.init(exactly:)) else { return nil }
            closed = seconds
        }
        guard expect(",") else { return nil }
        return Header(id: id, partition: partition, ordinal: ordinal, closed: closed)
    }

    /// Lines that are synced and readable.
    var count: Int { state.withLock { $0.durableCount } }

    /// The id the next line will get once synced.
    var nextId: Int { state.withLock { firstId + $0.durableCount + $0.pendingCount } }

    /// The ordinal of the next record of `partition` that is not in the journal yet.
    func nextOrdinal(partition: Int) -> UInt64 { state.withLock { $0.nextOrdinals[partition] ?? 0 } }

    /// Adds the record of `partition` numbered `ordinal`, with `fields` (and, for usage, the
    /// second its hour closed at), unless the journal has it already: false then. It becomes
    /// readable at the next `sync()`.
    @discardableResult
    func append(partition: Int, ordinal: UInt64, closed: Int64? = nil, _ fields: JSONObject) -> Bool {
        append(partition: partition, ordinal: ordinal, closed: closed) { Self.writeMembers(fields, to: &$0) }
    }

    /// `fields`' members, each after a comma, as `JSONWriter` writes them in an object.
    static func writeMembers(_ fields: JSONObject, to out: inout [UInt8]) {
        for member in fields.members {
            out.append(UInt8(ascii: ","))
            JSONWriter.writeString(member.key, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.write(member.value, to: &out)
        }
    }

    /// `append` with the fields written by `writeFields` straight into the line, each member
    /// after a comma (`UsageRecord.appendFields`): the line is the one the `JSONObject` form writes.
    @discardableResult
    func append(partition: Int, ordinal: UInt64, closed: Int64? = nil, writeFields: (inout [UInt8]) -> Void) -> Bool {
        state.withLock { state in
            guard ordinal >= state.nextOrdinals[partition] ?? 0 else { return false }
            let line = state.durableCount + state.pendingCount
            let lineStart = state.unsyncedBytes + UInt64(state.pending.count)
            if line % Self.indexStride == 0 { state.pendingLineStarts.append(lineStart) }
            if let last = state.pendingRuns.last, last.partition == partition, last.ordinal + UInt64(last.count) == ordinal {
                state.pendingRuns[state.pendingRuns.count - 1].count += 1
            } else {
                state.pendingRuns.append(State.Run(partition: partition, ordinal: ordinal, line: line, count: 1))
            }
            state.pendingCount += 1
            state.pending.append(contentsOf: #"{"id":"#.utf8)
            JSONWriter.writeInteger(firstId + line, to: &state.pending)
            // A usage segment's line leaves out its partition and ordinal, which go without saying.
            let compact = closed != nil && partition == impliedPartition && ordinal == UInt64(firstId + line)
            if !compact {
                state.pending.append(contentsOf: #","partition":"#.utf8)
                JSONWriter.writeInteger(partition, to: &state.pending)
                state.pending.append(contentsOf: #","ordinal":"#.utf8)
                JSONWriter.writeInteger(ordinal, to: &state.pending)
            }
            if let closed {
                state.pending.append(contentsOf: #","closed":"#.utf8)
                JSONWriter.writeInteger(Int(closed), to: &state.pending)
            }
            writeFields(&state.pending)
            state.pending.append(UInt8(ascii: "}"))
            state.pending.append(0x0A)
            state.nextOrdinals[partition] = ordinal + 1
            if state.pending.count >= Self.writeAheadBytes && !state.writeAheadFailed { state.writeAhead(path: path) }
            return true
        }
    }

    /// Writes and fsyncs what was appended, then makes it readable.
    func sync() throws(Failure) {
        try state.withLock { state throws(Failure) in
            guard state.pendingCount > 0 else { return }
            guard state.fd >= 0 else { throw Failure(description: "\(path) is sealed; it takes no more lines") }
            do {
                if state.rewriteUnsynced {
                    var offset = Int(state.durableBytes)
                    let end = offset + Int(state.unsyncedBytes)
                    while offset < end {
                        let piece = try FileIO.pread(state.fd, count: min(Self.writeAheadBytes, end - offset), at: offset, path: path)
                        guard !piece.isEmpty else { break }
                        try FileIO.pwriteAll(state.fd, piece, at: offset, path: path)
                        offset += piece.count
                    }
                    state.rewriteUnsynced = false
                }
                if !state.pending.isEmpty {
                    try FileIO.pwriteAll(state.fd, state.pending, at: Int(state.durableBytes + state.unsyncedBytes), path: path)
                    state.unsyncedBytes += UInt64(state.pending.count)
                    state.pending.removeAll(keepingCapacity: state.pending.capacity <= Self.keptBufferBytes)
                }
                try FileIO.fdatasync(state.fd, path: path)
            } catch {
                state.rewriteUnsynced = state.unsyncedBytes > 0
                throw Failure(description: "\(error)")
            }
            for start in state.pendingLineStarts { state.index.append(state.durableBytes + start) }
            for run in state.pendingRuns { state.indexRun(run) }
            state.durableBytes += state.unsyncedBytes
            state.durableCount += state.pendingCount
            state.unsyncedBytes = 0
            state.writeAheadFailed = false
            state.pendingCount = 0
            state.pendingLineStarts.removeAll(keepingCapacity: true)
            state.pendingRuns.removeAll(keepingCapacity: true)
        }
    }

    /// The largest write buffer kept between syncs.
    static let keptBufferBytes = 1 << 20
    /// Appended lines are written to the file (not synced) once this many bytes wait.
    static let writeAheadBytes = 256 << 10

    /// Closes the file for writing (after syncing it): it keeps its lines, readable, and no descriptor.
    func seal() throws(Failure) {
        try sync()
        state.withLock { state in
            if state.fd >= 0 { close(state.fd) }
            state.fd = -1
        }
    }

    /// The id of a line at or before the first record of `partition` with an ordinal of at least
    /// `ordinal` (the file's end when it has none): reading from there and skipping that
    /// partition's lower ordinals finds them all.
    func line(partition: Int, atOrBefore ordinal: UInt64) -> Int {
        state.withLock { state in
            guard ordinal < state.nextOrdinals[partition] ?? 0 else { return firstId + state.durableCount }
            let entries = state.partitionIndex[partition] ?? []
            var low = 0
            var high = entries.count
            while low < high {
                let middle = (low + high) / 2
                if entries[middle].ordinal <= ordinal { low = middle + 1 } else { high = middle }
            }
            return firstId + (low == 0 ? 0 : entries[low - 1].line)
        }
    }

    /// Up to `maximum` synced lines from id `start` on, parsed.
    func read(from start: Int, maximum: Int) throws(Failure) -> [JSONObject] {
        let (count, offset, skip, end, descriptor) = state.withLock { state -> (Int, UInt64, Int, UInt64, Int32) in
            let line = start - firstId
            guard line >= 0, line < state.durableCount else { return (0, 0, 0, 0, -1) }
            let slot = line / Self.indexStride
            return (
                min(maximum, state.durableCount - line), state.index[slot], line - slot * Self.indexStride, state.durableBytes, state.fd
            )
        }
        guard count > 0 else { return [] }
        // A sealed file is opened for this read alone; an unsealed one's descriptor stays open
        // while the journal lives.
        var readFD = descriptor
        if readFD < 0 {
            readFD = open(path, O_RDONLY | O_CLOEXEC)
            guard readFD >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        }
        defer { if descriptor < 0 { close(readFD) } }
        var records: [JSONObject] = []
        records.reserveCapacity(count)
        var position = offset
        var skipped = 0
        var line: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while records.count < count && position < end {
            let want = Int(min(UInt64(buffer.count), end - position))
            let read = buffer.withUnsafeMutableBytes { pread(readFD, $0.baseAddress, want, off_t(position)) }
            guard read > 0 else { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
            for index in 0..<read where records.count < count {
                let byte = buffer[index]
                guard byte == 0x0A else {
                    if skipped >= skip { line.append(byte) }
                    continue
                }
                if skipped < skip {
                    skipped += 1
                    continue
                }
                guard let object = try? JSONParser.parse(line[...]).objectValue else {
                    throw Failure(description: "\(path): a line near byte \(position) does not parse")
                }
                records.append(object)
                line.removeAll(keepingCapacity: true)
            }
            position += UInt64(read)
        }
        return records
    }
}
