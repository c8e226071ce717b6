import Daemon
import Foundation
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Address and pid files: a process removes only what it wrote")
struct RunFileTests {
    static func directory() throws -> String {
        let path = "/tmp/runfile-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes `text` at `path` the way another process does: a new file renamed into place.
    static func writeAsAnotherProcess(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path + ".other"))
        #expect(rename(path + ".other", path) == 0)
    }

    @Test("an address file rewritten by another process, even with the same address, is left in place")
    func anotherWriterKeepsTheFile() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/emulator.addr"
        try ServiceLifecycle.writeAddressFile("http://127.0.0.1:8790", to: path)
        try Self.writeAsAnotherProcess("http://127.0.0.1:8790\n", to: path)
        ServiceLifecycle.removeAddressFile("http://127.0.0.1:8790", at: path)
        #expect(FileManager.default.fileExists(atPath: path))

        // One this process wrote itself goes.
        try ServiceLifecycle.writeAddressFile("http://127.0.0.1:8790", to: path)
        ServiceLifecycle.removeAddressFile("http://127.0.0.1:8790", at: path)
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a pid file is removed only while it is the one this process wrote; one it never wrote is never removed")
    func pidFiles() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/meter-ingest.pid"
        try Self.writeAsAnotherProcess("4242\n", to: path)
        ServiceLifecycle.removeRunFile(at: path)
        #expect(FileManager.default.fileExists(atPath: path))

        try ServiceLifecycle.writeRunFile("4243", to: path)
        #expect((try? String(contentsOfFile: path, encoding: .utf8)) == "4243\n")
        try Self.writeAsAnotherProcess("4243\n", to: path)
        ServiceLifecycle.removeRunFile(at: path)
        #expect(FileManager.default.fileExists(atPath: path))

        try ServiceLifecycle.writeRunFile("4244", to: path)
        ServiceLifecycle.removeRunFile(at: path)
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
