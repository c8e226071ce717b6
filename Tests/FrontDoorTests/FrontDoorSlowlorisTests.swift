import Foundation
import HTTP
import StackTestSupport
import Testing
import Wire

/// The front door while slow clients try to hold all its connections.
@Suite("meter-frontdoor against slowloris")
struct FrontDoorSlowlorisTests {
    @Test("while 300 slowloris connections trickle header bytes, a real request is answered within a second")
    func slowloris() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let frontDoor = try FrontDoorProcess(home: home)
        #expect(try TestHTTPClient(port: frontDoor.port).request("GET", "/v1/health").status == 200)
        let attack = Slowloris(port: frontDoor.port, connections: 300)
        try attack.start()
        defer { attack.stop() }
        for _ in 0..<5 {
            let started = Date()
            let response = try TestHTTPClient(port: frontDoor.port).request("GET", "/v1/health")
            let seconds = Date().timeIntervalSince(started)
            #expect(response.status == 200)
            #expect(seconds < 1, "answered after \(seconds) s")
            usleep(300_000)
        }
        #expect(frontDoor.process.isRunning)
        #expect(ingest.process.isRunning)
    }
}
