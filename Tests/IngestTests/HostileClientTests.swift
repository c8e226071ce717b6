import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A client that sends and never reads: a raw, non-blocking socket, so a server that stops
/// reading from it cannot block the test.
final class NonReader {
    let fd: Int32
    private var pending: [UInt8] = []

    init(path: String) throws {
        fd = try UnixSocket.connect(path: path)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(fd) }

    /// Queues `request` `count` times, pipelined.
    func queue(_ request: Request, times count: Int) {
        let frame = FrameEncoder.frame(request.bytes)
        for _ in 0..<count { pending += frame }
    }

    /// Sends what the socket takes now; true when everything queued is sent.
    @discardableResult
    func push() -> Bool {
        while !pending.isEmpty {
            let written = pending.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            guard written > 0 else { return false }
            pending.removeFirst(written)
        }
        return true
    }
}

/// Ingest against clients that do not play by the rules: they pipeline and never read, flood
/// the sockets with connections, or leave them idle, under a low open-file limit too.
@Suite("meter-ingest against hostile clients")
struct HostileClientTests {
    static let megabyte = 1 << 20

    /// A usage event of about 600 bytes as stored.
    static func paddedUsage(_ index: Int) -> JSONValue {
        .object(
            JSONObject([
                .init("type", "UsageReported"),
                .init(
                    "value",
                    [
                        "resourceId": .string("pad-\(index % 16)"), "timestamp": "2022-09-19T13:26:22Z", "meterName": "cpu", "quantity": 1,
                        "properties": ["pad": .string(String(repeating: "x", count: 400))],
                    ]),
                .init("id", .string("pad-\(index)")),
            ]))
    }

    static func fill(_ ingest: IngestProcess, records: Int) throws {
        let client = try ingest.client()
        for start in stride(from: 0, to: records, by: 500) {
            let response = try client.call(appendRequest((start..<min(records, start + 500)).map(paddedUsage)))
            #expect(response["results"]?.arrayValue?.allSatisfy { $0["status"] == "accepted" } == true)
        }
    }

    /// Keeps pushing the clients' requests for `seconds`, watching ingest's resident memory; stops
    /// early (and kills ingest) once it passes `bound`. The peak seen.
    static func press(_ ingest: IngestProcess, _ clients: [NonReader], seconds: Double, bound: Int) -> Int {
        let deadline = Date().addingTimeInterval(seconds)
        var peak = 0
        while Date() < deadline {
            for client in clients { client.push() }
            guard let memory = ingest.residentMemory else { break }
            peak = max(peak, memory.peak)
            if peak > bound {
                ingest.kill()
                break
            }
            usleep(50_000)
        }
        return peak
    }

    @Test("100 clients pipelining reads and never reading keep ingest's memory bounded, and others are still served")
    func pipeliningNonReaders() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        try Self.fill(ingest, records: 4000)
        let before = try #require(ingest.residentMemory).current
        var clients: [NonReader] = []
        for index in 0..<100 {
            let client = try NonReader(path: home.clientSocket)
            // Each answer is up to 1000 records of ~600 bytes: 200 of them would be 120 MB.
            client.queue(Request(op: "read", fields: JSONObject(["partition": .number(String(index % 4)), "max": 1000])), times: 200)
            clients.append(client)
        }
        let bound = before + 100 * 2 * Self.megabyte
        let peak = Self.press(ingest, clients, seconds: 8, bound: bound)
        print("ingest resident memory: \(before / Self.megabyte) MB before, peak \(peak / Self.megabyte) MB with 100 non-reading clients")
        #expect(peak <= bound, "peak \(peak / Self.megabyte) MB, bound \(bound / Self.megabyte) MB")
        #expect(ingest.process.isRunning)
        if ingest.process.isRunning {
            let status = try ingest.client().call("status")
            #expect((status["connections"]?.intValue ?? 0) >= 100)
            let appended = try ingest.client().call(appendRequest([usage("served", "1", id: "served-1")]))
            #expect(appended["results"]?.arrayValue?.first?["status"] == "accepted")
        }
        clients.removeAll()
    }

    @Test("status requests with a 1 MiB id, pipelined and never read, keep ingest's memory bounded")
    func hugeIdsNotRead() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let before = try #require(ingest.residentMemory).current
        let id = JSONValue.string(String(repeating: "i", count: Self.megabyte))
        var clients: [NonReader] = []
        for _ in 0..<20 {
            let client = try NonReader(path: home.clientSocket)
            // 64 answers of 1 MiB each per client if they were all built.
            client.queue(Request(op: "status", id: id), times: 64)
            clients.append(client)
        }
        // Per client: the output high-water mark, one answer, the queued requests and one frame.
        let bound = before + 20 * 6 * Self.megabyte
        let peak = Self.press(ingest, clients, seconds: 8, bound: bound)
        print("ingest resident memory: \(before / Self.megabyte) MB before, peak \(peak / Self.megabyte) MB with 20 clients of 1 MiB ids")
        #expect(peak <= bound, "peak \(peak / Self.megabyte) MB, bound \(bound / Self.megabyte) MB")
        #expect(ingest.process.isRunning)
        if ingest.process.isRunning { #expect(try ingest.admin().call("status")["partitions"] != nil) }
        clients.removeAll()
    }

    @Test("with the client socket full of busy connections, the admin socket still answers and appends")
    func adminBudget() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_MAX_CONNECTIONS": "20"])
        // Streams are never idle, so none of them is closed to make room.
        var streams: [UnixClient] = []
        for _ in 0..<20 {
            let client = try ingest.client()
            try client.send(Request(op: "follow", fields: JSONObject(["partition": 0])))
            _ = try client.receive()
            streams.append(client)
        }
        let refused = try ingest.client()
        refused.setReceiveTimeout(seconds: 10)
        #expect(try refused.receive()["error"]?["code"] == "unavailable")
        let admin = try ingest.admin()
        admin.setReceiveTimeout(seconds: 10)
        #expect(try admin.call("status")["partitions"] != nil)
        let appended = try admin.call(appendRequest([usage("by-admin", "1", id: "admin-1")]))
        #expect(appended["results"]?.arrayValue?.first?["status"] == "accepted")
        streams.removeAll()
    }

    @Test("under a low open-file limit a flood of connections never stops ingest: segments roll, the admin socket answers")
    func descriptorPressure() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_SEGMENT_BYTES": "65536"], openFileLimit: 256)
        let worker = try ingest.client()
        worker.setReceiveTimeout(seconds: 30)
        #expect(try worker.call("status")["partitions"] != nil)
        // More connections than the process has descriptors, all kept open.
        var flood: [Int32] = []
        defer { for fd in flood { close(fd) } }
        for _ in 0..<400 {
            guard let fd = try? UnixSocket.connect(path: home.clientSocket) else { break }
            flood.append(fd)
        }
        // About 2.4 MB of usage: many segment rolls in every partition while the flood holds.
        var accepted = 0
        for start in stride(from: 0, to: 4000, by: 200) {
            let response = try worker.call(appendRequest((start..<start + 200).map(Self.paddedUsage)))
            accepted += response["results"]?.arrayValue?.filter { $0["status"] == "accepted" }.count ?? 0
            for _ in 0..<20 {
                guard let fd = try? UnixSocket.connect(path: home.clientSocket) else { break }
                flood.append(fd)
            }
        }
        #expect(accepted == 4000)
        #expect(ingest.process.isRunning, "\(ingest.readErrors())")
        let admin = try ingest.admin()
        admin.setReceiveTimeout(seconds: 10)
        let status = try admin.call("status")
        let segments = status["partitions"]?.arrayValue?.compactMap { $0["segments"]?.intValue }.reduce(0, +) ?? 0
        #expect(segments > 8, "segments: \(segments)")
        #expect(try readAll(admin, partitions: 4).count >= 4000)
    }

    @Test("a client that reads none of its answers for the idle timeout is closed")
    func stalledReader() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_INGEST_IDLE_SECONDS": "1"])
        try Self.fill(ingest, records: 2000)
        let client = try NonReader(path: home.clientSocket)
        client.queue(Request(op: "read", fields: JSONObject(["partition": 0, "max": 1000])), times: 50)
        client.push()
        let deadline = Date().addingTimeInterval(20)
        var entry = pollfd(fd: client.fd, events: 0, revents: 0)
        while Date() < deadline {
            client.push()
            if poll(&entry, 1, 100) == 1 && entry.revents & Int16(POLLHUP) != 0 { break }
        }
        #expect(entry.revents & Int16(POLLHUP) != 0, "the server kept the connection of a client that reads nothing")
        #expect(try ingest.client().call("status")["connections"]?.intValue == 1)
    }

    @Test("a connection with nothing in flight is closed after the idle timeout, a stream is not, and UnixClient reconnects")
    func idleTimeout() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_INGEST_IDLE_SECONDS": "1"])
        let idle = try UnixSocket.connect(path: home.clientSocket)
        defer { close(idle) }
        let stream = try ingest.client()
        try stream.send(Request(op: "follow", fields: JSONObject(["partition": 0])))
        _ = try stream.receive()
        let reused = try ingest.client()
        _ = try reused.call("status")

        // The idle connection ends (the server closes it) within a few seconds.
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(idle, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var byte: UInt8 = 0
        let started = Date()
        #expect(recv(idle, &byte, 1, 0) == 0)
        #expect(Date().timeIntervalSince(started) < 15)

        // The stream still delivers (a clock move ticks every partition); the client whose
        // connection was closed just connects again.
        #expect(try ingest.admin().call("advance-clock", JSONObject(["to": "2024-01-01T00:00:00Z"]))["ticks"] != nil)
        #expect(try reused.call("status")["partitions"] != nil)
        stream.setReceiveTimeout(seconds: 20)
        var streamed = 0
        for _ in 0..<5 where streamed == 0 {
            streamed = try stream.receive()["records"]?.arrayValue?.count ?? 0
        }
        #expect(streamed > 0)
    }
}
