import Foundation
import StackTestSupport
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meter-frontdoor start-up and shutdown")
struct FrontDoorLifecycleTests {
    static func start(_ environment: [String: String], home: StackHome) throws -> Command.Outcome {
        var env = ProcessInfo.processInfo.environment
        env["METERING_HOME"] = home.path
        for (key, value) in environment { env[key] = value }
        return try Command.run(Binaries.path("meter-frontdoor"), [], environment: env)
    }

    @Test("bad settings and a damaged credential file fail at start-up with a message naming them")
    func badSettings() throws {
        let home = StackHome()
        let cases: [([String: String], Int32, String)] = [
            (["METERING_FRONTDOOR_LISTEN": "localhost"], 64, "METERING_FRONTDOOR_LISTEN"),
            (["METERING_FRONTDOOR_LISTEN": "example.com:80"], 64, "is not an IPv4 address"),
            (["METERING_FRONTDOOR_RATE": "-1"], 64, "METERING_FRONTDOOR_RATE"),
            (["METERING_FRONTDOOR_BURST": "0"], 64, "METERING_FRONTDOOR_BURST"),
            (["METERING_FRONTDOOR_MAX_SKEW": "1h"], 64, "METERING_FRONTDOOR_MAX_SKEW"),
            (["METERING_FRONTDOOR_MAX_BODY_BYTES": "10"], 64, "METERING_FRONTDOOR_MAX_BODY_BYTES"),
        ]
        for (environment, status, text) in cases {
            let outcome = try Self.start(environment, home: home)
            #expect(outcome.status == status, "\(environment)")
            #expect(outcome.errors.contains(text), "\(outcome.errors)")
        }
        let credentials = home.path + "/broken.json"
        try Data("{\"format\":1,\"credentials\":[{}]}".utf8).write(to: URL(fileURLWithPath: credentials))
        let broken = try Self.start(
            ["METERING_FRONTDOOR_CREDENTIALS": credentials, "METERING_FRONTDOOR_LISTEN": "127.0.0.1:0"], home: home)
        #expect(broken.status == 78)
        #expect(broken.errors.contains("METERING_FRONTDOOR_CREDENTIALS") && broken.errors.contains(credentials))
    }

    @Test("listens on a Unix socket when asked, and stops cleanly on SIGTERM, removing its address file")
    func unixSocketAndSIGTERM() throws {
        let home = StackHome()
        let socket = home.path + "/run/frontdoor.sock"
        let frontDoor = try FrontDoorProcess(home: home, environment: ["METERING_FRONTDOOR_LISTEN": "unix:" + socket])
        #expect(frontDoor.address == "unix:" + socket)
        let health = try Command.run(
            try SystemTools.path("curl"), ["--silent", "--unix-socket", socket, "http://localhost/v1/health"])
        #expect(health.output == #"{"status":"ok"}"#)
        var info = stat()
        #expect(stat(socket, &info) == 0 && info.st_mode & 0o777 == 0o660)
        frontDoor.kill(SIGTERM)
        #expect(frontDoor.process.terminationStatus == 0)
        #expect(frontDoor.log().contains("stopped cleanly"))
        #expect(!FileManager.default.fileExists(atPath: home.path + "/run/frontdoor.addr"))
    }
}
