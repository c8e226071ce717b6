import Foundation
import StackTestSupport
import SystemIO
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`.
final class NotifySocket {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8))
            raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw SystemError("bind", path) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Messages received until one contains `marker` (or the timeout).
    func waitFor(_ marker: String) -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return messages }
            let message = String(decoding: buffer[0..<count], as: UTF8.self)
            messages.append(message)
            if message.contains(marker) { return messages }
        }
    }
}

/// Starts `executable` under `systemd-socket-activate` with `arguments` (its `-l`/`--fdname`/`-E`
/// options), and makes the first connection to `socket`, which starts it.
func socketActivated(_ executable: String, _ arguments: [String], connectingTo socket: String) throws -> (Process, UnixClient) {
    let activator = "/usr/bin/systemd-socket-activate"
    try #require(FileManager.default.isExecutableFile(atPath: activator), "install Debian's systemd package (scripts/bootstrap does)")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: activator)
    process.arguments = arguments + [Binaries.path(executable)]
    process.standardError = FileHandle.nullDevice
    try process.run()
    var connection: UnixClient?
    for _ in 0..<200 {
        connection = try? UnixClient(path: socket)
        if connection != nil { break }
        usleep(20_000)
    }
    guard let first = connection else {
        process.terminate()
        process.waitUntilExit()
        throw SystemError("connect", socket)
    }
    first.setReceiveTimeout(seconds: 20)
    return (process, first)
}

@Suite("meter-ingest under systemd", .serialized)
struct SystemdTests {
    @Test("it reports READY=1 with a status line, and STOPPING=1 on SIGTERM, to NOTIFY_SOCKET")
    func notify() throws {
        let home = StackHome()
        let notify = try NotifySocket(path: home.path + "/notify.sock")
        let ingest = try IngestProcess(home: home, environment: ["NOTIFY_SOCKET": notify.path])
        let ready = notify.waitFor("READY=1")
        #expect(ready.contains { $0.contains("READY=1") && $0.contains("STATUS=serving 4 partitions") })
        ingest.kill(SIGTERM)
        #expect(notify.waitFor("STOPPING=1").contains { $0.contains("STOPPING=1") })
    }

    @Test("socket-activated by systemd-socket-activate, the first connection starts it on the named sockets")
    func socketActivation() throws {
        let home = StackHome()
        try FileManager.default.createDirectory(atPath: home.path + "/run", withIntermediateDirectories: true)
        let client = home.path + "/run/activated.sock"
        let admin = home.path + "/run/activated-admin.sock"
        let (process, first) = try socketActivated(
            "meter-ingest",
            ["-l", client, "-l", admin, "--fdname=client:admin", "-E", "METERING_HOME=\(home.path)", "-E", "METERING_CLOCK=manual"],
            connectingTo: client)
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let status = try first.call("status")
        #expect(status["clock"] == "manual")
        let appended = try first.call(appendRequest([usage("activated", "1")]))
        #expect(appended["results"]?.arrayValue?.first?["status"] == "accepted")
        let moved = try UnixClient(path: admin).call(Request(op: "advance-clock", fields: JSONObject(["to": "2023-01-01T00:00:00Z"])))
        #expect(moved["time"] == "2023-01-01T00:00:00Z")
        // The configured default paths were not bound: the inherited sockets were used.
        #expect(!FileManager.default.fileExists(atPath: home.clientSocket))
    }
}

@Suite("meter-aggregator and meter-query under systemd", .serialized)
struct FolderSystemdTests {
    @Test(
        "socket-activated by systemd-socket-activate, the first connection starts it on the named socket, and it folds ingest's log",
        arguments: [("meter-aggregator", "aggregator"), ("meter-query", "query")])
    func socketActivation(executable: String, name: String) throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        _ = try ingest.client().call(appendRequest([usage("activated", "1")]))
        let socket = home.path + "/run/activated-\(name).sock"
        let notify = try NotifySocket(path: home.path + "/notify.sock")
        let (process, first) = try socketActivated(
            executable, ["-l", socket, "--fdname=\(name)", "-E", "METERING_HOME=\(home.path)", "-E", "NOTIFY_SOCKET=\(notify.path)"],
            connectingTo: socket)
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let status = try first.call("status")
        #expect(status["partitions"]?.arrayValue?.count == 4)
        #expect(notify.waitFor("READY=1").contains { $0.contains("READY=1") })
        // The configured default path was not bound: the inherited socket was used.
        #expect(!FileManager.default.fileExists(atPath: home.path + "/run/\(name).sock"))
    }
}
