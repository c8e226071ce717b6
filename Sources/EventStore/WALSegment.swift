import Foundation
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One file of the write-ahead log: `wal/<number, 20 digits>.wal`. Its space is written with zeros
/// ahead of the records, so appending overwrites blocks the file already owns and an `fdatasync`
/// flushes data without a metadata write, as PostgreSQL's preallocated WAL segments do. The next
/// segment is made whole in the background while the current one fills (a spare), so the file
/// being appended to is not extended under the writer: an extension dirties its inode and every
/// `fdatasync` of the writer would then write the inode too. Only a fresh log's first segment (one
/// megabyte, not a whole segment, at first) and a segment made when no spare was ready are
/// extended a few megabytes at a time, in the background. A header names the log and carries the
/// salt every record's CRC is seeded with.
///
/// ```
/// 0   8 bytes  "MTRWAL02"
/// 8   u32      salt (random per segment)
/// 12  u32      reserved, 0
/// 16  u64      segment number
/// 24  16 bytes log identity (its first 16 hexadecimal digits)
/// 40  u32      masked CRC-32C of bytes 0..<40
/// 44  20 bytes zero
/// ```
/// The whole capacity is mapped read-only for readers, who only ever read written records (below
/// the zero-filled size, so never past the end of the file).
final class WALSegment: @unchecked Sendable {
    static let headerLength = 64
    static let magic = Array("MTRWAL02".utf8)

    let number: UInt64
    let path: String
    let fd: Int32
    let salt: UInt32
    /// The most records are written up to (the mapping's size); a segment is sealed before it.
    let capacity: Int
    /// The read-only mapping of the whole capacity. Only the first `allocated` bytes are backed by
    /// the file; nothing reads further.
    let bytes: UnsafeRawBufferPointer
    /// Where the next record goes (writer thread; readers use published positions).
    var end: Int
    /// How much zero-filled space extensions add at a time.
    static let allocationStep = 4 << 20
    /// A condition, not a `Mutex`: the writer waits here for an extension in flight to finish.
    private let allocation = NSCondition()
    // Guarded by `allocation`: the file's size (zero-filled up to it), and an extension in flight.
    private var allocatedBytes: Int
    private var extending = false

    static func fileName(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".wal"
    }

    static func header(number: UInt64, identity: String, salt: UInt32) -> [UInt8] {
        var header = magic
        RecordCodec.appendInteger(salt, to: &header)
        RecordCodec.appendInteger(UInt32(0), to: &header)
        RecordCodec.appendInteger(number, to: &header)
        header += Array(identity.utf8.prefix(16))
        header += [UInt8](repeating: 0, count: 40 - header.count)
        RecordCodec.appendInteger(CRC32C.mask(CRC32C.checksum(header)), to: &header)
        header += [UInt8](repeating: 0, count: headerLength - header.count)
        return header
    }

    /// What a segment's header says, or why it cannot be used.
    static func readHeader(_ bytes: UnsafeRawBufferPointer) -> Result<(number: UInt64, identity: String, salt: UInt32), EventLogError> {
        guard bytes.count >= headerLength else { return .failure(EventLogError("shorter than a segment header")) }
        guard Array(bytes[0..<8]) == magic else { return .failure(EventLogError("no segment header (wrong magic)")) }
        let stored = bytes.loadUnaligned(fromByteOffset: 40, as: UInt32.self).littleEndian
        guard CRC32C.mask(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<40]))) == stored else {
            return .failure(EventLogError("its header's checksum does not match"))
        }
        let identity = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[24..<40]), as: UTF8.self)
        return .success(
            (
                bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian, identity,
                bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
            ))
    }

    /// Creates segment `number` in `directory`, able to hold `capacity` bytes, its first
    /// `initial` bytes written (zeros after the header) under a temporary name, synced, then
    /// renamed into place and the directory synced, so a crash leaves either no segment or a
    /// sound one.
    static func create(
        directory: String, number: UInt64, capacity: Int, identity: String, initial: Int = 1 << 20
    ) throws(SystemError) -> WALSegment {
        var generator = SystemRandomNumberGenerator()
        let salt = UInt32.random(in: 1...UInt32.max, using: &generator)
        let path = directory + "/" + fileName(number)
        let temporary = path + ".tmp"
        unlink(temporary)
        let size = min(capacity, max(initial, headerLength))
        let fd = try FileIO.open(temporary, O_RDWR | O_CREAT | O_EXCL)
        do throws(SystemError) {
            try FileIO.pwriteAll(fd, header(number: number, identity: identity, salt: salt), at: 0, path: temporary)
            try writeZeros(fd, from: headerLength, to: size, path: temporary, writingBack: size > FileIO.writeBackStep)
            try FileIO.fsync(fd, path: temporary)
            guard rename(temporary, path) == 0 else { throw SystemError("rename", "\(temporary) to \(path)") }
            try FileIO.fsyncDirectory(directory)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        do {
            return try WALSegment(path: path, fd: fd, number: number, salt: salt, capacity: capacity, allocated: size)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Writes zeros over `start..<end`, 64 KiB a `pwrite`: each holds the file's inode lock while it
    /// copies, and the committer's `write` of records waits for it (1 MiB at a time, `batch-1000`
    /// was 8% slower). With `writingBack` (a background thread's fill) every megabyte is written
    /// back to the disk before the next: the writer's `fdatasync` then never waits behind tens of
    /// megabytes of zeros in the disk's queue (20 ms and more each time a 64 MiB spare was synced
    /// whole), nor writes back zeros meant for later itself.
    private static func writeZeros(_ fd: Int32, from start: Int, to end: Int, path: String, writingBack: Bool = false)
        throws(SystemError)
    {
        guard end > start else { return }
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: min(64 << 10, end - start), alignment: 16)
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        defer { zeros.deallocate() }
        var offset = start
        var unwritten = start
        while offset < end {
            let count = min(zeros.count, end - offset)
            try FileIO.pwriteAll(fd, UnsafeRawBufferPointer(rebasing: zeros[..<count]), at: offset, path: path)
            offset += count
            if writingBack && (offset - unwritten >= FileIO.writeBackStep || offset == end) {
                try FileIO.writeBack(fd, from: unwritten, count: offset - unwritten, path: path)
                unwritten = offset
            }
        }
    }

    /// Opens an existing segment, mapped for at least `capacity` bytes.
    static func open(path: String, capacity: Int = 0) throws(EventLogError) -> (segment: WALSegment, identity: String) {
        let fd: Int32
        let size: Int
        do {
            fd = try FileIO.open(path, O_RDWR)
            size = try FileIO.size(fd, path: path)
        } catch {
            throw EventLogError("cannot open segment: \(error)")
        }
        let header: [UInt8]
        do {
            header = try FileIO.pread(fd, count: headerLength, at: 0, path: path)
        } catch {
            close(fd)
            throw EventLogError("cannot read \(path): \(error)")
        }
        switch header.withUnsafeBytes({ readHeader($0) }) {
        case .failure(let failure):
            close(fd)
            throw EventLogError("segment \(path): \(failure)")
        case .success(let read):
            do {
                let segment = try WALSegment(
                    path: path, fd: fd, number: read.number, salt: read.salt, capacity: max(size, capacity), allocated: size)
                return (segment, read.identity)
            } catch {
                close(fd)
                throw EventLogError("cannot map segment \(path): \(error)")
            }
        }
    }

    private init(path: String, fd: Int32, number: UInt64, salt: UInt32, capacity: Int, allocated: Int) throws(SystemError) {
        self.path = path
        self.fd = fd
        self.number = number
        self.salt = salt
        self.capacity = capacity
        self.end = Self.headerLength
        self.allocatedBytes = allocated
        guard let mapped = mmap(nil, capacity, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw SystemError("mmap", path)
        }
        bytes = UnsafeRawBufferPointer(start: mapped, count: capacity)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), capacity)
        close(fd)
    }

    /// The file's size: zero-filled (or written) up to it.
    var allocated: Int { allocation.withLock { allocatedBytes } }

    /// The mapped bytes backed by the file (recovery reads these).
    var fileBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[..<allocated]) }

    /// Writes `data` at `end` and advances it (writer thread). Not durable until `sync`. Space
    /// not yet zero-filled is first filled here (waiting for an extension in flight).
    func write(_ data: [UInt8]) throws(SystemError) {
        let needed = end + data.count
        allocation.lock()
        while extending && allocatedBytes < needed { allocation.wait() }
        if allocatedBytes < needed {
            let target = min(max(needed, allocatedBytes + Self.allocationStep), max(capacity, needed))
            do {
                try Self.writeZeros(fd, from: allocatedBytes, to: target, path: path)
            } catch {
                allocation.unlock()
                throw error
            }
            allocatedBytes = target
        }
        allocation.unlock()
        try FileIO.pwriteAll(fd, data, at: end, path: path)
        end += data.count
    }

    /// Makes what was written durable.
    func sync() throws(SystemError) { try FileIO.fdatasync(fd, path: path) }

    /// Whether less than one step of zero-filled space is left ahead of the records.
    var wantsExtension: Bool {
        allocation.withLock { !extending && allocatedBytes < capacity && allocatedBytes - end < Self.allocationStep }
    }

    /// Zero-fills the next step of the file and syncs it (a background thread, while the writer
    /// writes below the current size).
    func extend() throws(SystemError) {
        let range = allocation.withLock { () -> (Int, Int)? in
            guard !extending, allocatedBytes < capacity else { return nil }
            extending = true
            return (allocatedBytes, min(capacity, allocatedBytes + Self.allocationStep))
        }
        guard let (start, target) = range else { return }
        var failure: SystemError?
        do throws(SystemError) {
            try Self.writeZeros(fd, from: start, to: target, path: path, writingBack: true)
            try FileIO.fdatasync(fd, path: path)
        } catch {
            failure = error
        }
        allocation.withLock {
            if failure == nil { allocatedBytes = target }
            extending = false
            allocation.broadcast()
        }
        if let failure { throw failure }
    }
}
