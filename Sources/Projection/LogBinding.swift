import Daemon
import EventStore
import Foundation
import Synchronization
import SystemIO
import Wire

/// Ties a folding process's state to the identity of the log it was folded from, compared with the
/// identity every `read`/`follow` answer of ingest carries: in `<root>/log-identity` for state kept
/// outside snapshots (the query's journals), written before anything folded is kept; or in memory,
/// from the restored snapshot's header, for state that lives only in snapshots (the aggregator's).
///
/// A state folded from another log (the log was replaced, or an operator accepted lost records
/// and the sequence numbers are being reused) must never be continued: its positions point at
/// other records. The process refuses instead, and `meterctl rebuild` folds from scratch.
public final class LogBinding: Sendable {
    /// The file that keeps the binding, nil for a binding held in memory.
    public let path: String?
    private let root: String?
    private let state: Mutex<State>

    private struct State {
        /// The identity of the log the state was folded from.
        var bound: String?
        /// Whether `path` holds `bound`.
        var written = false
    }

    /// A binding held in memory: to `identity` (a restored snapshot's), or to the first log seen.
    public init(identity: String?) {
        path = nil
        root = nil
        state = Mutex(State(bound: identity))
    }

    /// The binding kept under `root` (the process's data directory), read if it exists.
    public init(root: String) throws(Refusal) {
        self.root = root
        let path = root + "/log-identity"
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            state = Mutex(State())
            return
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Refusal("cannot read \(path); check its permissions")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.utf8.count == 32 else {
            throw Refusal("\(path) is damaged (it must hold a log identity of 32 hexadecimal digits); rebuild with `meterctl rebuild`")
        }
        state = Mutex(State(bound: text, written: true))
    }

    /// Binds to the log a restored state says it came from, when nothing else says so yet (state
    /// written before the binding file existed); `check` then holds the log to it.
    public func adopt(_ identity: String?) {
        state.withLock { state in if state.bound == nil { state.bound = identity } }
    }

    /// The identity of the log the state was folded from, nil before the first fold.
    public var identity: String? { state.withLock { $0.bound } }

    /// Checks that ingest's log is the one the state belongs to, binding to it (durably) when the
    /// state is new.
    public func check(_ ingestIdentity: String) throws(Refusal) {
        try state.withLock { (state) throws(Refusal) in
            if let bound = state.bound, bound != ingestIdentity {
                throw Refusal(
                    "the log was replaced: this state was folded from log \(bound), but ingest now serves log \(ingestIdentity) (its sequence numbers name other records). Folding stopped; rebuild this read model from the log with `meterctl rebuild` (docs/OPERATIONS.md)"
                )
            }
            if let root, let path, !state.written {
                do {
                    try FileIO.makeDirectory(root)
                    try FileIO.writeAtomically(Array((ingestIdentity + "\n").utf8), to: path)
                } catch {
                    throw Refusal("cannot write \(path): \(error)")
                }
                state.written = true
            }
            state.bound = ingestIdentity
        }
    }

    /// Why folding must stop for good: the state and the log disagree.
    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public var description: String
        public init(_ description: String) { self.description = description }
    }
}

/// What a folding process does when its state and ingest's log disagree: stop folding, say so at
/// error level and in `status` (and to systemd), and ask the process's main loop to exit non-zero
/// after a linger (`ServiceLifecycle.requestExit`), so the service shows as failed and is not
/// restarted into the same refusal. The library itself never ends the process.
public enum FoldingRefusal {
    private static let reason = Mutex<String?>(nil)

    /// The exit status of a refusing process: a configuration problem (systemd's
    /// `RestartPreventExitStatus=78` keeps it from restarting in a loop).
    public static let exitStatus: Int32 = 78
    /// How long `status` keeps answering with the reason before the process exits.
    public static let linger = 2.0

    /// The reason folding stopped, nil while it runs.
    public static var current: String? { reason.withLock { $0 } }

    /// Stops the process's folding for `message` (the first refusal wins): logs it at error
    /// level, tells systemd, and requests the exit (with `exitStatus`, after `linger` seconds).
    public static func refuse(_ message: String) {
        let first = reason.withLock { reason in
            guard reason == nil else { return false }
            reason = message
            return true
        }
        guard first else { return }
        Log.error("refusing to fold: \(message)")
        Systemd.notifyStatus("failed: \(message)")
        ServiceLifecycle.requestExit(
            .init(
                status: exitStatus, linger: linger,
                message: "exiting (status \(exitStatus)) because folding was refused; see the error above"))
    }
}

/// The lock a folding process holds on its state directory for as long as it runs, so
/// `meterctl rebuild` never moves a live process's state aside (and two processes never fold
/// into one directory).
public enum StateLock {
    /// Takes `<directory>/LOCK` (creating the directory) and keeps it until the process exits;
    /// the error names the process holding it.
    public static func take(_ directory: String, by component: String) throws(LogBinding.Refusal) {
        do {
            try FileIO.makeDirectory(directory)
        } catch {
            throw LogBinding.Refusal("cannot create \(directory): \(error)")
        }
        do {
            _ = try FileIO.lockExclusively(directory + "/LOCK")
        } catch {
            guard let owner = error.owner else { throw LogBinding.Refusal(error.description) }
            throw LogBinding.Refusal("\(directory) is in use by another process (pid \(owner)); only one \(component) may fold into it")
        }
    }
}
