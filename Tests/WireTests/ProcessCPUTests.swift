import Foundation
import SystemIO
import Testing

@Suite("A process's CPU time from /proc")
struct ProcessCPUTests {
    @Test("user and system ticks are read after the command, whatever spaces and parentheses it holds")
    func statText() {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let tail = "S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0"
        #expect(ProcessCPU.seconds(stat: "42 (meter-ingest) " + tail) == 300 / ticks)
        #expect(ProcessCPU.seconds(stat: "42 (a (b) c) d) " + tail) == 300 / ticks)
        #expect(ProcessCPU.seconds(stat: "42 (x) S 1 2") == nil)
        #expect(ProcessCPU.seconds(stat: "no parenthesis") == nil)
    }

    @Test("this process has used some CPU, more after some work; an absent process has none")
    func ownProcess() throws {
        let before = try #require(ProcessCPU.seconds(getpid()))
        var sum = 0.0
        let start = Date()
        while Date().timeIntervalSince(start) < 0.3 { sum += sin(sum + 1) }
        let after = try #require(ProcessCPU.seconds(getpid()))
        #expect(after > before, "\(sum)")
        #expect(ProcessCPU.seconds(Int32.max) == nil)
    }
}
