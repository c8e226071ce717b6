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
        let names = ["meter-ingest", "meter-aggregator", "meter-query", "meter-marketplace-emulator", "meter-submitter"]
        #expect(Self.waitUntil { names.allSatisfy { Self.pid(home, $0) != nil } })
        #expect(Self.waitUntil { (try? UnixClient(path: home.aggregatorSocket).call("status")) != nil })
        let first = try #require(Self.pid(home, "meter-aggregator"))
        kill(first, SIGKILL)
        #expect(Self.waitUntil { (Self.pid(home, "meter-aggregator") ?? first) != first })
        #expect(Self.waitUntil { (try? UnixClient(path: home.aggregatorSocket).call("status")) != nil })
        let pids = names.compactMap { Self.pid(home, $0) }
        #expect(pids.count == 5)
        up.interrupt()
        up.waitUntilExit()
        #expect(up.terminationStatus == 0)
        #expect(Self.waitUntil(5) { pids.allSatisfy { !Self.alive($0) } })
    }

    @Test("meterctl demo runs the realistic scenario and its books balance: everything reported, nothing pending or refused")
    func demo() throws {
        let home = StackHome()
        let demo = Process()
        demo.executableURL = URL(fileURLWithPath: Binaries.path("meterctl"))
        demo.arguments = ["demo", "--home", home.path, "--days", "8"]
        let output = Pipe()
        demo.standardOutput = output
        demo.standardError = FileHandle.nullDevice
        try demo.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        demo.waitUntilExit()
        #expect(demo.terminationStatus == 0)
        #expect(text.contains("pending 0, conflicts 0, rejected 0"), "\(text.suffix(600))")
        #expect(text.contains("== What the (emulated) marketplace accepted"))
        #expect(text.contains("The query service's ledger agrees with the marketplace's accepted totals for every dimension."))
        #expect(text.contains("== Each subscription's run-rate now"))
        let summary = try #require(text.split(separator: "\n").first { $0.contains("usage items accepted by the marketplace") })
        // "N usage events sent; M usage items accepted by the marketplace, M settled in the aggregator's books; ..."
        let numbers = summary.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .punctuationCharacters)) }
        #expect(numbers.count >= 3 && numbers[1] == numbers[2] && numbers[1] > 0, "\(summary)")
    }
}
