import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A real `meter-frontdoor` on an ephemeral loopback port (or the listen address given).
public final class FrontDoorProcess: ServerProcess {
    /// `http://127.0.0.1:PORT`, or `unix:PATH`.
    public private(set) var address = ""

    /// The TCP port it listens on (0 for a Unix socket).
    public var port: Int { Int(address.split(separator: ":").last ?? "") ?? 0 }

    public init(home: StackHome, environment: [String: String] = [:]) throws {
        let addressFile = home.path + "/run/frontdoor.addr"
        try? FileManager.default.removeItem(atPath: addressFile)
        var env = ["METERING_FRONTDOOR_LISTEN": "127.0.0.1:0"]
        for (key, value) in environment { env[key] = value }
        try super.init(executable: "meter-frontdoor", home: home, readySocket: nil, environment: env)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: addressFile, encoding: .utf8), text.hasSuffix("\n") {
                address = text.trimmingCharacters(in: .whitespacesAndNewlines)
                return
            }
            if !process.isRunning { throw StartFailure(message: "meter-frontdoor exited: \(readErrors())") }
            usleep(20_000)
        }
        throw StartFailure(message: "meter-frontdoor wrote no address in 20 s")
    }

    private var logged = ""

    /// What it has logged so far, read without waiting for it to exit (its refusals, for tests
    /// that check what an operator sees).
    public func log() -> String {
        let fd = errorPipe.fileHandleForReading.fileDescriptor
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count <= 0 { break }
            logged += String(decoding: buffer[0..<count], as: UTF8.self)
        }
        return logged
    }
}
