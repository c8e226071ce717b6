import EventStore
import Foundation
import JetStreamStore
import NATS
import StackTestSupport
import Synchronization
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Against real nats-server processes (scripts/bootstrap installs nats-server).
@Suite("JetStream on a real nats-server", .serialized)
struct JetStreamLiveTests {
    static func connect(_ cluster: NATSCluster, node: Int = 0) throws -> NATSConnection {
        let connection = NATSConnection(options: NATSConnection.Options(servers: [NATSServerAddress(cluster.url(node))!]))
        try connection.start(timeout: 20)
        return connection
    }

    static func options(_ cluster: NATSCluster, node: Int = 0, replicas: Int, partitions: Int = 4) -> JetStreamStore.Options {
        var options = JetStreamStore.Options(servers: [NATSServerAddress(cluster.url(node))!], partitionCount: partitions)
        options.replicas = replicas
        options.startTimeout = 60
        return options
    }

    static func pending(_ partition: Int, _ time: Timestamp, key: String? = nil, _ text: String = "{}") -> EventLog.Pending {
        var meta = RecordMeta()
        if let key {
            meta.idempotencyKey = key
            meta.keyDigest = PayloadDigest.hash(key)
            meta.payloadDigest = PayloadDigest.hash(text)
        }
        return EventLog.Pending(partition: partition, time: time, meta: meta, payload: Array(text.utf8))
    }

    @Test("a wrong password is refused with the server's words, and the right one connects")
    func authentication() throws {
        let cluster = try NATSCluster(nodes: 1)
        let wrong = NATSConnection(
            options: NATSConnection.Options(servers: [NATSServerAddress("nats://ingest:wrong@127.0.0.1:\(cluster.clientPorts[0])")!]))
        #expect(throws: NATSError.self) { try wrong.start(timeout: 3) }
        #expect(try Self.connect(cluster).isConnected)
        wrong.close()
    }

    @Test("a message id seen before answers duplicate with the first sequence, even with the same expected last sequence")
    func deduplication() throws {
        let cluster = try NATSCluster(nodes: 1)
        let connection = try Self.connect(cluster)
        let jetStream = JetStream(connection: connection)
        var info: StreamInfo?
        let deadline = Date().addingTimeInterval(30)
        while info == nil && Date() < deadline {
            info = try? jetStream.createStream(name: "T", subject: "T.records", replicas: 1, duplicateWindowSeconds: 7 * 86_400).get()
            if info == nil { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(info?.duplicateWindow == 7 * 86_400 * 1_000_000_000)
        var headers = NATSHeaders([(JetStream.messageID, "one"), (JetStream.expectedLastSequence, "0")])
        let first = try jetStream.publish(subject: "T.records", headers: headers, payload: [1]).get()
        #expect(first.sequence == 1 && !first.duplicate)
        // Sent again, as after a lost acknowledgement: recognised, not stored, not refused.
        let again = try jetStream.publish(subject: "T.records", headers: headers, payload: [1]).get()
        #expect(again.sequence == 1 && again.duplicate)
        headers = NATSHeaders([(JetStream.messageID, "two"), (JetStream.expectedLastSequence, "0")])
        guard case .failure(let error) = jetStream.publish(subject: "T.records", headers: headers, payload: [2]) else {
            Issue.record("a stale expected last sequence was accepted")
            return
        }
        #expect(error.errorCode == JetStreamError.wrongLastSequence && error.actualLastSequence == 1)
        let stored = try JetStream.storedMessage(jetStream.directGetAsync(stream: "T", sequence: 1).wait(timeout: 5)).get()
        #expect(stored?.payload == [1] && stored?.headers[JetStream.messageID] == "one")
        #expect(try JetStream.storedMessage(jetStream.directGetAsync(stream: "T", sequence: 9).wait(timeout: 5)).get() == nil)
    }

    @Test("two stores on one stream commit in turn: gap-free sequences, times never back, each sees the other's keys")
    func twoWriters() throws {
        let cluster = try NATSCluster(nodes: 1)
        let first = try JetStreamStore(options: Self.options(cluster, replicas: 1))
        let second = try JetStreamStore(options: Self.options(cluster, replicas: 1))
        #expect(first.identity == second.identity)
        let learned = Learned()
        second.observeOthers { partition, sequence, _, meta in learned.add(partition, sequence, meta.idempotencyKey) }
        try first.commitRecords([Self.pending(0, Timestamp(seconds: 100), key: "k1"), Self.pending(1, Timestamp(seconds: 100))])
        // The second has not read the first's group: its commit loses the race, and it catches up.
        #expect(throws: RecordStoreFailure.self) { try second.commitRecords([Self.pending(0, Timestamp(seconds: 50))]) }
        #expect(learned.keys == ["k1"])
        #expect(second.partitions[0].nextSequence == 1 && second.partitions[0].lastTime == Timestamp(seconds: 100))
        try second.commitRecords([Self.pending(0, Timestamp(seconds: 100), key: "k2")])
        // The first reads the second's group in the background.
        let deadline = Date().addingTimeInterval(20)
        while first.partitions[0].durableNextSequence < 2 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let records = try first.partitions[0].read(from: 0, maxRecords: 10, maxBytes: 1 << 20)
        #expect(records.map(\.sequence) == [0, 1])
        #expect(records.map(\.meta.idempotencyKey) == ["k1", "k2"])
        var json: [UInt8] = []
        let (count, next) = try first.partitions[1].appendJSON(from: 0, maxRecords: 10, to: &json)
        #expect(count == 1 && next == 1)
        #expect(String(decoding: json, as: UTF8.self) == #"{"partition":1,"sequence":0,"enqueuedTime":"1970-01-01T00:01:40Z","event":{}}"#)
        // A record that would go back in time is refused before it is published: the stream stays readable.
        #expect(throws: RecordStoreFailure.self) { try first.commitRecords([Self.pending(0, Timestamp(seconds: 10))]) }
        // A third store opened now rebuilds everything from the stream.
        let visited = Learned()
        let third = try JetStreamStore(options: Self.options(cluster, replicas: 1), willVisit: { _, _ in }) {
            partition, sequence, _, meta in
            visited.add(partition, sequence, meta.idempotencyKey)
        }
        #expect(visited.keys == ["k1", "k2"])
        #expect(third.partitions.map(\.nextSequence) == [2, 1, 0, 0])
        first.shutDown()
        second.shutDown()
        third.shutDown()
    }

    @Test("a group larger than one NATS message is stored as chunks and read back whole")
    func chunks() throws {
        let cluster = try NATSCluster(nodes: 1)
        let store = try JetStreamStore(options: Self.options(cluster, replicas: 1, partitions: 2))
        let text = "{\"pad\":\"" + String(repeating: "x", count: 100_000) + "\"}"
        let records = (0..<200).map { Self.pending($0 % 2, Timestamp(seconds: 5), key: "big-\($0)", text) }
        try store.commitRecords(records)
        #expect(store.appliedSequence > 3)
        let reader = try JetStreamStore(options: Self.options(cluster, replicas: 1, partitions: 2))
        #expect(reader.partitions.map(\.nextSequence) == [100, 100])
        let read = try reader.partitions[1].read(from: 95, maxRecords: 10, maxBytes: 64 << 20)
        #expect(read.map(\.sequence) == [95, 96, 97, 98, 99])
        #expect(read.first?.meta.idempotencyKey == "big-191")
        store.shutDown()
        reader.shutDown()
    }

    @Test("a stream with another replica count is refused naming the setting")
    func replicaMismatch() throws {
        let cluster = try NATSCluster(nodes: 1)
        _ = try JetStreamStore(options: Self.options(cluster, replicas: 1))
        #expect {
            _ = try JetStreamStore(options: Self.options(cluster, replicas: 3))
        } throws: { error in
            "\(error)".contains("METERING_NATS_REPLICAS=3")
        }
    }
}

/// Records seen by a visit closure, from any thread.
final class Learned: Sendable {
    private let seen = Mutex([(Int, UInt64, String?)]())
    func add(_ partition: Int, _ sequence: UInt64, _ key: String?) { seen.withLock { $0.append((partition, sequence, key)) } }
    var keys: [String] { seen.withLock { $0.compactMap(\.2) } }
}

@Suite("The shipped nats-server configuration")
struct ShippedConfigurationTests {
    /// What a server sends on `port` of 127.0.0.1 within 5 s after `hello`, until it closes.
    static func greeting(port: Int, hello: String = "") throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = Array(hello.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return String(decoding: buffer.prefix(max(0, count)), as: UTF8.self)
    }

    @Test("servers talk to each other only over TLS, clients need the password, and no other host's address is advertised")
    func security() throws {
        let cluster = try NATSCluster(nodes: 3)
        // A route speaking plain NATS gets nothing back: the server waits for a TLS handshake.
        let route = try Self.greeting(port: cluster.routePorts[0], hello: "CONNECT {}\r\nPING\r\n")
        #expect(!route.contains("INFO") && !route.contains("PONG"), "\(route)")
        let client = try Self.greeting(port: cluster.clientPorts[0])
        #expect(client.contains(#""auth_required":true"#), "\(client)")
        #expect(!client.contains("connect_urls"), "\(client)")
        let anonymous = NATSConnection(
            options: NATSConnection.Options(servers: [NATSServerAddress("nats://127.0.0.1:\(cluster.clientPorts[0])")!]))
        #expect(throws: NATSError.self) { try anonymous.start(timeout: 2) }
        anonymous.close()
    }
}
