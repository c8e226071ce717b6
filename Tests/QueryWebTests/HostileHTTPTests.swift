import Foundation
import HTTP
import StackTestSupport
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// meter-query's HTTP side against clients that do not play by the rules.
@Suite("The run-rate page against hostile clients")
struct HostileHTTPTests {
    /// ingest and query with the page on an ephemeral port.
    final class Served {
        let home = StackHome()
        let ingest: IngestProcess
        let query: QueryProcess
        let port: Int

        init() throws {
            ingest = try IngestProcess(home: home)
            query = try QueryProcess(home: home, environment: ["METERING_QUERY_HTTP": "127.0.0.1:0"])
            port = try query.pagePort()
        }
    }

    /// `GET target` on a new connection: the response and how long it took.
    static func timed(_ port: Int, _ target: String) throws -> (status: Int, seconds: Double) {
        let started = Date()
        let response = try TestHTTPClient(port: port).request("GET", target)
        return (response.status, Date().timeIntervalSince(started))
    }

    @Test("while 300 slowloris connections trickle header bytes, a real request is answered within a second")
    func slowloris() throws {
        let served = try Served()
        #expect(try Self.timed(served.port, "/healthz").status == 200)
        let attack = Slowloris(port: served.port, connections: 300)
        try attack.start()
        defer { attack.stop() }
        for _ in 0..<5 {
            let (status, seconds) = try Self.timed(served.port, "/healthz")
            #expect(status == 200)
            #expect(seconds < 1, "answered after \(seconds) s")
            usleep(300_000)
        }
        #expect(served.query.process.isRunning)
    }

    @Test("a request path with a newline, a NUL, an escape or a line separator cannot forge a line in meter-query's log")
    func logInjection() throws {
        let served = try Served()
        let forged = "2026-01-01T00:00:00Z meter-query error: forged"
        let target = "/x%0a" + forged.replacingOccurrences(of: " ", with: "%20") + "%00%0d%1b[31m%e2%80%a8%c2%85end"
        #expect(try TestHTTPClient(port: served.port).request("GET", target).status == 404)
        served.query.kill(SIGTERM)
        let log = served.query.readErrors()
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(!lines.contains { $0.hasPrefix(forged) }, "\(log)")
        #expect(!log.utf8.contains(0), "a NUL reached the log")
        #expect(!log.utf8.contains(0x1B) && !log.utf8.contains(0x0D), "a control character reached the log")
        #expect(!log.contains("\u{2028}") && !log.contains("\u{85}"))
        let line = try #require(lines.first { $0.contains("GET /x") })
        #expect(line.contains(#"GET /x\n2026-01-01T00:00:00Z meter-query error: forged\u0000\r\u001b[31m\u2028\u0085end: 404"#), "\(line)")
    }
}
