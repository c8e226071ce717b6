import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meter-ingest under bad input", .serialized)
struct BadInputTests {
    /// The server still answers a fresh client.
    static func stillServing(_ ingest: IngestProcess) throws {
        let status = try ingest.client().call("status")
        #expect(status["partitions"]?.arrayValue?.isEmpty == false)
    }

    static func expectErrorThenClose(_ client: UnixClient, code: String) throws {
        client.setReceiveTimeout(seconds: 10)
        let response = try client.receive()
        #expect(response["ok"] == .bool(false))
        #expect(response["error"]?["code"] == .string(code), "\(JSONWriter.string(response))")
    }

    @Test("a 4 GiB length prefix gets a bad_frame error and a close, and others are still served")
    func hugeLength() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let client = try ingest.client()
        try client.sendRaw([0xFF, 0xFF, 0xFF, 0xFF, 0x7B])
        try Self.expectErrorThenClose(client, code: "bad_frame")
        #expect(throws: UnixClient.Failure.self) { try client.receive() }
        try Self.stillServing(ingest)
    }

    @Test("garbage bytes, invalid UTF-8, deep JSON, wrong types and unknown ops get clear errors")
    func malformedPayloads() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let client = try ingest.client()
        let cases: [([UInt8], String)] = [
            (Array("not json at all".utf8), "bad_json"),
            ([0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x3A, 0x31, 0x7D], "bad_json"),
            (Array((String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)).utf8), "bad_json"),
            (Array("[1,2,3]".utf8), "bad_json"),
            (Array(#"{"op":42}"#.utf8), "bad_request"),
            (Array(#"{"op":"drop-tables"}"#.utf8), "unknown_op"),
            (Array(#"{"op":"append","events":"many"}"#.utf8), "bad_request"),
            (Array(#"{"op":"read","partition":99}"#.utf8), "not_found"),
            (Array(#"{"op":"read","partition":0,"max":-1}"#.utf8), "bad_request"),
        ]
        for (payload, code) in cases {
            try client.sendRaw(FrameEncoder.frame(payload))
            let response = try client.receive()
            #expect(
                response["error"]?["code"] == .string(code),
                "\(String(decoding: payload.prefix(40), as: UTF8.self)) → \(JSONWriter.string(response))")
        }
        let nan = try client.call(
            appendRequest([
                try JSONParser.parse(
                    #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"2022-01-01T00:00:00Z","meterName":"m","quantity":"NaN"}}"#
                )
            ]))
        #expect(nan["results"]?.arrayValue?.first?["error"]?["code"] == "invalid_event")
        try Self.stillServing(ingest)
    }

    @Test("a frame truncated by a disconnect and a zero-length frame do not disturb the server")
    func truncatedAndEmptyFrames() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        do {
            let client = try ingest.client()
            try client.sendRaw([0, 0, 1, 0] + Array(#"{"op":"sta"#.utf8))
        }
        let halfClosed = try ingest.client()
        try halfClosed.sendRaw([0, 0, 1, 0] + Array(#"{"op":"sta"#.utf8))
        halfClosed.shutdownWrite()
        try Self.expectErrorThenClose(halfClosed, code: "bad_frame")
        let empty = try ingest.client()
        try empty.sendRaw([0, 0, 0, 0])
        try Self.expectErrorThenClose(empty, code: "bad_frame")
        try Self.stillServing(ingest)
        let records = try readAll(ingest.client(), partitions: 4)
        #expect(records.allSatisfy { $0["event"]?["type"] == "Ping" })
    }

    @Test("10,000 idle connections do not stop the server from serving others")
    func manyIdleConnections() throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        try #require(limit.rlim_cur >= 10_500, "the test needs 10,500 file descriptors; the hard limit is \(limit.rlim_max)")
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        var idle: [UnixClient] = []
        for _ in 0..<10_000 { idle.append(try ingest.client()) }
        try Self.stillServing(ingest)
        let response = try ingest.client().call(appendRequest([usage("busy", "1")]))
        #expect(response["results"]?.arrayValue?.first?["status"] == "accepted")
        let status = try ingest.client().call("status")
        #expect((status["connections"]?.intValue ?? 0) >= 10_000)
        idle.removeAll()
    }

    @Test("more connections than the limit, none of them idle, are refused with an error frame, not a crash")
    func connectionLimit() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_MAX_CONNECTIONS": "5"])
        // Start-up probes close asynchronously: wait until only the asking connection is open.
        for _ in 0..<100 {
            if try ingest.client().call("status")["connections"]?.intValue == 1 { break }
            usleep(20_000)
        }
        usleep(50_000)
        // Streams are never idle, so none of them is closed to make room.
        var open: [UnixClient] = []
        for _ in 0..<5 {
            let client = try ingest.client()
            try client.send(Request(op: "follow", fields: JSONObject(["partition": 0])))
            _ = try client.receive()
            open.append(client)
        }
        let refused = try ingest.client()
        try Self.expectErrorThenClose(refused, code: "unavailable")
        open.removeAll()
        usleep(200_000)
        try Self.stillServing(ingest)
    }
}
