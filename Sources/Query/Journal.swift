import Daemon
import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// An append-only file of JSON lines with stable, gap-free ids: the query service's record of closed
/// usage hours and of marketplace outcomes, which billing adapters page through.
///
/// Every line starts `{"id":n,"partition":p,"ordinal":o,` — the id is the line's number, the
/// partition and ordinal say which record of which partition's fold it is. A fold replayed after a
/// restart produces the same records with the same ordinals, and `nextOrdinal(partition:)` tells which
/// of them the file already has, so nothing is written twice and ids never change. Lines become
/// readable only once they are synced (`sync()`), so a page never shows a line a crash could take back.
/// A torn last line (a crash mid-write) is cut at start-up; damage anywhere else stops start-up.
final class Journal: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    /// Offsets of every `indexStride`-th line, for paging without reading from the start.
    private var index: [UInt64] = []
    private static let indexStride = 128
    private var durableCount = 0
    private var durableBytes: UInt64 = 0
    private var pending: [UInt8] = []
    private var pendingCount = 0
    private var nextOrdinals: [Int: UInt64] = [:]

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Opens (or creates) the journal at `path`, checks every line and cuts a torn tail.
    init(path: String) throws(Failure) {
        self.path = path
        let existed = access(path, F_OK) == 0
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        if !existed {
            // The new file's name must be durable before any line in it is served.
            let directory = (path as NSString).deletingLastPathComponent
            let directoryFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { if directoryFD >= 0 { close(directoryFD) } }
            guard directoryFD >= 0, fsync(directoryFD) == 0 else {
                throw Failure(description: "cannot make \(path) durable: fsync of its directory: \(String(cString: strerror(errno)))")
            }
        }
        try recover()
    }

    deinit { close(fd) }

    private func recover() throws(Failure) {
        var offset: UInt64 = 0
        var lineStart: UInt64 = 0
        var line: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var count = 0
        while true {
            let read = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            guard read >= 0 else { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
            if read == 0 { break }
            for position in 0..<read {
                let byte = buffer[position]
                if byte == 0x0A {
                    guard let header = Self.header(line), header.id == count else {
                        throw Failure(
                            description: "\(path): line \(count + 1) at byte \(lineStart) is damaged; move the file aside to rebuild it")
                    }
                    if count % Self.indexStride == 0 { index.append(lineStart) }
                    nextOrdinals[header.partition] = max(nextOrdinals[header.partition] ?? 0, header.ordinal + 1)
                    count += 1
                    line.removeAll(keepingCapacity: true)
                    lineStart = offset + UInt64(position) + 1
                } else {
                    line.append(byte)
                }
            }
            offset += UInt64(read)
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

    /// The id, partition and ordinal at the start of a line; nil when the line is not one of ours.
    static func header(_ line: [UInt8]) -> (id: Int, partition: Int, ordinal: UInt64)? {
        guard line.last == UInt8(ascii: "}") else { return nil }
        var position = 0
        func expect(_ text: String) -> Bool {
            for byte in text.utf8 {
                guard position < line.count, line[position] == byte else { return false }
                position += 1
            }
            return true
        }
        func number() -> UInt64? {
            var value: UInt64 = 0
            let start = position
            while position < line.count, line[position] >= 0x30, line[position] <= 0x39, position - start < 19 {
                value = value * 10 + UInt64(line[position] - 0x30)
                position += 1
            }
            return position > start ? value : nil
        }
        guard expect("{\"id\":"), let id = number(), expect(",\"partition\":"), let partition = number(), expect(",\"ordinal\":"),
            let ordinal = number(), expect(",")
        else { return nil }
        return (Int(id), Int(partition), ordinal)
    }

    /// Lines that are synced and readable.
    var count: Int { lock.withLock { durableCount } }

    /// The ordinal of the next record of `partition` that is not in the journal yet.
    func nextOrdinal(partition: Int) -> UInt64 { lock.withLock { nextOrdinals[partition] ?? 0 } }

    /// Adds the record of `partition` numbered `ordinal`, with `fields`, unless the journal has
    /// it already; it becomes readable at the next `sync()`.
    func append(partition: Int, ordinal: UInt64, _ fields: JSONObject) {
        lock.withLock {
            guard ordinal >= nextOrdinals[partition] ?? 0 else { return }
            let header: [JSONObject.Member] = [
                .init("id", .number(String(durableCount + pendingCount))), .init("partition", .number(String(partition))),
                .init("ordinal", .number(String(ordinal))),
            ]
            pending += JSONWriter.bytes(.object(JSONObject(header + fields.members)))
            pending.append(0x0A)
            pendingCount += 1
            nextOrdinals[partition] = ordinal + 1
        }
    }

    /// Writes and fsyncs what was appended, then makes it readable.
    func sync() throws(Failure) {
        lock.lock()
        defer { lock.unlock() }
        guard pendingCount > 0 else { return }
        var written = 0
        while written < pending.count {
            let result = pending.withUnsafeBytes { bytes in
                pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(durableBytes + UInt64(written)))
            }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
            written += result
        }
        guard fdatasync(fd) == 0 else { throw Failure(description: "cannot sync \(path): \(String(cString: strerror(errno)))") }
        var lineStart = durableBytes
        var line = durableCount
        for (position, byte) in pending.enumerated() where byte == 0x0A {
            if line % Self.indexStride == 0 { index.append(lineStart) }
            line += 1
            lineStart = durableBytes + UInt64(position) + 1
        }
        durableBytes += UInt64(pending.count)
        durableCount += pendingCount
        pending.removeAll(keepingCapacity: true)
        pendingCount = 0
    }

    /// Up to `maximum` synced lines from id `start` on, parsed.
    func read(from start: Int, maximum: Int) throws(Failure) -> [JSONObject] {
        let (count, offset, skip, end) = lock.withLock { () -> (Int, UInt64, Int, UInt64) in
            guard start < durableCount else { return (0, 0, 0, 0) }
            let slot = start / Self.indexStride
            return (min(maximum, durableCount - start), index[slot], start - slot * Self.indexStride, durableBytes)
        }
        guard count > 0 else { return [] }
        var records: [JSONObject] = []
        records.reserveCapacity(count)
        var position = offset
        var skipped = 0
        var line: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while records.count < count && position < end {
            let want = Int(min(UInt64(buffer.count), end - position))
            let read = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(position)) }
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
