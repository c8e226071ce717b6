import Foundation
import StackTestSupport
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meterctl up", .serialized)
struct UpTests {
    static func pid(_ home: StackHome, _ name: String) -> Int32? {
        (try? String(contentsOfFile: home.path + "/run/\(name).pid", encoding: .utf8)).flatMap {
            Int32($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    static func alive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    static func waitUntil(_ timeout: Double = 30, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return false
    }

    @Test("it starts every process, restarts one killed with SIGKILL, and stops them all on Ctrl-C")
    func superviseAndStop() throws {
        let home = StackHome()
        let up = Process()
        up.executableURL = URL(fileURLWithPath: Binaries.path("meterctl"))
        up.arguments = ["up", "--home", home.path]
        var environment = ProcessInfo.processInfo.environment
        environment["METERING_CLOCK"] = "manual"
        up.environment = environment
        up.standardOutput = FileHandle.nullDevice
        up.standardError = FileHandle.nullDevice
        try up.run()
        defer { if up.isRunning { up.interrupt() } }
        let names = ["meter-ingest", "meter-aggregator", "meter-marketplace-emulator", "meter-submitter"]
        #expect(Self.waitUntil { names.allSatisfy { Self.pid(home, $0) != nil } })
        #expect(Self.waitUntil { (try? UnixClient(path: home.aggregatorSocket).call("status")) != nil })
        let first = try #require(Self.pid(home, "meter-aggregator"))
        kill(first, SIGKILL)
        #expect(Self.waitUntil { (Self.pid(home, "meter-aggregator") ?? first) != first })
        #expect(Self.waitUntil { (try? UnixClient(path: home.aggregatorSocket).call("status")) != nil })
        let pids = names.compactMap { Self.pid(home, $0) }
        #expect(pids.count == 4)
        up.interrupt()
        up.waitUntilExit()
        #expect(up.terminationStatus == 0)
        #expect(Self.waitUntil(5) { pids.allSatisfy { !Self.alive($0) } })
    }
}
