import CSystemIO
import Foundation
import SystemIO

#if canImport(Glibc)
    import Glibc
#endif

/// The memory an `IdempotencyIndex` keeps its slots and counters in: a header followed by the
/// slots, mapped either from a file beside the log (shared, so a process killed at any instant
/// leaves in the page cache exactly what it had written) or anonymously (zero pages the kernel
/// gives as they are touched).
///
/// The file is trusted only by a process of the same boot (`boot_id`) and only when it is the very
/// file the table was created as (its inode): after a reboot the kernel may have written back some
/// of its pages and not others, and a copied or restored file says nothing about this log. It
/// records, per partition, the next sequence whose key it already holds (`covered`), so a restart
/// remembers only the keys of the log's tail.
///
/// Header (little-endian, `headerLength` bytes, a multiple of the page size):
/// ```
///   0  magic "MTRIDT01"          48  retention (µs)
///   8  format (UInt32) = 1       56  state: 0 steady, 1 changing (a sweep is moving slots)
///  12  header length (UInt32)    64  log identity (64 bytes, zero-padded)
///  16  slots                    128  boot id (48 bytes, zero-padded)
///  24  count                    176  partitions (UInt32)
///  32  oldest time (µs)         184  device, 192 inode of the file when created
///  40  last sweep (µs)          200  covered: next sequence per partition (UInt64 each)
/// ```
final class IdempotencyTable: @unchecked Sendable {
    static let magic = UInt64(littleEndian: Array("MTRIDT01".utf8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    static let format: UInt32 = 1
    static let coveredOffset = 200
    static let entryStride = MemoryLayout<IdempotencyIndex.Entry>.stride
    /// `MADV_POPULATE_WRITE` (Linux 5.14), which Glibc's headers here do not name.
    static let populateWrite: Int32 = 23

    let base: UnsafeMutableRawPointer
    let mappedLength: Int
    let headerLength: Int
    let slots: Int
    let entries: UnsafeMutablePointer<IdempotencyIndex.Entry>
    /// The file's descriptor, or -1 for anonymous memory.
    let descriptor: Int32
    /// Where the file is, for a file-backed table.
    let path: String?

    private init(base: UnsafeMutableRawPointer, mappedLength: Int, headerLength: Int, slots: Int, descriptor: Int32, path: String?) {
        self.base = base
        self.mappedLength = mappedLength
        self.headerLength = headerLength
        self.slots = slots
        self.entries = (base + headerLength).bindMemory(to: IdempotencyIndex.Entry.self, capacity: slots)
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        munmap(base, mappedLength)
        if descriptor >= 0 { close(descriptor) }
    }

    static func headerLength(partitions: Int) -> Int {
        let page = 4096
        return (coveredOffset + 8 * partitions + page - 1) / page * page
    }

    // MARK: header fields

    var count: Int {
        get { Int(truncatingIfNeeded: base.load(fromByteOffset: 24, as: UInt64.self)) }
        set { base.storeBytes(of: UInt64(truncatingIfNeeded: newValue), toByteOffset: 24, as: UInt64.self) }
    }
    var oldest: Int64 {
        get { base.load(fromByteOffset: 32, as: Int64.self) }
        set { base.storeBytes(of: newValue, toByteOffset: 32, as: Int64.self) }
    }
    var lastSweep: Int64? {
        get {
            let value = base.load(fromByteOffset: 40, as: Int64.self)
            return value == Int64.min ? nil : value
        }
        set { base.storeBytes(of: newValue ?? Int64.min, toByteOffset: 40, as: Int64.self) }
    }
    var retention: Int64 { base.load(fromByteOffset: 48, as: Int64.self) }
    /// A sweep is moving slots: a process killed meanwhile leaves a table that must be rebuilt.
    var changing: Bool {
        get { base.load(fromByteOffset: 56, as: UInt64.self) != 0 }
        set {
            csystemio_store_fence()
            base.storeBytes(of: newValue ? 1 : 0, toByteOffset: 56, as: UInt64.self)
            csystemio_store_fence()
        }
    }
    var identity: String { text(at: 64, length: 64) }
    var bootID: String { text(at: 128, length: 48) }
    var partitions: Int { Int(base.load(fromByteOffset: 176, as: UInt32.self)) }
    var fileIdentity: (device: UInt64, inode: UInt64) {
        (base.load(fromByteOffset: 184, as: UInt64.self), base.load(fromByteOffset: 192, as: UInt64.self))
    }

    /// Per partition, the next sequence whose key (if it has one) the table holds.
    var covered: [UInt64] { (0..<partitions).map { base.load(fromByteOffset: Self.coveredOffset + 8 * $0, as: UInt64.self) } }

    /// Records that the keys of every record before `next` (per partition) are in the table. The
    /// slots written before are in place before any of these values is.
    func cover(_ next: [UInt64]) {
        csystemio_store_fence()
        for (partition, sequence) in next.prefix(partitions).enumerated() {
            base.storeBytes(of: sequence, toByteOffset: Self.coveredOffset + 8 * partition, as: UInt64.self)
        }
    }

    private func text(at offset: Int, length: Int) -> String {
        let bytes = UnsafeRawBufferPointer(start: base + offset, count: length)
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    private func setText(_ text: String, at offset: Int, length: Int) {
        let utf8 = Array(text.utf8.prefix(length))
        let target = UnsafeMutableRawBufferPointer(start: base + offset, count: length)
        target.initializeMemory(as: UInt8.self, repeating: 0)
        target.copyBytes(from: utf8)
    }

    // MARK: making and opening

    /// What a file-backed table is for: the log and the boot it is trusted in.
    struct Owner: Equatable {
        var identity: String
        var bootID: String
        var partitions: Int
        var retention: Int64
    }

    /// A table of `slots` slots in anonymous memory; `populated`, every page mapped now (else as
    /// they are first touched).
    static func anonymous(slots: Int, retention: Int64, partitions: Int = 0, populated: Bool = false) -> IdempotencyTable {
        let header = headerLength(partitions: partitions)
        let length = header + slots * entryStride
        let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let base, base != MAP_FAILED else {
            fatalError("out of memory: cannot map \(length) bytes for the idempotency index")
        }
        if populated { populate(base, length) }
        let table = IdempotencyTable(base: base, mappedLength: length, headerLength: header, slots: slots, descriptor: -1, path: nil)
        table.initializeHeader(retention: retention, owner: nil, partitions: partitions, file: (0, 0))
        return table
    }

    /// Maps in every page of `length` bytes at `base` (`MADV_POPULATE_WRITE`); a large table's
    /// halves on two threads at once: the kernel allocates and zeroes each page, a
    /// quarter of a second for the 640 MB of ten million keys on one thread.
    static func populate(_ base: UnsafeMutableRawPointer, _ length: Int) {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let half = length / 2 / pageSize * pageSize
        guard length >= 64 << 20 else {
            _ = madvise(base, length, populateWrite)
            return
        }
        let start = UInt(bitPattern: base)
        DispatchQueue.concurrentPerform(iterations: 2) { part in
            let from = part == 0 ? 0 : half
            let to = part == 0 ? half : length
            _ = madvise(UnsafeMutableRawPointer(bitPattern: start + UInt(from)), to - from, populateWrite)
        }
    }

    /// A new, empty table of `slots` slots in a file created at `path + ".new"` (renamed to `path`
    /// by `install`). The file's blocks are allocated first, so writing a slot can never meet a
    /// full disk (which would be a SIGBUS).
    static func create(path: String, slots: Int, owner: Owner) throws(SystemError) -> IdempotencyTable {
        let temporary = path + ".new"
        unlink(temporary)
        let fd = try FileIO.open(temporary, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        let header = headerLength(partitions: owner.partitions)
        let length = header + slots * entryStride
        var failure = posix_fallocate(fd, 0, off_t(length))
        while failure == EINTR { failure = posix_fallocate(fd, 0, off_t(length)) }
        guard failure == 0 else {
            close(fd)
            unlink(temporary)
            throw SystemError("fallocate", "\(temporary) (\(length) bytes)", errno: failure)
        }
        let file: FileIO.Identity
        do throws(SystemError) {
            guard let identity = try FileIO.identity(of: temporary) else { throw SystemError("stat", temporary, errno: ENOENT) }
            file = identity
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let base, base != MAP_FAILED else {
            let error = SystemError("mmap", temporary)
            close(fd)
            unlink(temporary)
            throw error
        }
        // Every page is written soon (the header now, the slots as keys come, all of them when a
        // table grows and its keys are moved in): map them all in one call instead of taking a
        // fault per page. A kernel without MADV_POPULATE_WRITE (before 5.14) refuses, and the
        // pages fault in one by one as before.
        populate(base, length)
        let table = IdempotencyTable(base: base, mappedLength: length, headerLength: header, slots: slots, descriptor: fd, path: path)
        table.initializeHeader(
            retention: owner.retention, owner: owner, partitions: owner.partitions,
            file: (file.device, file.inode))
        return table
    }

    /// Puts a table made by `create` at its path, replacing the previous file.
    func install() throws(SystemError) {
        guard let path else { return }
        guard rename(path + ".new", path) == 0 else { throw SystemError("rename", path + ".new") }
    }

    private func initializeHeader(retention: Int64, owner: Owner?, partitions: Int, file: (UInt64, UInt64)) {
        base.storeBytes(of: Self.magic, toByteOffset: 0, as: UInt64.self)
        base.storeBytes(of: Self.format, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(headerLength), toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: UInt64(slots), toByteOffset: 16, as: UInt64.self)
        count = 0
        oldest = Int64.max
        lastSweep = nil
        base.storeBytes(of: retention, toByteOffset: 48, as: Int64.self)
        base.storeBytes(of: 0, toByteOffset: 56, as: UInt64.self)
        setText(owner?.identity ?? "", at: 64, length: 64)
        setText(owner?.bootID ?? "", at: 128, length: 48)
        base.storeBytes(of: UInt32(partitions), toByteOffset: 176, as: UInt32.self)
        base.storeBytes(of: file.0, toByteOffset: 184, as: UInt64.self)
        base.storeBytes(of: file.1, toByteOffset: 192, as: UInt64.self)
        cover([UInt64](repeating: 0, count: partitions))
    }

    /// Maps the table file at `path` if it can be trusted for `owner`, else says why not.
    static func open(path: String, owner: Owner) -> Result<IdempotencyTable, TableRefusal> {
        discardLeftover(of: path)
        let fd: Int32
        do {
            fd = try FileIO.open(path, O_RDWR)
        } catch {
            return .failure(error.errno == ENOENT ? .missing : .unusable("\(error)"))
        }
        let file: FileIO.Identity
        do throws(SystemError) {
            guard let identity = try FileIO.identity(of: path) else { throw SystemError("stat", path, errno: ENOENT) }
            file = identity
        } catch {
            close(fd)
            return .failure(.unusable("\(error)"))
        }
        let length = Int(file.size)
        guard length >= 4096 else {
            close(fd)
            return .failure(.unusable("it is \(length) bytes long, shorter than its header"))
        }
        let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let base, base != MAP_FAILED else {
            let error = SystemError("mmap", path)
            close(fd)
            return .failure(.unusable("\(error)"))
        }
        let header = Int(base.load(fromByteOffset: 12, as: UInt32.self))
        let slots = Int(truncatingIfNeeded: base.load(fromByteOffset: 16, as: UInt64.self))
        func refuse(_ reason: TableRefusal) -> Result<IdempotencyTable, TableRefusal> {
            munmap(base, length)
            close(fd)
            return .failure(reason)
        }
        guard base.load(fromByteOffset: 0, as: UInt64.self) == magic, base.load(fromByteOffset: 8, as: UInt32.self) == format,
            header >= headerLength(partitions: 0), header % 4096 == 0, header <= length, slots >= 1024, slots & (slots - 1) == 0,
            slots <= (length - header) / entryStride, length == header + slots * entryStride
        else { return refuse(.unusable("it is not an idempotency table of this format")) }
        let table = IdempotencyTable(base: base, mappedLength: length, headerLength: header, slots: slots, descriptor: fd, path: path)
        guard table.partitions == owner.partitions, header == headerLength(partitions: owner.partitions),
            table.identity == owner.identity
        else { return .failure(.otherLog) }
        guard table.bootID == owner.bootID else { return .failure(.otherBoot) }
        guard table.fileIdentity == (file.device, file.inode) else { return .failure(.copied) }
        guard table.retention == owner.retention else { return .failure(.otherRetention) }
        guard !table.changing else { return .failure(.cutShort) }
        guard table.count <= slots else { return .failure(.unusable("its count is larger than its slots")) }
        return .success(table)
    }

    /// Removes the file a growth or creation of the table at `path` left at `path + ".new"` (cut
    /// short, or a successor made ahead and never used) without waiting for the file system to free
    /// its blocks: the successor of a table of ten million keys is 1.3 GB, and removing it in place
    /// took ingest's restart from 28 to 119 ms. It is renamed aside at once and removed on a
    /// background thread, with any a process killed meanwhile left aside.
    static func discardLeftover(of path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let prefix = (path as NSString).lastPathComponent + ".discarded-"
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let aside = path + ".discarded-\(getpid())-\(now.tv_sec)\(now.tv_nsec)"
        _ = rename(path + ".new", aside)
        DispatchQueue.global(qos: .utility).async {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
                unlink(directory + "/" + name)
            }
        }
    }

    /// Why a table file is not used (it is then rebuilt from the log).
    enum TableRefusal: Error, Equatable, CustomStringConvertible {
        case missing
        case otherLog
        case otherBoot
        case copied
        case otherRetention
        case cutShort
        case unusable(String)

        var description: String {
            switch self {
            case .missing: return "there is none yet"
            case .otherLog: return "it belongs to another log (or another partition count)"
            case .otherBoot: return "it was written before the machine restarted, so some of its pages may never have reached the disk"
            case .copied: return "it is a copy (another file than the one it was created as)"
            case .otherRetention: return "it was kept for another retention window"
            case .cutShort: return "the process stopped while it was moving entries"
            case .unusable(let reason): return reason
            }
        }
    }

    /// This boot's identity (`/proc/sys/kernel/random/boot_id`), or nil where there is none (a
    /// table file is then never trusted).
    static let currentBootID: String? = {
        let text = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return text?.isEmpty == false ? text : nil
    }()
}
