import CWireShims
import Dispatch
import Foundation
import Synchronization
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The start and the end every server process shares (swift-service-lifecycle's shape, without
/// the dependency): settings read and checked before anything starts, clean failures, and
/// SIGTERM/SIGINT turned into an orderly stop.
public enum ServiceLifecycle {
    /// Reads settings for `component`: prints `usage` and exits 0 for `--help` (the version for
    /// `--version`); exits 64 with a message naming the setting when one is bad (`METERING_LOG_LEVEL`
    /// and `METERING_LOG_FORMAT` included, which every process reads).
    public static func configure<Configuration>(
        component: String, usage: String, _ make: (inout Settings) throws(SettingsError) -> Configuration
    ) -> Configuration {
        Log.setComponent(component)
        installTerminationHandling()
        do {
            var settings = try Settings()
            answerHelpOrVersion(settings, component: component, usage: usage)
            try Log.configure(environment: settings.environment)
            return try make(&settings)
        } catch {
            fail("\(error)", code: 64)
        }
    }

    /// Prints the usage for `--help` or `-h`, or the version line for `--version`, and exits 0;
    /// returns when neither was asked for.
    public static func answerHelpOrVersion(_ settings: Settings, component: String, usage: String) {
        if settings.wantsVersion {
            print(Version.line(component))
            exit(0)
        }
        if settings.wantsHelp {
            print(usage + "\n\n--version prints the version and the log format version (\(Version.line(component))).")
            exit(0)
        }
    }

    /// Logs a start-up failure (also to systemd) and exits with `code` (78: configuration or
    /// environment, 64: usage).
    public static func fail(_ message: String, code: Int32 = 78) -> Never {
        Log.error(message)
        Systemd.notifyStatus("failed: \(message)")
        exit(code)
    }

    /// What `start` returns, or a failed start-up (`fail`, status 78) with the failure it throws:
    /// how a process's main starts what a library reports failures of.
    public static func starting<T>(_ start: () throws(StartupFailure) -> T) -> T {
        do {
            return try start()
        } catch {
            fail(error.message)
        }
    }

    /// Creates the directory that will hold a socket file (mode 0750).
    public static func makeSocketDirectory(for path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
    }

    /// Writes a server's address and a newline to `path` atomically (a reader never sees half of
    /// it), so tests and scripts find a server that listens on an ephemeral port.
    public static func writeAddressFile(_ address: String, to path: String) throws {
        try writeRunFile(address, to: path)
    }

    /// Announces an HTTP server's `address`: written to `path` (start-up fails naming the file
    /// when it cannot be) and printed on standard output at once, unbuffered, for whoever started
    /// the process.
    public static func publishAddress(_ address: String, to path: String) {
        do {
            try writeAddressFile(address, to: path)
        } catch {
            fail("cannot write \(path): \(error)")
        }
        let line = Array("listening on \(address)\n".utf8)
        _ = line.withUnsafeBytes { write(1, $0.baseAddress!, $0.count) }
    }

    /// Removes the address file at stop, so scripts do not find a dead server's address, unless
    /// it is not the file this process wrote (another process has written its own since, even
    /// with the same address).
    public static func removeAddressFile(_ address: String, at path: String) {
        guard (try? String(contentsOfFile: path, encoding: .utf8)) == address + "\n" else { return }
        removeRunFile(at: path)
    }

    /// The run files (addresses, pids) this process wrote, by path.
    private static let ownRunFiles = Mutex([String: RunFileIdentity]())

    /// A run file's device and inode. Every write of a run file makes a new file renamed into
    /// place, so a file written over it later, by whichever process, has another identity,
    /// whatever its text.
    public struct RunFileIdentity: Equatable, Sendable {
        var device: UInt64
        var inode: UInt64

        /// Of the file at `path`, or nil when there is none.
        public init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
        }
    }

    /// Writes `text` and a newline to the run file at `path` atomically (temporary file, rename),
    /// creating its directory, and remembers the file as this process's own.
    public static func writeRunFile(_ text: String, to path: String) throws {
        try makeSocketDirectory(for: path)
        let temporary = path + ".\(getpid()).tmp"
        try Data((text + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
        let written = RunFileIdentity(path: temporary)
        guard rename(temporary, path) == 0 else {
            let error = SystemError("rename", "\(temporary) to \(path)")
            unlink(temporary)
            throw error
        }
        ownRunFiles.withLock { $0[path] = written }
    }

    /// Removes the run file at `path` only if it is still the one this process wrote there: a
    /// process never deletes another's address or pid file.
    public static func removeRunFile(at path: String) {
        ownRunFiles.withLock { ownRunFiles in
            guard let own = ownRunFiles[path], RunFileIdentity(path: path) == own else { return }
            unlink(path)
            ownRunFiles[path] = nil
        }
    }

    /// Wakes `runUntilTerminated` for a signal or an exit request.
    private static let woken = DispatchSemaphore(value: 0)
    private static let stop = Mutex(StopRequests())
    private static let signalSources = Mutex<[any DispatchSourceSignal]>([])

    /// What has asked the process to stop: the first signal and the first exit request.
    private struct StopRequests {
        var signal: Int32?
        var exit: ExitRequest?
    }

    /// A library's request that the process end on its own (it never exits the process itself):
    /// the process's main loop, `runUntilTerminated`, keeps serving for `linger` seconds, logs
    /// `message` at error level and exits with `status`, without the orderly stop.
    public struct ExitRequest: Equatable, Sendable {
        /// The exit status.
        public var status: Int32
        /// How long the process goes on serving first (so `status` can say why).
        public var linger: Double
        /// The last line logged.
        public var message: String

        public init(status: Int32, linger: Double, message: String) {
            self.status = status
            self.linger = linger
            self.message = message
        }
    }

    /// Asks the process to exit as `request` says (the first request wins); a signal that arrives
    /// before it has lingered still stops the process in order, with status 0.
    public static func requestExit(_ request: ExitRequest) {
        let first = stop.withLock { stop in
            guard stop.exit == nil else { return false }
            stop.exit = request
            return true
        }
        if first { woken.signal() }
    }

    /// The exit requested so far, nil when none was.
    public static var exitRequest: ExitRequest? { stop.withLock { $0.exit } }

    /// Starts catching SIGTERM and SIGINT. Called first thing (by `configure`), before the process
    /// shows any sign of readiness: a signal sent as soon as it looks ready must never fall into
    /// the gap between ignoring the default action and the handler taking over.
    public static func installTerminationHandling() {
        signalSources.withLock { sources in
            guard sources.isEmpty else { return }
            signal(SIGTERM, SIG_IGN)
            signal(SIGINT, SIG_IGN)
            let queue = DispatchQueue(label: "signals")
            sources = [SIGTERM, SIGINT].map { number in
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler {
                    let first = stop.withLock { stop in
                        guard stop.signal == nil else { return false }
                        stop.signal = number
                        return true
                    }
                    if first { woken.signal() }
                }
                source.resume()
                return source
            }
        }
    }

    /// Hands heap memory that is free but still held (glibc keeps an arena per thread) back to
    /// the system, for a process whose start-up peak was far above its steady state.
    public static func releaseFreeMemory() { _ = cwire_release_free_memory() }

    /// Serves until SIGTERM or SIGINT, then runs `stop` (which must finish the work in hand),
    /// tells systemd, and exits 0. When a library requested an exit (`requestExit`) first, it
    /// exits as requested instead, unless a signal arrives while it lingers.
    public static func runUntilTerminated(stopping status: String, _ stop: @escaping @Sendable () -> Void) -> Never {
        installTerminationHandling()
        woken.wait()
        if self.stop.withLock({ $0.signal == nil }), let request = exitRequest {
            let signalled = woken.wait(timeout: .now() + request.linger) == .success
            if !signalled {
                Log.error(request.message)
                exit(request.status)
            }
        }
        Log.info("received signal \(self.stop.withLock { $0.signal ?? 0 }); shutting down")
        Systemd.notifyStopping(status: status)
        stop()
        Log.info("stopped cleanly")
        exit(0)
    }
}
