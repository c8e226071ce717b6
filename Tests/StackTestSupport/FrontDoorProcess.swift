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
}
