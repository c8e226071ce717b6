import NATS
import Testing

@Suite("NATS parser")
struct NATSParserTests {
    /// A server's output: INFO, a PING, a message, a message with headers and a status, an
    /// error, +OK and PONG, in one stream of bytes.
    static let stream = Array(
        ("INFO {\"server_id\":\"S1\",\"version\":\"2.9.10\",\"headers\":true,\"max_payload\":1048576,\"connect_urls\":[\"127.0.0.1:4223\"]}\r\n"
            + "PING\r\n" + "MSG metering.records 7 _INBOX.x.1 5\r\nhello\r\n"
            + "HMSG _INBOX.x.2 1 34 39\r\nNATS/1.0 404 Message Not Found\r\n\r\nabcde\r\n"
            + "hmsg a.b 2 reply.to 30 32\r\nNATS/1.0\r\nNats-Msg-Id: g.1\r\n\r\n{}\r\n" + "-ERR 'Authorization Violation'\r\n"
            + "+OK\r\nPONG\r\n" + "MSG empty 3 0\r\n\r\n").utf8)

    static let expected: [NATSServerOperation] = {
        var notFound = NATSHeaders()
        notFound.status = 404
        notFound.statusDescription = "Message Not Found"
        return [
            .info(
                Array(
                    "{\"server_id\":\"S1\",\"version\":\"2.9.10\",\"headers\":true,\"max_payload\":1048576,\"connect_urls\":[\"127.0.0.1:4223\"]}"
                        .utf8)),
            .ping,
            .message(NATSMessage(subject: "metering.records", sid: 7, replyTo: "_INBOX.x.1", payload: Array("hello".utf8))),
            .message(NATSMessage(subject: "_INBOX.x.2", sid: 1, headers: notFound, payload: Array("abcde".utf8))),
            .message(
                NATSMessage(
                    subject: "a.b", sid: 2, replyTo: "reply.to", headers: NATSHeaders([("Nats-Msg-Id", "g.1")]), payload: Array("{}".utf8))),
            .error("Authorization Violation"), .ok, .pong,
            .message(NATSMessage(subject: "empty", sid: 3, payload: [])),
        ]
    }()

    private func parse(_ reads: [ArraySlice<UInt8>]) throws -> [NATSServerOperation] {
        var parser = NATSParser()
        var operations: [NATSServerOperation] = []
        for read in reads { operations += try parser.parse(read) }
        return operations
    }

    @Test("everything in one read decodes to the server's operations in order")
    func wholeStream() throws {
        #expect(try parse([Self.stream[...]]) == Self.expected)
    }

    @Test("bytes dripped one by one decode to the same operations")
    func dripped() throws {
        #expect(try parse(Self.stream.indices.map { Self.stream[$0..<($0 + 1)] }) == Self.expected)
    }

    @Test("every split into two reads decodes to the same operations")
    func everySplit() throws {
        for split in 0...Self.stream.count {
            #expect(try parse([Self.stream[..<split], Self.stream[split...]]) == Self.expected, "split at \(split)")
        }
    }

    @Test("many messages in one read all come out")
    func manyPerRead() throws {
        let one = Array("MSG s 1 3\r\nabc\r\n".utf8)
        let many = Array([[UInt8]](repeating: one, count: 10_000).joined())
        let operations = try parse([many[...]])
        #expect(operations.count == 10_000)
        #expect(operations.allSatisfy { $0 == .message(NATSMessage(subject: "s", sid: 1, payload: Array("abc".utf8))) })
    }

    @Test("a payload announced above the limit is refused before it arrives")
    func oversizedPayload() {
        var parser = NATSParser(maximumPayload: 1024)
        #expect(throws: NATSProtocolError.self) { try parser.parse(Array("MSG s 1 1025\r\n".utf8)) }
    }

    @Test("a control line without end beyond the limit is refused")
    func endlessControlLine() {
        var parser = NATSParser(maximumControlLine: 100)
        #expect(throws: NATSProtocolError.self) { try parser.parse(Array(repeating: UInt8(ascii: "A"), count: 200)) }
    }

    @Test("malformed operations are refused, not guessed at")
    func malformed() {
        for text in [
            "FOO bar\r\n", "MSG s x 3\r\nabc\r\n", "MSG s 1 3\r\nabcd\r\n", "MSG s 1\r\n", "HMSG s 1 50 10\r\n",
            "HMSG s 1 12 12\r\nnot headers\r\n\r\n",
            "INFO nope\r\n", "MSG s 1 -3\r\n",
        ] {
            var parser = NATSParser()
            #expect(throws: NATSProtocolError.self, "\(text)") { try parser.parse(Array(text.utf8)) }
        }
    }

    @Test("headers written by the client read back the same")
    func headerRoundTrip() throws {
        let headers = NATSHeaders([("Nats-Msg-Id", "abc.1.0"), ("Nats-Expected-Last-Sequence", "42"), ("Metering-Chunk", "0/1")])
        let parsed = try NATSHeaders.parse(headers.bytes[...])
        #expect(parsed == headers)
        #expect(parsed["nats-expected-last-sequence"] == "42")
        #expect(!NATSHeaders.isValid(name: "X", value: "a\r\nInjected: 1"))
        #expect(!NATSHeaders.isValid(name: "Bad Name", value: "v"))
    }

    @Test("a published message with headers is framed as HPUB with both lengths")
    func hpub() {
        var out: [UInt8] = []
        NATSCommand.publish(
            subject: "a.b", replyTo: "_INBOX.1", headers: NATSHeaders([("K", "v")]), payload: Array("xyz".utf8), to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "HPUB a.b _INBOX.1 18 21\r\nNATS/1.0\r\nK: v\r\n\r\nxyz\r\n")
        out = []
        NATSCommand.publish(subject: "a", replyTo: nil, headers: nil, payload: Array("xyz".utf8), to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "PUB a 3\r\nxyz\r\n")
    }

    @Test("server URLs give host, port and credentials; bad ones are refused")
    func addresses() {
        let address = NATSServerAddress("nats://ingest:p%40ss@127.0.0.1:4223")
        #expect(address?.host == "127.0.0.1" && address?.port == 4223 && address?.user == "ingest" && address?.password == "p@ss")
        #expect(address?.description == "nats://127.0.0.1:4223")
        #expect(NATSServerAddress("nats://secret-token@host")?.token == "secret-token")
        #expect(NATSServerAddress("localhost")?.port == 4222)
        #expect(NATSServerAddress("nats://[::1]:4222")?.host == "::1")
        #expect(NATSServerAddress.list("nats://a:1,nats://b:2")?.count == 2)
        for bad in ["http://x", "nats://", "nats://h:0", "nats://h:99999", "nats://a b"] {
            #expect(NATSServerAddress(bad) == nil, "\(bad)")
        }
        #expect(NATSServerAddress.list("nats://a:1,http://b") == nil)
    }

    @Test("INFO gives the payload limit and the cluster's other servers")
    func info() throws {
        let info = try NATSServerInfo.decode(
            Array(#"{"server_id":"S","headers":true,"max_payload":8388608,"connect_urls":["10.0.0.2:4222"]}"#.utf8))
        #expect(info.maximumPayload == 8_388_608 && info.headers && info.connectURLs == ["10.0.0.2:4222"])
    }

    @Test("a publish answer reads as an acknowledgement, a duplicate, or JetStream's error")
    func publishAnswers() throws {
        let ack = try PublishAck.decode(Array(#"{"stream":"M","seq":5}"#.utf8)).get()
        #expect(ack.stream == "M" && ack.sequence == 5 && !ack.duplicate)
        #expect(try PublishAck.decode(Array(#"{"stream":"M","seq":5,"duplicate":true}"#.utf8)).get().duplicate)
        let wrong = PublishAck.decode(Array(#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 42"}}"#.utf8))
        guard case .failure(let error) = wrong else {
            Issue.record("an error read as an acknowledgement")
            return
        }
        #expect(error.errorCode == JetStreamError.wrongLastSequence && error.actualLastSequence == 42)
    }
}
