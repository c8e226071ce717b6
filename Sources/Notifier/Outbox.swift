import Daemon
import EventStore
import Foundation
import Synchronization
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One partition's notifications, durable and in order, until every subscriber has had them:
/// segment files `<first ordinal, 20 digits>.ndjson` of lines
/// `{"ordinal":o,"sequence":s,"last":true|false,"notification":{...}}`.
///
/// Ordinals number the partition's notifications without gaps; a subscriber's cursor is the next
/// ordinal it needs. The notifications of one record are written together and `last` marks the
/// record's final one, so a crash mid-write (a torn line, or a record half written) is cut back to
/// the last whole record at start-up; the fold then makes the cut notifications again, with the
/// same ordinals and ids. A line is readable only once synced, so nothing a crash can take back is
/// ever delivered. Segments every cursor has passed are deleted.
final class Outbox: Sendable {
    let partition: Int
    let directory: String
    private let state: Mutex<State>

    /// The segments, the descriptor the last one is written through, and the last record written.
    private struct State {
        var segments: [Segment] = []
        var appendFD: Int32 = -1
        var sequence: UInt64?
    }

    /// A segment is closed once it holds this many bytes (at a record's boundary).
    static let segmentBytes = 4 << 20
    /// One line offset in this many is kept in memory, for reading from an ordinal.
    static let stride = 64

    struct Segment {
        var first: UInt64
        var count: UInt64 = 0
        var path: String
        var bytes = 0
        /// The offset of lines first, first + stride, first + 2·stride, ...
        var offsets: [Int] = []
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Opens (or creates) the outbox in `directory`, cutting a torn or half-written tail.
    init(directory: String, partition: Int) throws(Failure) {
        self.directory = directory
        self.partition = partition
        do {
            try FileIO.makeDirectory(directory)
        } catch {
            throw Failure("cannot create \(directory): \(error)")
        }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            $0.hasSuffix(".ndjson") && $0.count == 27 && UInt64($0.prefix(20)) != nil
        }.sorted()
        var state = State()
        for (index, name) in names.enumerated() {
            var segment = Segment(first: UInt64(name.prefix(20))!, path: directory + "/" + name)
            if let previous = state.segments.last, previous.first + previous.count != segment.first {
                throw Failure(
                    "\(segment.path) starts at notification \(segment.first), but the segment before it ends at \(previous.first + previous.count); move the outbox aside to rebuild it"
                )
            }
            try Self.scan(&segment, isLast: index == names.count - 1, sequence: &state.sequence)
            state.segments.append(segment)
        }
        do {
            if state.segments.isEmpty { try Self.startSegment(first: 0, in: directory, &state) } else { try Self.openForAppend(&state) }
        } catch {
            if state.appendFD >= 0 { close(state.appendFD) }
            throw error
        }
        self.state = Mutex(state)
    }

    deinit { state.withLock { if $0.appendFD >= 0 { close($0.appendFD) } } }

    /// Reads a segment's lines, indexes them, and (the last segment) cuts what follows the last
    /// whole record, setting `sequence` to the last record's.
    private static func scan(_ segment: inout Segment, isLast: Bool, sequence: inout UInt64?) throws(Failure) {
        guard let data = FileManager.default.contents(atPath: segment.path) else { throw Failure("cannot read \(segment.path)") }
        let bytes = [UInt8](data)
        var start = 0
        var keep = 0
        var kept: (count: UInt64, offsets: [Int], sequence: UInt64?) = (0, [], sequence)
        var count: UInt64 = 0
        var offsets: [Int] = []
        while let end = bytes[start...].firstIndex(of: 0x0A) {
            guard let line = try? JSONParser.parse(bytes[start..<end]), line["ordinal"]?.intValue == Int(segment.first + count),
                let lineSequence = line["sequence"]?.intValue, case .bool(let last)? = line["last"],
                line["notification"]?.objectValue != nil
            else {
                guard isLast else {
                    throw Failure("\(segment.path): the line at byte \(start) is damaged; move the outbox aside to rebuild it")
                }
                break
            }
            if count % UInt64(Self.stride) == 0 { offsets.append(start) }
            count += 1
            start = end + 1
            if last { (keep, kept) = (start, (count, offsets, UInt64(lineSequence))) }
        }
        if !isLast { keep = start }
        if keep < bytes.count {
            guard isLast else { throw Failure("\(segment.path) ends inside a line; move the outbox aside to rebuild it") }
            Log.warning("\(segment.path): cutting \(bytes.count - keep) bytes after the last whole record (a crash during a write)")
            let fd = open(segment.path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0, ftruncate(fd, off_t(keep)) == 0, Glibc.fsync(fd) == 0 else {
                if fd >= 0 { close(fd) }
                throw Failure("cannot cut \(segment.path): \(String(cString: strerror(errno)))")
            }
            close(fd)
        }
        if isLast {
            segment.count = kept.count
            segment.offsets = kept.offsets
            sequence = kept.sequence
        } else {
            segment.count = count
            segment.offsets = offsets
        }
        segment.bytes = keep
    }

    private static func openForAppend(_ state: inout State) throws(Failure) {
        if state.appendFD >= 0 { close(state.appendFD) }
        let path = state.segments[state.segments.count - 1].path
        state.appendFD = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard state.appendFD >= 0 else { throw Failure("cannot open \(path): \(String(cString: strerror(errno)))") }
    }

    private static func startSegment(first: UInt64, in directory: String, _ state: inout State) throws(Failure) {
        let digits = String(first)
        let path = directory + "/" + String(repeating: "0", count: 20 - digits.count) + digits + ".ndjson"
        state.segments.append(Segment(first: first, path: path))
        try openForAppend(&state)
        do {
            try FileIO.fsyncDirectory(directory)
        } catch {
            throw Failure("cannot make \(path) durable: \(error)")
        }
    }

    /// The ordinal the next notification gets.
    var nextOrdinal: UInt64 { state.withLock { $0.segments.last.map { $0.first + $0.count } ?? 0 } }

    /// The sequence of the last record whose notifications are in the outbox (nil: none yet).
    var lastSequence: UInt64? { state.withLock { $0.sequence } }

    /// The ordinal of the oldest notification kept.
    var firstOrdinal: UInt64 { state.withLock { $0.segments.first?.first ?? 0 } }

    /// Writes the notifications of `records` (in log order, each record's together), syncs them,
    /// then makes them readable. After a failure nothing of the call is readable, and the next
    /// call writes over what it left.
    func append(_ records: [(sequence: UInt64, notifications: [JSONObject])]) throws(Failure) {
        try state.withLock { (state) throws(Failure) in try append(records, to: &state) }
    }

    private func append(_ records: [(sequence: UInt64, notifications: [JSONObject])], to state: inout State) throws(Failure) {
        var current = state.segments[state.segments.count - 1]
        var written: UInt64?
        for record in records where !record.notifications.isEmpty {
            if current.bytes >= Self.segmentBytes {
                try Self.sync(current, sequence: written, &state)
                try Self.startSegment(first: current.first + current.count, in: directory, &state)
                current = state.segments[state.segments.count - 1]
            }
            var out: [UInt8] = []
            for (index, notification) in record.notifications.enumerated() {
                if current.count % UInt64(Self.stride) == 0 { current.offsets.append(current.bytes + out.count) }
                out += JSONWriter.bytes(
                    .object(
                        JSONObject([
                            .init("ordinal", .number(String(current.first + current.count))),
                            .init("sequence", .number(String(record.sequence))),
                            .init("last", .bool(index == record.notifications.count - 1)), .init("notification", .object(notification)),
                        ])))
                out.append(0x0A)
                current.count += 1
            }
            do {
                try FileIO.pwriteAll(state.appendFD, out, at: current.bytes, path: current.path)
            } catch {
                throw Failure("cannot write \(current.path): \(error)")
            }
            current.bytes += out.count
            written = record.sequence
        }
        if written != nil { try Self.sync(current, sequence: written, &state) }
    }

    /// Syncs the segment being written and makes `segment` (its lines so far) readable.
    private static func sync(_ segment: Segment, sequence written: UInt64?, _ state: inout State) throws(Failure) {
        do {
            try FileIO.fdatasync(state.appendFD, path: segment.path)
        } catch {
            throw Failure("cannot sync \(segment.path): \(error)")
        }
        state.segments[state.segments.count - 1] = segment
        if let written { state.sequence = written }
    }

    /// Up to `maximum` notifications from ordinal `from` on, with their ordinals, from the one
    /// segment that holds `from` (the caller asks again from the next ordinal); from the oldest
    /// kept when `from` is older.
    func read(from: UInt64, maximum: Int) throws(Failure) -> [(ordinal: UInt64, notification: JSONObject)] {
        let found = state.withLock { state -> (Segment, UInt64)? in
            let segments = state.segments
            guard let index = segments.lastIndex(where: { $0.first <= from }) ?? (segments.isEmpty ? nil : 0) else { return nil }
            let segment = segments[index]
            let start = max(from, segment.first)
            guard start < segment.first + segment.count else {
                // At the end of this segment: the next one, if there is one, has what follows.
                return index + 1 < segments.count && segments[index + 1].count > 0 ? (segments[index + 1], segments[index + 1].first) : nil
            }
            return (segment, start)
        }
        guard let (segment, start) = found else { return [] }
        let slot = Int((start - segment.first) / UInt64(Self.stride))
        let offset = segment.offsets[slot]
        let fd = open(segment.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("cannot open \(segment.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes: [UInt8]
        do {
            bytes = try FileIO.pread(fd, count: segment.bytes - offset, at: offset, path: segment.path)
        } catch {
            throw Failure("cannot read \(segment.path): \(error)")
        }
        var ordinal = segment.first + UInt64(slot * Self.stride)
        var result: [(ordinal: UInt64, notification: JSONObject)] = []
        var position = 0
        while result.count < maximum, ordinal < segment.first + segment.count, let end = bytes[position...].firstIndex(of: 0x0A) {
            if ordinal >= start {
                guard let notification = (try? JSONParser.parse(bytes[position..<end]))?["notification"]?.objectValue else {
                    throw Failure("\(segment.path): notification \(ordinal) does not parse")
                }
                result.append((ordinal, notification))
            }
            ordinal += 1
            position = end + 1
        }
        return result
    }

    /// Deletes the segments whose notifications all come before `ordinal` (never the one being
    /// written); returns how many.
    @discardableResult
    func prune(below ordinal: UInt64) -> Int {
        let doomed = state.withLock { state -> [String] in
            var paths: [String] = []
            while state.segments.count > 1, state.segments[0].first + state.segments[0].count <= ordinal {
                paths.append(state.segments.removeFirst().path)
            }
            return paths
        }
        for path in doomed { unlink(path) }
        return doomed.count
    }
}
