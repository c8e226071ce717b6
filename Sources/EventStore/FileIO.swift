import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Thin, typed wrappers over the file system calls the log uses: EINTR retried, partial writes
/// finished, errors naming the file.
enum FileIO {
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o640) throws(SystemError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw SystemError("open", path) }
        }
    }

    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(offset + done)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path)
            }
            done += written
        }
    }

    /// Reads up to `count` bytes at `offset` (fewer at end of file).
    static func pread(_ fd: Int32, count: Int, at offset: Int, path: String) throws(SystemError) -> [UInt8] {
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

    static func fdatasync(_ fd: Int32, path: String) throws(SystemError) {
        while Glibc.fdatasync(fd) != 0 {
            if errno != EINTR { throw SystemError("fdatasync", path) }
        }
    }

    static func fsyncDirectory(_ path: String) throws(SystemError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { throw SystemError("fsync", path) }
        }
    }

    static func size(_ fd: Int32, path: String) throws(SystemError) -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SystemError("fstat", path) }
        return Int(info.st_size)
    }

    static func makeDirectory(_ path: String, mode: mode_t = 0o750) throws(SystemError) {
        var info = stat()
        if stat(path, &info) == 0 { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try makeDirectory(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw SystemError("mkdir", path) }
    }

    /// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, directory fsync.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(SystemError) {
        let temporary = path + ".tmp"
        let fd = try open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        do throws(SystemError) {
            try pwriteAll(fd, bytes, at: 0, path: temporary)
            while Glibc.fsync(fd) != 0 { if errno != EINTR { throw SystemError("fsync", temporary) } }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw SystemError("rename", "\(temporary) to \(path)") }
        try fsyncDirectory((path as NSString).deletingLastPathComponent)
    }
}
