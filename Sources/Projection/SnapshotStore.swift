import Daemon
import EventStore
import Foundation
import SystemIO
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Snapshots of one partition's folded state: `<sequence, 20 digits>.snapshot` files, each a header
/// line `{"format":1,"partition":p,"sequence":n,"bytes":b,"crc32c":c}` and the state's JSON.
///
/// Written atomically (temporary file, fsync, rename, directory fsync). Loading takes the newest
/// snapshot whose checksum, partition and contents verify; a damaged one is moved aside and the
/// next older one (or a full replay) is used, so a bad snapshot costs time, never wrong numbers.
/// The aggregator and the query service keep theirs in separate directories.
public struct SnapshotStore: Sendable {
    public let directory: String
    public let partition: Int
    public let kept: Int

    /// The store of `partition` under `root` (`<root>/p<partition, 3 digits>`), keeping `kept` files.
    public init(root: String, partition: Int, kept: Int) {
        let digits = String(partition)
        self.directory = root + "/p" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
        self.partition = partition
        self.kept = kept
    }

    /// Why a snapshot could not be written or used.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    static func fileName(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".snapshot"
    }

    private func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".snapshot") && $0.count == 29 }
            .sorted()
    }

    /// Writes `body`, the state after applying records up to `sequence`, and prunes old snapshots.
    /// The header names the identity of the log the state was folded from.
    public func save(sequence: UInt64, body: JSONValue, log: String?) throws {
        try FileIO.makeDirectory(directory)
        let body = JSONWriter.bytes(body)
        let crc = body.withUnsafeBytes { CRC32C.checksum($0) }
        let logMember = log.map { #","log":"\#($0)""# } ?? ""
        let header =
            #"{"format":1,"partition":\#(partition),"sequence":\#(sequence),"bytes":\#(body.count),"crc32c":\#(crc)\#(logMember)}"#
        try FileIO.writeAtomically(Array(header.utf8) + [0x0A] + body, to: directory + "/" + Self.fileName(sequence))
        let all = names()
        for old in all.dropLast(kept) { unlink(directory + "/" + old) }
    }

    /// The newest snapshot that verifies and that `decode` accepts (given its body and the sequence
    /// in its header), or nil (replay from the start). Damaged files are moved aside.
    ///
    /// A snapshot of another log than `log` (when both are known) is unusable like a damaged one.
    /// It comes with the identity of the log it was folded from (nil in snapshots written before
    /// logs had identities).
    public func loadNewest<State>(log: String?, _ decode: (JSONValue, UInt64) throws -> State) -> (state: State, log: String?)? {
        for name in names().reversed() {
            let path = directory + "/" + name
            switch load(path, log: log, decode) {
            case .success(let restored):
                Log.info("partition \(partition): restored from snapshot \(path)")
                return restored
            case .failure(let failure):
                let aside = path + ".damaged"
                rename(path, aside)
                Log.warning("partition \(partition): snapshot \(path) is unusable (\(failure)); moved to \(aside), trying an older one")
            }
        }
        return nil
    }

    private func load<State>(_ path: String, log: String?, _ decode: (JSONValue, UInt64) throws -> State) -> Result<
        (state: State, log: String?), Failure
    > {
        guard let data = FileManager.default.contents(atPath: path) else { return .failure(Failure("cannot read")) }
        let bytes = Array(data)
        guard let newline = bytes.firstIndex(of: 0x0A) else { return .failure(Failure("no header line")) }
        guard let header = try? JSONParser.parse(bytes[..<newline]), header["format"]?.intValue == 1,
            let sequence = header["sequence"]?.intValue, sequence >= 0, let length = header["bytes"]?.intValue,
            let crc = header["crc32c"]?.intValue, header["partition"]?.intValue == partition
        else { return .failure(Failure("bad header")) }
        if let log, let written = header["log"]?.stringValue, written != log {
            return .failure(Failure("it was folded from log \(written), not from log \(log)"))
        }
        let body = Array(bytes[(newline + 1)...])
        guard body.count == length else { return .failure(Failure("\(body.count) bytes where \(length) were written")) }
        guard UInt32(truncatingIfNeeded: crc) == body.withUnsafeBytes({ CRC32C.checksum($0) }) else {
            return .failure(Failure("checksum mismatch"))
        }
        do {
            return .success((try decode(try JSONParser.parse(body, maximumDepth: 512), UInt64(sequence)), header["log"]?.stringValue))
        } catch {
            return .failure(Failure("\(error)"))
        }
    }
}
