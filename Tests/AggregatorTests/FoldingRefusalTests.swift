import Daemon
import Foundation
import Projection
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A refused fold is reported by the library and ended by the process's main loop: the library
/// (Projection) never exits, so it can be used, and tested, in a process that goes on.
@Suite("Folding refused for good")
struct FoldingRefusalTests {
    @Test("refusing to fold does not end the process by itself: it records the reason and requests the exit")
    func refusalDoesNotExit() async {
        await #expect(processExitsWith: .exitCode(0)) {
            FoldingRefusal.refuse("the log was replaced")
            try? await Task.sleep(for: .seconds(FoldingRefusal.linger + 1))
            guard FoldingRefusal.current == "the log was replaced",
                ServiceLifecycle.exitRequest?.status == FoldingRefusal.exitStatus,
                ServiceLifecycle.exitRequest?.linger == FoldingRefusal.linger
            else { exit(1) }
            exit(0)
        }
    }

    @Test("the main loop exits with status 78 after the linger, with the same last log line as before")
    func mainLoopExitsAfterRefusal() async throws {
        let result = try await #require(
            processExitsWith: .exitCode(78), observing: [\.standardErrorContent],
            performing: {
                FoldingRefusal.refuse("the log was replaced")
                ServiceLifecycle.runUntilTerminated(stopping: "nothing to stop") { exit(1) }
            })
        let errors = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(errors.contains("error: refusing to fold: the log was replaced"), "\(errors)")
        #expect(errors.contains("error: exiting (status 78) because folding was refused; see the error above"), "\(errors)")
    }

    @Test("a signal while the refusing process lingers still stops it in order, with status 0")
    func signalDuringLingerStopsInOrder() async {
        await #expect(processExitsWith: .exitCode(0)) {
            ServiceLifecycle.installTerminationHandling()
            FoldingRefusal.refuse("the log was replaced")
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 0.2)
                kill(getpid(), SIGTERM)
            }
            ServiceLifecycle.runUntilTerminated(stopping: "stopping") {}
        }
    }
}
