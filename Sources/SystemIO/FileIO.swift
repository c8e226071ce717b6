import CSystemIO
import Foundation

#if canImport(Glibc)
    public import Glibc
#endif

/// Thin, typed wrappers over the file system calls the log (and the connector's watermarks) use:
/// EINTR retried, partial writes finished, errors naming the file.
public enum FileIO {
    /// Opens `path` with `O_CLOEXEC` added. The corresponding C function is `open`.
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o640) throws(SystemError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw SystemError("open", path) }
        }
    }

    /// Writes all of `bytes` at `offset`. The corresponding C function is `pwrite`.
    public static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(SystemError) {
        let failure = bytes.withUnsafeBytes { buffer -> SystemError? in
            do throws(SystemError) {
                try pwriteAll(fd, buffer, at: offset, path: path)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Writes all of `bytes` at `offset`. The corresponding C function is `pwrite`.
    public static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let written = Glibc.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if written < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path)
            }
            done += written
        }
    }

    /// Makes the file's data and metadata durable. The corresponding C function is `fsync`.
    public static func fsync(_ fd: Int32, path: String) throws(SystemError) {
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { throw SystemError("fsync", path) }
        }
    }

    /// Reads up to `count` bytes at `offset` (fewer at end of file). The corresponding C function is `pread`.
    public static func pread(_ fd: Int32, count: Int, at offset: Int, path: String) throws(SystemError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = buffer.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if got < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path)
            }
            if got == 0 { break }
            done += got
        }
        if done < count { buffer.removeLast(count - done) }
        return buffer
    }

    /// The corresponding C function is `fdatasync`.
    public static func fdatasync(_ fd: Int32, path: String) throws(SystemError) {
        while Glibc.fdatasync(fd) != 0 {
            if errno != EINTR { throw SystemError("fdatasync", path) }
        }
    }

    /// Writes the range's dirty pages to the disk and waits for them, without the disk's cache
    /// flush and without metadata (not durable: an `fsync` must follow). A background writer of
    /// many megabytes calls it every megabyte or so, so the disk's queue never holds more than
    /// that ahead of another thread's `fdatasync`, which would otherwise wait behind all of it.
    /// The corresponding C function is `sync_file_range`.
    public static func writeBack(_ fd: Int32, from offset: Int, count: Int, path: String) throws(SystemError) {
        while csystemio_write_back(fd, Int64(offset), Int64(count)) != 0 {
            if errno != EINTR { throw SystemError("sync_file_range", path) }
        }
    }

    /// How much a large write puts in the page cache before it writes it back (`writeBack`).
    public static let writeBackStep = 1 << 20

    /// Makes a directory's entries (a rename, a new file) durable.
    public static func fsyncDirectory(_ path: String) throws(SystemError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { throw SystemError("fsync", path) }
        }
    }

    /// The size of the open file. The corresponding C function is `fstat`.
    public static func size(_ fd: Int32, path: String) throws(SystemError) -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SystemError("fstat", path) }
        return Int(info.st_size)
    }

    /// Creates `path` and its missing parents; each new directory's entry is made durable (its
    /// parent fsync'd), so a crash never loses a directory that files were already written into.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o750) throws(SystemError) {
        var info = stat()
        if stat(path, &info) == 0 { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try makeDirectory(parent, mode: mode) }
        if mkdir(path, mode) != 0 {
            if errno == EEXIST { return }
            throw SystemError("mkdir", path)
        }
        try fsyncDirectory(parent.isEmpty ? "." : parent)
    }

    /// Writes `bytes` to `path` atomically: a temporary file made with `mode` (so a secret's file
    /// is never readable by others, not even for a moment), fsync, rename, directory fsync. A
    /// failure leaves `path` as it was and removes the temporary file.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o640) throws(SystemError) {
        let temporary = path + ".tmp"
        unlink(temporary)
        let fd = try open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_EXCL, mode)
        do throws(SystemError) {
            // A large file (a segment's summary, say) is written back as it goes, so a log's
            // `fdatasync` meanwhile does not wait behind all of it in the disk's queue.
            let failure = bytes.withUnsafeBytes { buffer -> SystemError? in
                do throws(SystemError) {
                    var offset = 0
                    while offset < buffer.count {
                        let count = min(writeBackStep, buffer.count - offset)
                        try pwriteAll(fd, UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + count]), at: offset, path: temporary)
                        if buffer.count > writeBackStep { try writeBack(fd, from: offset, count: count, path: temporary) }
                        offset += count
                    }
                    return nil
                } catch {
                    return error
                }
            }
            if let failure { throw failure }
            try fsync(fd, path: temporary)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = SystemError("rename", "\(temporary) to \(path)")
            unlink(temporary)
            throw error
        }
        try fsyncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// What tells one version of a file from another: device, inode, size and modification time
    /// (an atomic replace always makes a new inode). Compared on each use, it costs one `stat`.
    public struct Identity: Equatable, Sendable {
        public var device: UInt64
        public var inode: UInt64
        public var size: Int64
        public var seconds: Int
        public var nanoseconds: Int
    }

    /// The identity of the file at `path`, or nil when there is none.
    public static func identity(of path: String) throws(SystemError) -> Identity? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { return nil }
            throw SystemError("stat", path)
        }
        return Identity(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size), seconds: info.st_mtim.tv_sec,
            nanoseconds: info.st_mtim.tv_nsec)
    }

    /// Takes the `flock` on the lock file at `path` for this process and writes its pid there, or
    /// fails naming the pid that holds it: one owner per directory, released when the process dies.
    public static func lockExclusively(_ path: String) throws(LockFailure) -> Int32 {
        let fd: Int32
        do {
            fd = try open(path, O_RDWR | O_CREAT, 0o640)
        } catch {
            throw LockFailure(path: path, owner: nil, cause: error)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let owner = (try? pread(fd, count: 32, at: 0, path: path)).map {
                String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            close(fd)
            throw LockFailure(path: path, owner: owner ?? "?", cause: nil)
        }
        ftruncate(fd, 0)
        _ = try? pwriteAll(fd, Array("\(getpid())\n".utf8), at: 0, path: path)
        return fd
    }

    /// Why a lock file could not be taken: held by `owner` (a pid), or `cause`.
    public struct LockFailure: Error, CustomStringConvertible {
        public var path: String
        public var owner: String?
        public var cause: SystemError?
        public var description: String {
            if let owner { return "\(path) is held by another process (pid \(owner))" }
            return "cannot open the lock file: \(cause.map(String.init(describing:)) ?? "?")"
        }
    }
}
