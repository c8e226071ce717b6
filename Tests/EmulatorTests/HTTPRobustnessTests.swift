import Dispatch
import Foundation
import HTTP
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The HTTP layer: keep-alive, limits, and malformed input of every kind.
@Suite("The marketplace emulator's HTTP handling")
struct HTTPRobustnessTests {
    /// Sends `bytes` on a new connection, ends the sending side, and returns everything the
    /// emulator answered before closing.
    static func exchange(_ port: Int, _ bytes: [UInt8]) throws -> String {
        let client = try TestHTTPClient(port: port)
        client.send(bytes)
        client.finishSending()
        return String(decoding: client.readToEnd(), as: UTF8.self)
    }

    static func status(of answer: String) -> Int? {
        let parts = answer.split(separator: " ", maxSplits: 2)
        return parts.count >= 2 && parts[0] == "HTTP/1.1" ? Int(parts[1]) : nil
    }

    @Test("garbage HTTP gets a clear 4xx or 5xx answer and never stops the emulator")
    func garbage() throws {
        let emulator = try Emulator(arguments: ["--clock", "manual", "--no-auth"])
        let port = emulator.port
        let api = "POST /api/batchUsageEvent?api-version=2018-08-31 HTTP/1.1\r\n"
        let cases: [(String, Int)] = [
            ("GARBAGE\r\n\r\n", 400),
            ("\u{1}\u{2}\u{3}\u{7F} nonsense\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 505),
            ("GET / HTTX/1.1\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\n\r\n", 400),
            ("GET /emulator/stats HTTP/1.1\r\nBad Header\r\n\r\n", 400),
            ("GET /emulator/stats HTTP/1.1\r\nName : value\r\n\r\n", 400),
            ("GET /emulator/stats HTTP/1.1\r\n folded\r\n\r\n", 400),
            ("GET /emulator/stats HTTP/1.1\r\nX: a\u{0}b\r\n\r\n", 400),
            ("GET /%zz HTTP/1.1\r\n\r\n", 400),
            ("GET /?a=%e2%82 HTTP/1.1\r\n\r\n", 400),
            (api + "Content-Length: abc\r\n\r\n", 400),
            (api + "Content-Length: -1\r\n\r\n", 400),
            (api + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
            (api + "Content-Length: 99999999999999999999999999\r\n\r\n", 413),
            (api + "Content-Length: 2000000\r\n\r\n", 413),
            (api + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
            (api + "Expect: the-unexpected\r\nContent-Length: 2\r\n\r\n{}", 417),
            ("GET /emulator/stats HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 20_000) + "\r\n\r\n", 431),
            ("GET /emulator/stats HTTP/1.1\r\n" + String(repeating: "X-Many: 1\r\n", count: 150) + "\r\n", 431),
            (String(repeating: "A", count: 20_000), 400),
            ("GET /emulator/stats" + String(repeating: "A", count: 20_000), 431),
            (api + "Content-Length: 10\r\n\r\n{\"request\":", 400),
            (api + "Content-Length: 12\r\n\r\n{\"request\":1", 400),
            ("GET /nowhere HTTP/1.1\r\n\r\n", 404),
            ("DELETE /emulator/ledger HTTP/1.1\r\n\r\n", 405),
        ]
        for (request, expected) in cases {
            let answer = try Self.exchange(port, Array(request.utf8))
            #expect(
                Self.status(of: answer) == expected, "\(request.prefix(80).debugDescription) got \(answer.prefix(200).debugDescription)")
            if expected != 404 && expected != 405 {
                #expect(answer.contains("\"message\""), "\(request.prefix(80).debugDescription)")
            }
        }
        // Cut off halfway: nothing to answer, nothing broken.
        for partial in ["GET /emulator/st", "GET /emulator/stats HTTP/1.1\r\nHost: x", api + "Content-Length: 100\r\n\r\n{\"req"] {
            _ = try Self.exchange(port, Array(partial.utf8))
        }
        // Invalid UTF-8 and raw binary.
        _ = try Self.exchange(port, [0xFF, 0xFE, 0x00, 0x20, 0x0A, 0x0D, 0x0A])
        _ = try Self.exchange(port, Array("GET /\u{FF} HTTP/1.1\r\n\r\n".utf8))

        // Random bytes and mutations of a valid request, from several connections at once.
        let valid = Array((api + "Content-Length: 27\r\n\r\n{\"request\":[{\"quantity\":1}]}").utf8)
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            var generator = SplitMix64(seed: UInt64(worker + 1))
            for round in 0..<40 {
                var bytes: [UInt8]
                if round % 2 == 0 {
                    bytes = (0..<Int.random(in: 1...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                } else {
                    bytes = valid
                    for _ in 0..<Int.random(in: 1...6, using: &generator) {
                        bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                    }
                }
                _ = try? Self.exchange(port, bytes)
            }
        }
        #expect(emulator.isRunning, "\(emulator.log)")
        let stats = try emulator.call("GET", "/emulator/stats")
        #expect(stats.status == 200)
        #expect((stats.json?["refusedRequests"]?.intValue ?? 0) >= 20)
        try emulator.setClock("2024-01-31T10:00:00Z")
        #expect(try emulator.batch([usageItem()], token: nil).json?["result"]?.arrayValue?.first?["status"] == "Accepted")
        #expect(try emulator.ledger().count == 1)
    }

    @Test("a connection stays open for many requests, pipelined ones are answered in order, and the request ids are echoed")
    func keepAlive() throws {
        let emulator = try Emulator(arguments: ["--clock", "manual", "--no-auth"])
        try emulator.setClock("2024-01-31T10:00:00Z")
        let client = try emulator.connect()
        for index in 0..<3 {
            let response = try client.request(
                "POST", "/api/batchUsageEvent?api-version=2018-08-31",
                headers: ["x-ms-requestid": "request-\(index)", "x-ms-correlationid": "correlation-\(index)"],
                body: JSONWriter.bytes(["request": [usageItem("res-\(index)")]]))
            #expect(response.status == 200)
            #expect(response.headers["connection"] == "keep-alive")
            #expect(response.headers["x-ms-requestid"] == "request-\(index)")
            #expect(response.headers["x-ms-correlationid"] == "correlation-\(index)")
        }
        let generated = try client.request("GET", "/api/usageEvents")
        #expect(UUID(uuidString: generated.headers["x-ms-requestid"] ?? "") != nil)
        client.send("GET /emulator/clock HTTP/1.1\r\n\r\nGET /emulator/ledger HTTP/1.1\r\n\r\nGET /emulator/nothing HTTP/1.1\r\n\r\n")
        #expect(try client.receive().json?["time"] == "2024-01-31T10:00:00Z")
        #expect(try client.receive().json?.arrayValue?.count == 3)
        #expect(try client.receive().status == 404)
        let closing = try client.request("GET", "/emulator/stats", headers: ["Connection": "close"])
        #expect(closing.headers["connection"] == "close")
        #expect(client.isClosedByServer())

        let old = try emulator.connect()
        old.send("GET /emulator/clock HTTP/1.0\r\n\r\n")
        #expect(try old.receive().headers["connection"] == "close")
        #expect(old.isClosedByServer())
    }

    @Test("Expect: 100-continue is answered before the body, and absolute request targets are understood")
    func expectContinueAndAbsoluteTargets() throws {
        let emulator = try Emulator(arguments: ["--clock", "manual", "--no-auth"])
        try emulator.setClock("2024-01-31T10:00:00Z")
        let client = try emulator.connect()
        let body = JSONWriter.bytes(["request": [usageItem()]])
        client.send(
            "POST /api/batchUsageEvent?api-version=2018-08-31 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: \(body.count)\r\n\r\n")
        #expect(try client.receive(skippingContinue: false).status == 100)
        client.send(body)
        #expect(try client.receive().status == 200)
        let absolute = try client.request("GET", "http://127.0.0.1:\(emulator.port)/emulator/ledger")
        #expect(absolute.json?.arrayValue?.count == 1)
    }

    @Test("with every connection in a request, a new client gets 503 with Retry-After, and is served once one ends")
    func connectionLimit() throws {
        let emulator = try Emulator(arguments: ["--clock", "manual", "--no-auth", "--max-connections", "2"])
        // Set up on a connection the server closes itself: once it has, its slot is free.
        let setup = try emulator.connect()
        let clock = JSONWriter.bytes(["time": "2024-01-31T10:00:00Z"])
        #expect(try setup.request("POST", "/emulator/clock", body: clock).status == 200)
        let faults = JSONWriter.bytes(["delayMs": 4000])
        #expect(try setup.request("POST", "/emulator/faults", headers: ["Connection": "close"], body: faults).status == 200)
        #expect(setup.isClosedByServer())
        let body = JSONWriter.bytes(["request": [usageItem()]])
        let head = "POST /api/batchUsageEvent?api-version=2018-08-31 HTTP/1.1\r\nContent-Length: \(body.count)\r\n\r\n"
        var held = [try emulator.connect(), try emulator.connect()]
        for client in held { client.send(Array(head.utf8) + body) }
        // Both requests are read at once and then sit in the handler for the delay.
        usleep(500_000)
        let refused = try emulator.connect().receive()
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] == "1")
        for client in held { #expect(try client.receive().status == 200) }
        held.removeAll()
        // Once a connection is back from its request (or closed), the next client is served.
        let deadline = Date().addingTimeInterval(10)
        var status = 0
        while Date() < deadline {
            status = (try? emulator.call("GET", "/emulator/clock").status) ?? 0
            if status == 200 { break }
            usleep(20_000)
        }
        #expect(status == 200)
    }

    @Test("when every connection is taken, the one that waited longest for its client is closed to admit a new one")
    func evictsTheLongestWaiting() throws {
        let emulator = try Emulator(arguments: ["--clock", "manual", "--no-auth", "--max-connections", "2"])
        let idle = try emulator.connect()
        #expect(try idle.request("GET", "/emulator/clock").status == 200)
        let slow = try emulator.connect()
        slow.send("GET /emulator/clock HTTP/1.1\r\nX-Slow: ")
        // Full: the idle keep-alive connection (waiting longest) makes room, then the slow one.
        let third = try emulator.connect()
        #expect(try third.request("GET", "/emulator/clock").status == 200)
        #expect(idle.isClosedByServer())
        let fourth = try emulator.connect()
        #expect(try fourth.request("GET", "/emulator/clock").status == 200)
        #expect(slow.isClosedByServer())
    }

    @Test("Foundation's URLSession, the submitter's HTTP client, talks to it")
    func urlSession() throws {
        let emulator = try Emulator(arguments: ["--clock", "manual", "--no-auth"])
        try emulator.setClock("2024-01-31T10:00:00Z")
        let items = (0..<25).map { usageItem("res-\($0)", quantity: "1.000000000000000001") }
        let (status, json) = try TestHTTP.call(
            "POST", emulator.baseURL + "/api/batchUsageEvent?api-version=2018-08-31", body: ["request": .array(items)])
        #expect(status == 200)
        #expect(json?["result"]?.arrayValue?.allSatisfy { $0["status"] == "Accepted" } == true)
        let (ledgerStatus, ledger) = try TestHTTP.call("GET", emulator.baseURL + "/emulator/ledger")
        #expect(ledgerStatus == 200)
        #expect(ledger?.arrayValue?.count == 25)
        #expect(ledger?.arrayValue?.first?["quantity"] == .number("1.000000000000000001"))
    }
}
