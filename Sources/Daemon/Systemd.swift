import CSystemd
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The two pieces of systemd integration every process uses: inherited listening sockets
/// (`LISTEN_FDS`/`LISTEN_FDNAMES`) and readiness notification (`NOTIFY_SOCKET`).
public enum Systemd {
    /// A listening socket passed by the service manager, with its `FileDescriptorName=`.
    public struct InheritedSocket: Sendable {
        public var descriptor: Int32
        public var name: String
    }

    /// The sockets systemd passed to this process (empty when started by hand). Clears the
    /// `LISTEN_*` variables so child processes do not inherit them.
    /// The corresponding C function is `sd_listen_fds_with_names`.
    public static func inheritedSockets() -> [InheritedSocket] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer { free(names) }
        var sockets: [InheritedSocket] = []
        for index in 0..<Int(count) {
            let descriptor = SD_LISTEN_FDS_START + Int32(index)
            var name = "unknown"
            if let names, let cName = names[index] {
                name = String(cString: cName)
                free(cName)
            }
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            sockets.append(InheritedSocket(descriptor: descriptor, name: name))
        }
        return sockets
    }

    /// Sends a state change (`READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`) to the service
    /// manager when `NOTIFY_SOCKET` is set; does nothing otherwise.
    /// The corresponding C function is `sd_notify`.
    public static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// `READY=1` with a status line.
    public static func notifyReady(status: String) { notify("READY=1\nSTATUS=\(status)") }

    /// A status line shown by `systemctl status`.
    public static func notifyStatus(_ status: String) { notify("STATUS=\(status)") }

    /// `STOPPING=1` with a status line.
    public static func notifyStopping(status: String) { notify("STOPPING=1\nSTATUS=\(status)") }
}
