import Daemon
import EventStore
import Foundation
import SystemIO
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Snapshots of one partition's folded state: `<sequence, 20 digits>.snapshot` files, each a header
/// line `{"format":1,"partition":p,"sequence":n,"bytes":b,"crc32c":c}` and the state's JSON, or
/// with `"format":2` a body of bytes in the folder's own encoding (the query service's views).
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

    /// A snapshot's body as it is handed to the decoder: the state's JSON (header format 1), or the
    /// bytes written by `save(sequence:bytes:log:)` (header format 2).
    public enum Body {
        case json(JSONValue)
        case bytes([UInt8])
    }

    /// Writes `body`, the state after applying records up to `sequence`, and prunes old snapshots.
    /// The header names the identity of the log the state was folded from.
    public func save(sequence: UInt64, body: JSONValue, log: String?) throws {
        try save(sequence: sequence, format: 1, body: JSONWriter.bytes(body), log: log)
    }

    /// Writes `bytes`, the state after applying records up to `sequence` in an encoding of the
    /// caller's, and prunes old snapshots; `loadNewestBody` hands them back as they are.
    public func save(sequence: UInt64, bytes: [UInt8], log: String?) throws {
        try save(sequence: sequence, format: 2, body: bytes, log: log)
    }

    private func save(sequence: UInt64, format: Int, body: [UInt8], log: String?) throws {
        try FileIO.makeDirectory(directory)
        let crc = body.withUnsafeBytes { CRC32C.checksum($0) }
        let logMember = log.map { #","log":"\#($0)""# } ?? ""
        let header =
            #"{"format":\#(format),"partition":\#(partition),"sequence":\#(sequence),"bytes":\#(body.count),"crc32c":\#(crc)\#(logMember)}"#
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
        loadNewestBody(log: log) { body, sequence in
            guard case .json(let json) = body else { throw Failure("a body of bytes where JSON was expected") }
            return try decode(json, sequence)
        }
    }

    /// `loadNewest`, for a folder that holds snapshots of bytes (`save(sequence:bytes:log:)`),
    /// perhaps beside JSON ones written before: `decode` gets either body.
    public func loadNewestBody<State>(log: String?, _ decode: (Body, UInt64) throws -> State) -> (state: State, log: String?)? {
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

    private func load<State>(_ path: String, log: String?, _ decode: (Body, UInt64) throws -> State) -> Result<
        (state: State, log: String?), Failure
    > {
        guard let data = FileManager.default.contents(atPath: path) else { return .failure(Failure("cannot read")) }
        let bytes = Array(data)
        guard let newline = bytes.firstIndex(of: 0x0A) else { return .failure(Failure("no header line")) }
        guard let header = try? JSONParser.parse(bytes[..<newline]), let format = header["format"]?.intValue, format == 1 || format == 2,
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
            let decoded = format == 1 ? Body.json(try JSONParser.parse(body, maximumDepth: 512)) : Body.bytes(body)
            return .success((try decode(decoded, UInt64(sequence)), header["log"]?.stringValue))
        } catch {
            return .failure(Failure("\(error)"))
        }
    }
}
