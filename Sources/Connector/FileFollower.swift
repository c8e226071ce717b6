import Daemon
import Foundation
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A file's identity: a rotated-away file keeps it, a new file at the same path has another.
struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64

    /// Of the file at `path`, or nil when there is none.
    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        self.init(info)
    }

    init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }

    init(_ position: FilePosition) {
        device = position.device
        inode = position.inode
    }
}

/// Follows one growing file by path, the way `tail -F` does, with a position that survives
/// restarts:
/// - **rotation** (the path names another inode, or none): the old file, still open, is read on
///   while a writer that has not reopened yet keeps writing to it; once the path names a new file
///   and the old one has been quiet for `rotateWaitSeconds`, its unfinished last line counts as a
///   line and the new file is read from its start. After a restart the old file is found again as
///   `<path>.1` by its inode. Bytes written to the old file after that are reported, not counted.
/// - **truncation** (the size shrinks below the position, or the bytes before the position are
///   not the ones read): when `<path>.1` holds the bytes read so far (logrotate's `copytruncate`),
///   it is read on from the position first; then the file is read again from its start.
/// Anything that may have been missed (a rotated file that is gone, a truncation without a copy)
/// is kept as a problem in the status, never silently.
final class FileFollower {
    let path: String
    let config: SourceConfig
    let startAtEnd: Bool
    private var fd: Int32 = -1
    /// The name `fd` was opened by: the path, or `<path>.1`.
    private(set) var openedAs = ""
    /// The path names another file now (or none): finish this one, then move on.
    private var rotationSeen = false
    /// When the file being finished last grew (or the rotation was seen).
    private var quietSince = Date()
    let rotateWaitSeconds: Int
    /// The file left behind at the last rotation, watched for late writes: its fd, name and size.
    private var previous: (fd: Int32, name: String, size: Int)?
    private var header: CSVHeader?
    /// What the follower is doing, for the status.
    private(set) var activity = "starting"

    /// Bytes read per call: at least one line of the longest length and its CR LF, to tell a long
    /// line from an unfinished one.
    var chunkBytes: Int { max(1 << 20, config.maxLineBytes + 2) }

    init(config: SourceConfig, path: String, startAtEnd: Bool, rotateWaitSeconds: Int) {
        self.config = config
        self.path = path
        self.startAtEnd = startAtEnd
        self.rotateWaitSeconds = rotateWaitSeconds
    }

    deinit {
        if fd >= 0 { close(fd) }
        if let previous { close(previous.fd) }
    }

    var rotatedPath: String { path + ".1" }

    /// Reads what is new, folding it into `state`, up to about `budget` bytes (so hours close and
    /// the watermark is written regularly even during a long catch-up). True when it read anything.
    func poll(_ state: inout SourceState, budget: Int = 8 << 20) throws(SystemError) -> Bool {
        watchPrevious(&state)
        if fd < 0 {
            try attach(&state)
            if fd < 0 { return false }
        }
        var progressed = false
        var remaining = budget
        var checkedContent = false
        while remaining > 0, let position = state.file {
            let size = try FileIO.size(fd, path: openedAs)
            var replaced = false
            if size >= position.offset && !checkedContent { replaced = !(try tailMatches(fd, position, size: size)) }
            if size < position.offset || replaced {
                try truncated(&state, size: size)
                progressed = true
                continue
            }
            checkedContent = true
            guard size > position.offset else { break }
            let consumed = try readChunk(&state, size: size, final: false)
            guard consumed > 0 else { break }
            remaining -= consumed
            progressed = true
        }
        if progressed && rotationSeen { quietSince = Date() }
        // Moving on to the next file counts as progress: the caller polls again and reads it
        // before closing hours by the clock.
        if remaining > 0, try checkRotation(&state) { progressed = true }
        if fd >= 0 && !rotationSeen { activity = "following \(openedAs)" }
        return progressed
    }

    /// Unread bytes: the rest of the open file, and the next file's when a rotation is pending.
    func lagBytes(_ state: SourceState) -> Int? {
        guard fd >= 0, let position = state.file, let size = try? FileIO.size(fd, path: openedAs) else { return nil }
        var lag = max(0, size - position.offset)
        if rotationSeen, let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let next = attributes[.size] as? NSNumber
        {
            lag += next.intValue
        }
        return lag
    }

    /// Whether a file that may still hold lines of the open hours waits unread: the path names
    /// another file than the one being read (a rotation, or a truncated file whose copy is read
    /// first) and that file has bytes. Until it is reached, hours close only by the records read,
    /// never by the clock alone.
    var nextFileWaiting: Bool {
        guard fd >= 0 else { return false }
        var open = stat()
        var named = stat()
        guard fstat(fd, &open) == 0, stat(path, &named) == 0 else { return false }
        return FileIdentity(named) != FileIdentity(open) && named.st_size > 0
    }

    // MARK: reading

    /// Reads and folds one chunk at the position; returns the bytes consumed (0: only an
    /// unfinished line is there). `final`: the file will not grow, so its unfinished last line counts.
    private func readChunk(_ state: inout SourceState, size: Int, final: Bool) throws(SystemError) -> Int {
        guard var position = state.file else { return 0 }
        let bytes = try FileIO.pread(fd, count: min(size - position.offset, chunkBytes), at: position.offset, path: openedAs)
        guard !bytes.isEmpty else { return 0 }
        let atEnd = final && position.offset + bytes.count >= size
        let split = LineSplitter.split(bytes, discarding: position.discarding, maxLineBytes: config.maxLineBytes, atEnd: atEnd)
        guard split.consumed > 0 else { return 0 }
        let first = position.line + (position.discarding ? 2 : 1)
        for (index, piece) in split.pieces.enumerated() {
            switch piece {
            case .line(let range):
                state.fold(line: bytes[range], config: config, header: &header, at: "\(openedAs) line \(first + index)")
            case .tooLong(let range):
                state.foldTooLong(bytes[range], limit: config.maxLineBytes, at: "\(openedAs) line \(first + index)")
            }
        }
        position.advance(over: bytes[..<split.consumed], newlines: split.newlines)
        position.discarding = split.discarding
        position.header = header?.names
        state.file = position
        return split.consumed
    }

    /// Whether the bytes just before the position are still the ones read there.
    private func tailMatches(_ descriptor: Int32, _ position: FilePosition, size: Int) throws(SystemError) -> Bool {
        let tail = position.tail
        guard !tail.isEmpty, position.offset >= tail.count, size >= position.offset else { return size >= position.offset }
        return try FileIO.pread(descriptor, count: tail.count, at: position.offset - tail.count, path: openedAs) == tail
    }

    // MARK: finding the file

    /// Opens a regular file for reading; nil when there is none at `name`. Any other failure (no
    /// permission, a directory) is an error for the status: waiting would hide it.
    private func open(_ name: String) throws(SystemError) -> (fd: Int32, identity: FileIdentity, size: Int)? {
        let descriptor: Int32
        do {
            descriptor = try FileIO.open(name, O_RDONLY)
        } catch {
            if error.errno == ENOENT { return nil }
            throw error
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let failure = SystemError("fstat", name)
            close(descriptor)
            throw failure
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw SystemError("open", name + " (not a regular file)", errno: EINVAL)
        }
        return (descriptor, FileIdentity(info), Int(info.st_size))
    }

    private func use(_ opened: (fd: Int32, identity: FileIdentity, size: Int), as name: String) {
        if fd >= 0 { close(fd) }
        fd = opened.fd
        openedAs = name
    }

    private static func fresh(_ identity: FileIdentity) -> FilePosition {
        FilePosition(device: identity.device, inode: identity.inode, offset: 0, line: 0, tail: [], header: nil, discarding: false)
    }

    /// Opens the file the watermark points at, or the one to start with.
    private func attach(_ state: inout SourceState) throws(SystemError) {
        guard let position = state.file else {
            guard let opened = try open(path) else {
                activity = "waiting for \(path) to exist"
                return
            }
            use(opened, as: path)
            state.file = Self.fresh(opened.identity)
            if startAtEnd { try skipToEnd(&state, size: opened.size) }
            return
        }
        let wanted = FileIdentity(position)
        if let opened = try open(path) {
            if opened.identity == wanted {
                use(opened, as: path)
                header = position.header.map { (try? CSVHeader.make($0).get()) ?? .unusable }
                rotationSeen = false
                return
            }
            if let old = try open(rotatedPath), old.identity == wanted {
                close(opened.fd)
                use(old, as: rotatedPath)
                header = position.header.map { (try? CSVHeader.make($0).get()) ?? .unusable }
                startFinishing()
                activity = "finishing \(rotatedPath), rotated while the connector was stopped"
                return
            }
            if position.offset > 0 || position.discarding {
                state.counters.noteProblem(
                    "the file read before (device \(position.device), inode \(position.inode)) up to byte \(position.offset) is neither \(path) nor \(rotatedPath) any more: lines written to it after that byte, if any, were not read"
                )
                Log.warning("source \(config.name): \(state.counters.problems.last ?? "")")
                state.counters.rotations += 1
            }
            use(opened, as: path)
            state.file = Self.fresh(opened.identity)
            header = nil
            rotationSeen = false
            return
        }
        if let old = try open(rotatedPath), old.identity == wanted {
            use(old, as: rotatedPath)
            header = position.header.map { (try? CSVHeader.make($0).get()) ?? .unusable }
            startFinishing()
            activity = "finishing \(rotatedPath); \(path) does not exist yet"
            return
        }
        activity = "waiting for \(path) to exist"
    }

    /// The first start with `startAt: end`: the lines already there are not counted (the CSV
    /// header is still read); counting lines on the way keeps line numbers true.
    private func skipToEnd(_ state: inout SourceState, size: Int) throws(SystemError) {
        guard var position = state.file, size > 0 else { return }
        var offset = 0
        var lines = 0
        var lastNewline = -1
        while offset < size {
            let bytes = try FileIO.pread(fd, count: min(chunkBytes, size - offset), at: offset, path: openedAs)
            if bytes.isEmpty { break }
            for (index, byte) in bytes.enumerated() where byte == 0x0A {
                lines += 1
                lastNewline = offset + index
                if lines == 1 && config.format == .csv {
                    header = (try? CSVHeader.parse(bytes[..<index], delimiter: config.delimiter).get()) ?? .unusable
                }
            }
            offset += bytes.count
        }
        let skipped = lastNewline + 1
        let tailStart = max(0, skipped - FilePosition.tailLength)
        position.tail = try FileIO.pread(fd, count: skipped - tailStart, at: tailStart, path: openedAs)
        position.offset = skipped
        position.line = lines
        position.header = header?.names
        state.file = position
        Log.info("source \(config.name): starting at the end of \(path) (byte \(skipped), line \(lines)), as startAt says")
    }

    // MARK: rotation and truncation

    /// Follows a rotation of the path; true when it moved on to the next file.
    private func checkRotation(_ state: inout SourceState) throws(SystemError) -> Bool {
        guard let position = state.file else { return false }
        let current = FileIdentity(path: path)
        if current == FileIdentity(position) {
            rotationSeen = false
            return false
        }
        if !rotationSeen { startFinishing() }
        // A writer that has not reopened yet still writes to the old file: stay with it while the
        // path names nothing, and until it has been quiet for a while once the path names a new file.
        guard current != nil else {
            activity = "following \(openedAs) until \(path) exists again"
            return false
        }
        let quiet = Date().timeIntervalSince(quietSince)
        guard quiet >= Double(rotateWaitSeconds) else {
            activity = "finishing \(openedAs): \(path) is a new file, read once this one is quiet for \(rotateWaitSeconds) s"
            return false
        }
        let size = try FileIO.size(fd, path: openedAs)
        while (state.file?.offset ?? size) < size {
            guard try readChunk(&state, size: size, final: true) > 0 else { break }
        }
        Log.info("source \(config.name): finished \(openedAs) at byte \(state.file?.offset ?? 0); moving on to \(path)")
        state.counters.rotations += 1
        if let previous { close(previous.fd) }
        previous = (fd, openedAs, size)
        fd = -1
        header = nil
        rotationSeen = false
        if let opened = try open(path) {
            use(opened, as: path)
            state.file = Self.fresh(opened.identity)
        } else {
            // Gone again already: the next file, whatever its inode, starts from its beginning.
            state.file = Self.fresh(FileIdentity(device: 0, inode: 0))
            activity = "waiting for \(path) to exist"
        }
        return true
    }

    /// The open file is an old one now: read it on until it is quiet, then move on.
    private func startFinishing() {
        rotationSeen = true
        quietSince = Date()
    }

    /// Reports bytes written to the file left at the last rotation after it was finished: they
    /// are not counted, and the operator should know (and make the writer reopen sooner).
    private func watchPrevious(_ state: inout SourceState) {
        guard let left = previous, let size = try? FileIO.size(left.fd, path: left.name), size > left.size else { return }
        state.counters.noteProblem(
            "\(size - left.size) bytes were written to \(left.name) after it was finished (rotated away); they are not counted: make the writer reopen its log sooner, or raise rotateWaitSeconds"
        )
        Log.warning("source \(config.name): \(state.counters.problems.last ?? "")")
        previous = (left.fd, left.name, size)
    }

    private func truncated(_ state: inout SourceState, size: Int) throws(SystemError) {
        guard let position = state.file else { return }
        state.counters.truncations += 1
        if let copy = try open(rotatedPath) {
            if copy.identity != FileIdentity(position), copy.size >= position.offset,
                (try? tailMatches(copy.fd, position, size: copy.size)) == true
            {
                Log.info(
                    "source \(config.name): \(path) was truncated; its copy \(rotatedPath) holds what was read so far, reading on there from byte \(position.offset)"
                )
                use(copy, as: rotatedPath)
                var moved = position
                moved.device = copy.identity.device
                moved.inode = copy.identity.inode
                state.file = moved
                startFinishing()
                activity = "finishing \(rotatedPath), the copy of the truncated \(path)"
                return
            }
            close(copy.fd)
        }
        state.counters.noteProblem(
            "\(openedAs) was truncated (to \(size) bytes) after byte \(position.offset) had been read; read again from its start. Lines written after the last read and before the truncation, if any, were not read"
        )
        Log.warning("source \(config.name): \(state.counters.problems.last ?? "")")
        state.file = Self.fresh(FileIdentity(position))
        header = nil
    }
}
