import Daemon
import Foundation
import Metrics
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The libraries a daemon starts its servers with report what stops them; the executable's main
/// decides to exit. Both cases used to end the process from inside the library.
@Suite("Start-up failures thrown to the caller")
struct StartupFailureTests {
    /// A regular file: a socket path under it can never be created, whoever runs the test.
    static func blockingFile() -> String {
        let path = NSTemporaryDirectory() + "startup-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        return path
    }

    struct Silent: RequestHandler {
        func handle(_ request: Request, on connection: any Connection, done: @escaping @Sendable () -> Void) { done() }
    }

    @Test("a metrics address that cannot be served is thrown, naming the setting, and the process goes on")
    func metricsAddressThrows() throws {
        let file = Self.blockingFile()
        defer { unlink(file) }
        let address = try MetricsAddress.parse("unix:\(file)/metrics.sock")
        #expect {
            try MetricsEndpoint.serve(address, component: "meter-test", home: file + ".home", registry: MetricsRegistry())
        } throws: { error in
            "\(error)".contains("METERING_METRICS_ADDR")
        }
    }

    @Test("a socket path that cannot be listened on is thrown, naming the setting, and the process goes on")
    func socketThrows() {
        let file = Self.blockingFile()
        defer { unlink(file) }
        #expect {
            try UnixServer.oneSocket(
                component: "meter-test", name: "test", path: file + "/test.sock", setting: "METERING_TEST_SOCKET",
                maximumFrameBytes: 1 << 20, handler: Silent())
        } throws: { error in
            "\(error)".contains("cannot listen on \(file)/test.sock (METERING_TEST_SOCKET)")
        }
    }
}
