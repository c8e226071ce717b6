import Daemon
import Foundation
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A log of format 1 (the layout before the write-ahead log: `p000/<base sequence>.log` segments
/// per partition, `log.json` with only the partition count), read once to convert it.
///
/// Reading checks what the format-1 ingest checked at start-up: segment headers, consecutive
/// sequences, times that never go backwards, every record's CRC. A torn tail (a crash mid-write
/// in the last segment, nothing valid after it) ends the partition, as it did then; damage
/// anywhere else refuses, naming the file and the record.
struct LegacyLog {
    static let segmentHeaderLength = 32
    static let segmentMagic = Array("MTRLOG01".utf8)

    let directory: String
    let partitionCount: Int

    /// The header a format-1 segment of `partition` starting at `baseSequence` has.
    static func segmentHeader(partition: Int, baseSequence: UInt64) -> [UInt8] {
        var header = segmentMagic
        RecordCodec.appendInteger(UInt32(1), to: &header)
        RecordCodec.appendInteger(UInt32(partition), to: &header)
        RecordCodec.appendInteger(baseSequence, to: &header)
        RecordCodec.appendInteger(CRC32C.mask(CRC32C.checksum(header)), to: &header)
        RecordCodec.appendInteger(UInt32(0), to: &header)
        return header
    }

    /// One partition's records in order, read from its mapped segments.
    final class PartitionReader {
        let partition: Int
        private var segments: [(path: String, bytes: UnsafeRawBufferPointer)] = []
        private var current = 0
        private var offset = LegacyLog.segmentHeaderLength
        private var expected: UInt64 = 0
        private var previousTime = Int64.min
        /// The next record, read ahead so the converter can merge partitions by time.
        private(set) var head: LogRecord?

        init(partition: Int, directory: String) throws(EventLogError) {
            self.partition = partition
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".log") && $0.count == 24 }
                    .sorted()
            } catch {
                throw EventLogError("cannot list \(directory): \(error.localizedDescription)")
            }
            for name in names {
                let path = directory + "/" + name
                let fd: Int32
                let size: Int
                do {
                    fd = try FileIO.open(path, O_RDONLY)
                    size = try FileIO.size(fd, path: path)
                } catch {
                    throw EventLogError("cannot open \(path): \(error)")
                }
                defer { close(fd) }
                guard let base = UInt64(name.dropLast(4)) else { continue }
                guard size >= LegacyLog.segmentHeaderLength else {
                    if name == names.last { continue }  // a segment whose creation a crash cut short
                    throw EventLogError("partition \(partition): segment \(path) is shorter than its header")
                }
                guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
                    throw EventLogError("cannot map \(path): \(SystemError("mmap"))")
                }
                let bytes = UnsafeRawBufferPointer(start: mapped, count: size)
                guard Array(bytes[0..<LegacyLog.segmentHeaderLength]) == LegacyLog.segmentHeader(partition: partition, baseSequence: base)
                else {
                    munmap(mapped, size)
                    throw EventLogError("partition \(partition): segment \(path) has a damaged header")
                }
                segments.append((path, bytes))
            }
            try advance()
        }

        deinit {
            for segment in segments { munmap(UnsafeMutableRawPointer(mutating: segment.bytes.baseAddress), segment.bytes.count) }
        }

        /// Moves `head` to the next record (nil at the end).
        func advance() throws(EventLogError) {
            head = nil
            while current < segments.count {
                let (path, bytes) = segments[current]
                if offset >= bytes.count {
                    current += 1
                    offset = LegacyLog.segmentHeaderLength
                    continue
                }
                var problem: String
                switch LegacyRecordCodec.decode(bytes, at: offset, partition: partition) {
                case .record(let record, let length):
                    if record.sequence != expected {
                        problem = "sequence \(record.sequence) where \(expected) was expected"
                    } else if record.enqueuedTime.microseconds < previousTime {
                        problem = "enqueued time goes backwards"
                    } else {
                        offset += length
                        expected += 1
                        previousTime = record.enqueuedTime.microseconds
                        head = record
                        return
                    }
                case .incomplete: problem = "incomplete record"
                case .invalid(let reason): problem = reason
                }
                let isLast = current == segments.count - 1
                if isLast && !LegacyLog.containsValidRecord(bytes, after: offset, expecting: expected, partition: partition) {
                    Log.warning(
                        "partition \(partition): the format-1 log ends in a torn write at byte \(offset) of \(path) (\(problem)); it is not converted"
                    )
                    current = segments.count
                    return
                }
                throw EventLogError(
                    "partition \(partition): format-1 segment \(path) is corrupt at byte \(offset) (record \(expected)): \(problem), and valid records follow. Restore the segment from a backup before the log is converted."
                )
            }
        }
    }

    /// Whether a valid record with a sequence at or after `expecting` starts anywhere after `offset`.
    static func containsValidRecord(_ bytes: UnsafeRawBufferPointer, after offset: Int, expecting: UInt64, partition: Int) -> Bool {
        var candidate = offset + 1
        while candidate + LegacyRecordCodec.fixedHeaderLength <= bytes.count {
            let sequence = bytes.loadUnaligned(fromByteOffset: candidate + 8, as: UInt64.self).littleEndian
            if sequence >= expecting && sequence < expecting &+ 10_000_000,
                case .record = LegacyRecordCodec.decode(bytes, at: candidate, partition: partition)
            {
                return true
            }
            candidate += 1
        }
        return false
    }

    /// The partitions' readers.
    func readers() throws(EventLogError) -> [PartitionReader] {
        var readers: [PartitionReader] = []
        for partition in 0..<partitionCount {
            let path = directory + "/" + EventLog.partitionDirectoryName(partition)
            guard FileManager.default.fileExists(atPath: path) else {
                throw EventLogError("the format-1 log at \(directory) has \(partitionCount) partitions, but \(path) is missing")
            }
            readers.append(try PartitionReader(partition: partition, directory: path))
        }
        return readers
    }
}
