import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One file of a partition: a header, then records with consecutive sequence numbers from
/// `baseSequence`. Named `<baseSequence, 20 digits>.log` so a directory listing sorts them.
final class Segment {
    static let headerLength = 32
    static let magic = Array("MTRLOG01".utf8)
    /// A sparse index entry every this many records.
    static let indexInterval: UInt64 = 64

    let path: String
    let baseSequence: UInt64
    let fd: Int32
    /// Bytes in the file (header included); appends go here.
    var size: Int
    /// The sequence the next record appended to this segment gets.
    var nextSequence: UInt64
    var lastTime: Timestamp?
    /// (sequence, offset) of every `indexInterval`-th record, for reads from a sequence.
    var index: [(sequence: UInt64, offset: Int)] = []

    static func fileName(baseSequence: UInt64) -> String {
        let digits = String(baseSequence)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".log"
    }

    static func header(partition: Int, baseSequence: UInt64) -> [UInt8] {
        var header = magic
        RecordCodec.appendInteger(UInt32(1), to: &header)
        RecordCodec.appendInteger(UInt32(partition), to: &header)
        RecordCodec.appendInteger(baseSequence, to: &header)
        RecordCodec.appendInteger(CRC32C.mask(CRC32C.checksum(header)), to: &header)
        RecordCodec.appendInteger(UInt32(0), to: &header)
        return header
    }

    /// Creates a new, empty segment (header written and synced, directory synced).
    static func create(directory: String, partition: Int, baseSequence: UInt64) throws(SystemError) -> Segment {
        let path = directory + "/" + fileName(baseSequence: baseSequence)
        let fd = try FileIO.open(path, O_RDWR | O_CREAT | O_EXCL)
        let header = header(partition: partition, baseSequence: baseSequence)
        do {
            try FileIO.pwriteAll(fd, header, at: 0, path: path)
            try FileIO.fdatasync(fd, path: path)
            try FileIO.fsyncDirectory(directory)
        } catch {
            close(fd)
            // Never leave a half-made segment behind: the next roll must be able to create it.
            unlink(path)
            throw error
        }
        return Segment(path: path, baseSequence: baseSequence, fd: fd, size: headerLength)
    }

    init(path: String, baseSequence: UInt64, fd: Int32, size: Int) {
        self.path = path
        self.baseSequence = baseSequence
        self.fd = fd
        self.size = size
        self.nextSequence = baseSequence
    }

    deinit { close(fd) }

    func noteRecord(sequence: UInt64, offset: Int, time: Timestamp) {
        if (sequence - baseSequence) % Self.indexInterval == 0 { index.append((sequence, offset)) }
        nextSequence = sequence + 1
        lastTime = time
    }

    /// The offset to start scanning from to find `sequence` (a record at or before it).
    func scanStart(for sequence: UInt64) -> (sequence: UInt64, offset: Int) {
        var low = 0
        var high = index.count - 1
        var best: (sequence: UInt64, offset: Int) = (baseSequence, Self.headerLength)
        while low <= high {
            let middle = (low + high) / 2
            if index[middle].sequence <= sequence {
                best = index[middle]
                low = middle + 1
            } else {
                high = middle - 1
            }
        }
        return best
    }
}
