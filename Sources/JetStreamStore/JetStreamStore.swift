import Daemon
public import EventStore
import Foundation
public import NATS
import Synchronization
public import Wire

/// The event store on a NATS JetStream stream, replicated by the NATS cluster: ingest's commit
/// groups become stream messages, so every ingest instance (one per host) appends to the same
/// totally ordered log and reads everyone's records back.
///
/// - A commit group is one message on `<stream>.records` (several consecutive chunks when larger
///   than the server's `max_payload`; `GroupFold`), its records in the embedded log's record
///   format (`RecordCodec`, CRC-checked) with their partition, sequence and enqueued time.
/// - Every publish carries `Nats-Expected-Last-Sequence`: it is stored only if the writer had
///   applied everything before it, so sequences stay gap-free and times never go back within a
///   partition whatever the number of writers. A writer that lost the race reads what it missed
///   and decides its group again (`RecordStoreFailure.superseded`).
/// - Every publish carries a `Nats-Msg-Id`: a publish sent again after a lost acknowledgement is
///   recognised as a duplicate instead of stored twice.
/// - A commit is acknowledged once JetStream acknowledged every chunk: stored by a majority of the
///   stream's replicas (in memory at least; nats-server 2.9 syncs to disk on its own interval).
/// - The first message is the manifest (`StreamManifest`).
public final class JetStreamStore: RecordStore, @unchecked Sendable {
    /// How the store is opened.
    public struct Options: Sendable {
        /// The NATS servers (normally the one on this host only).
        public var servers: [NATSServerAddress]
        /// The stream's name (letters, digits, `-` and `_`).
        public var stream = "METERING"
        /// Copies of every message the stream keeps (1, 3 or 5); checked against an existing stream.
        public var replicas = 3
        /// The partition count of a new stream.
        public var partitionCount: Int
        /// A different count in an existing stream is then an error instead of a notice.
        public var partitionCountIsExplicit = false
        public var clock = "system"
        public var allowClockChange = false
        /// The identity a new stream gets (a migrated log keeps its own); a fresh one when nil.
        public var identity: String?
        /// JetStream's de-duplication window for `Nats-Msg-Id`, in seconds.
        public var duplicateWindowSeconds = 7 * 86_400
        /// Seconds to wait for the NATS server and the stream at start-up.
        public var startTimeout = 30.0
        /// Seconds a publish is sent again (same id) before its outcome is declared unknown.
        public var publishPatience = 30.0
        /// Bytes of stream messages kept in memory for readers.
        public var cacheBytes = 64 << 20
        /// The connection's name on the server.
        public var connectionName = "meter-ingest"

        public init(servers: [NATSServerAddress], partitionCount: Int) {
            self.servers = servers
            self.partitionCount = partitionCount
        }

        /// Whether `name` may name a stream.
        public static func isValidStreamName(_ name: String) -> Bool {
            !name.isEmpty && name.count <= 64
                && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || $0 == "-" || $0 == "_" }
        }
    }

    static let kindHeader = "Metering-Kind"
    static let groupHeader = "Metering-Group"
    static let chunkHeader = "Metering-Chunk"

    public let options: Options
    public let subject: String
    public let connection: NATSConnection
    let jetStream: JetStream
    public private(set) var manifest: StreamManifest
    public private(set) var notices: [String] = []
    private var partitionsList: [JetStreamPartition] = []
    /// Held while a group is decided and committed, and while others' messages are applied.
    /// Recursive, so not a `Mutex`: `commitRecords` runs inside `exclusive` (RecordStore's
    /// contract) and takes it again, and so does the catch-up it starts when another writer won.
    private let writerLock = NSRecursiveLock()
    // Guarded by `writerLock`.
    private var applied: UInt64 = 0
    private var fold = GroupFold()
    private var observer: (@Sendable (Int, UInt64, Timestamp, RecordMeta) -> Void)?
    private var groupCounter: UInt64 = 0
    private let writerID: String
    private var maximumChunk: Int
    private let cache = Mutex(MessageCache())
    // The tail: wakes on any message published to the subject, polls once a second besides.
    private let tail = TailControl()
    private var tailFailing = false
    private var tailThread: Thread?

    public var storedPartitions: [any RecordPartition] { partitionsList }
    /// The partitions, typed.
    public var partitions: [JetStreamPartition] { partitionsList }
    public var identity: String { manifest.identity }
    public var clock: String { manifest.clock }
    public var created: String { manifest.created }
    public var lossesAccepted: Int { 0 }
    public var location: String { "stream \(options.stream) on \(options.servers.map(\.description).joined(separator: ","))" }
    public var storageBytes: Int { partitionsList.reduce(0) { $0 + $1.storage.bytes } }
    /// The stream sequence of the last message applied.
    public var appliedSequence: UInt64 { writerLock.withLock { applied } }

    /// Connects, makes or checks the stream, and reads it whole: `visit` sees every keyed record
    /// and every purchase, in stream order, as the embedded log's recovery does.
    public init(
        options: Options, willVisit: (_ records: Int, _ newestTime: Timestamp?) -> Void = { _, _ in },
        visit: (Int, UInt64, Timestamp, RecordMeta) -> Void = { _, _, _, _ in }
    ) throws(EventLogError) {
        guard Options.isValidStreamName(options.stream) else {
            throw EventLogError("\"\(options.stream)\" cannot name a stream: use letters, digits, - and _")
        }
        guard [1, 3, 5].contains(options.replicas) else {
            throw EventLogError("the replica count must be 1, 3 or 5, not \(options.replicas)")
        }
        self.options = options
        subject = options.stream + ".records"
        var connectionOptions = NATSConnection.Options(servers: options.servers)
        connectionOptions.name = options.connectionName
        connection = NATSConnection(options: connectionOptions)
        jetStream = JetStream(connection: connection, timeout: 5)
        var generator = SystemRandomNumberGenerator()
        writerID = String(generator.next() as UInt64, radix: 36)
        manifest = StreamManifest(identity: "", partitions: 0, clock: "", created: "")
        maximumChunk = 1 << 20
        let deadline = Date(timeIntervalSinceNow: options.startTimeout)
        do {
            try connection.start(timeout: options.startTimeout)
        } catch {
            throw EventLogError("\(Self.unreachable): \(error.message)")
        }
        if let payload = connection.serverInfo?.maximumPayload {
            // Headroom for the headers; a chunk never exceeds 8 MiB whatever the server allows.
            maximumChunk = min(payload, 8 << 20) - 1024
        }
        let info = try ensureStream(deadline: deadline)
        manifest = try ensureManifest(info: info, deadline: deadline)
        try checkManifest()
        partitionsList = (0..<manifest.partitions).map { JetStreamPartition(partition: $0, store: self) }
        // The newest time is the last group's when the stream ends with a whole one.
        var newest: Timestamp?
        applied = 1
        let last = try streamLastSequence(deadline: deadline)
        if last > 1, let message = try? fetch(last, deadline: deadline), message.headers[Self.kindHeader] == "group",
            let position = message.headers[Self.chunkHeader].flatMap(GroupFold.position), position.index == position.count - 1
        {
            newest = Self.newestTime(message.payload)
        }
        willVisit(0, newest)
        var progress = StreamReadingProgress(stream: options.stream, last: last, started: Date())
        try catchUp(through: last, deadline: deadline, visit: visit) { read in
            if let line = progress.read(read, now: Date()) { Log.info(line) }
        }
        do {
            try connection.subscribe(subject: subject) { [weak self] _ in self?.nudgeTail() }
        } catch {
            throw EventLogError("cannot subscribe to \(subject): \(error)")
        }
        startTail()
    }

    deinit { shutDown() }

    /// Whether opening failed because NATS or JetStream could not be reached in time (worth
    /// starting again later), rather than because of what the stream or the settings are.
    public static func isUnreachable(_ error: EventLogError) -> Bool {
        error.message.hasPrefix(unreachable) || error.message.hasPrefix(unanswered)
    }

    static let unreachable = "cannot reach NATS"
    static let unanswered = "cannot ask JetStream"

    private static func newestTime(_ payload: [UInt8]) -> Timestamp? {
        payload.withUnsafeBytes { bytes -> Timestamp? in
            var offset = 0
            var newest: Timestamp?
            while let checked = RecordCodec.check(bytes, at: offset, salt: 0) {
                newest = max(newest ?? checked.time, checked.time)
                offset += checked.length
            }
            return newest
        }
    }

    // MARK: opening

    private func ensureStream(deadline: Date) throws(EventLogError) -> StreamInfo {
        var lastError = "no answer"
        while Date() < deadline {
            switch jetStream.streamInfo(options.stream) {
            case .success(let info?):
                try check(info)
                return info
            case .success(nil):
                switch jetStream.createStream(
                    name: options.stream, subject: subject, replicas: options.replicas,
                    duplicateWindowSeconds: options.duplicateWindowSeconds)
                {
                case .success(let info):
                    notices.append("created the stream \(options.stream) (\(options.replicas) replicas, file storage)")
                    return info
                case .failure(let error):
                    lastError = "cannot create the stream \(options.stream): \(error)"
                    if error.code == 400 && error.errorCode != 10058 {
                        // Settings JetStream refuses (insufficient resources: fewer servers than replicas) do not heal by waiting.
                        if error.message.contains("insufficient resources") {
                            throw EventLogError(
                                "\(lastError); the cluster has fewer JetStream servers than METERING_NATS_REPLICAS=\(options.replicas)")
                        }
                    }
                }
            case .failure(let error):
                lastError = "\(Self.unanswered) about the stream \(options.stream): \(error)"
            }
            Thread.sleep(forTimeInterval: 0.25)
        }
        throw EventLogError(lastError)
    }

    private func check(_ info: StreamInfo) throws(EventLogError) {
        guard info.subjects == [subject] else {
            throw EventLogError("the stream \(options.stream) takes subjects \(info.subjects), not just \(subject); it is not ours")
        }
        guard info.replicas == options.replicas else {
            throw EventLogError(
                "the stream \(options.stream) keeps \(info.replicas) replicas but METERING_NATS_REPLICAS=\(options.replicas); change one to match"
            )
        }
        guard info.storage == "file" else { throw EventLogError("the stream \(options.stream) uses \(info.storage) storage, not file") }
        guard info.allowDirect else { throw EventLogError("the stream \(options.stream) does not allow direct get") }
        if info.duplicateWindow < UInt64(options.duplicateWindowSeconds) * 1_000_000_000 {
            notices.append(
                "the stream's de-duplication window is \(info.duplicateWindow / 1_000_000_000) s, shorter than \(options.duplicateWindowSeconds) s"
            )
        }
    }

    private func ensureManifest(info: StreamInfo, deadline: Date) throws(EventLogError) -> StreamManifest {
        if info.lastSequence == 0 {
            var fresh = StreamManifest.new(partitions: options.partitionCount, clock: options.clock)
            if let identity = options.identity { fresh.identity = identity }
            var headers = NATSHeaders()
            headers.append(Self.kindHeader, "manifest")
            headers.append(JetStream.messageID, "manifest")
            headers.append(JetStream.expectedLastSequence, "0")
            switch jetStream.publish(subject: subject, headers: headers, payload: fresh.bytes) {
            case .success:
                notices.append("wrote the stream's manifest: identity \(fresh.identity), \(fresh.partitions) partitions")
            case .failure(let error) where error.errorCode == JetStreamError.wrongLastSequence:
                break  // another instance wrote it first: read theirs
            case .failure(let error):
                throw EventLogError("cannot write the stream's manifest: \(error)")
            }
        }
        guard let first = try fetch(1, deadline: deadline) else {
            throw EventLogError("the stream \(options.stream) has no first message (was it purged?)")
        }
        guard first.headers[Self.kindHeader] == "manifest" else {
            throw EventLogError("the stream \(options.stream) does not start with a manifest: it was not written by meter-ingest")
        }
        switch StreamManifest.decode(first.payload) {
        case .success(let manifest): return manifest
        case .failure(let error): throw error
        }
    }

    private func checkManifest() throws(EventLogError) {
        if manifest.partitions != options.partitionCount {
            if options.partitionCountIsExplicit {
                throw EventLogError(
                    "the stream has \(manifest.partitions) partitions but METERING_PARTITIONS=\(options.partitionCount); the count is fixed when the stream is made"
                )
            }
            notices.append("the stream has \(manifest.partitions) partitions (fixed when it was made); using them")
        }
        if manifest.clock != options.clock {
            guard options.allowClockChange else {
                throw EventLogError(
                    "the stream was written on the \(manifest.clock) clock, not \(options.clock); set METERING_CLOCK=\(manifest.clock) (or METERING_CLOCK_CHANGE=allow)"
                )
            }
            notices.append("the stream was written on the \(manifest.clock) clock; running on \(options.clock) as allowed")
        }
    }

    // MARK: reading the stream

    /// Message `sequence`, read by direct get: nil when the stream has none there (yet). Asked
    /// again while the connection is down, until `deadline`.
    func fetch(_ sequence: UInt64, deadline: Date) throws(EventLogError) -> StoredMessage? {
        var lastError = "no answer"
        repeat {
            let answer: Result<NATSMessage, NATSError>
            do {
                answer = try jetStream.directGetAsync(stream: options.stream, sequence: sequence).wait(timeout: 5)
            } catch {
                answer = .failure(error)
            }
            if case .success(let message?) = JetStream.storedMessage(answer) { return message }
            // Not there on the replica that answered (it may lag), or no answer: the leader's word is final.
            switch jetStream.leaderGet(stream: options.stream, sequence: sequence) {
            case .success(let message): return message
            case .failure(let error) where error.transport == nil && error.code != 503 && error.code != 0:
                throw EventLogError("cannot read message \(sequence) of the stream \(options.stream): \(error)")
            case .failure(let error): lastError = error.description
            }
            _ = connection.waitUntilConnected(timeout: 1)
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        throw EventLogError("cannot read message \(sequence) of the stream \(options.stream): \(lastError)")
    }

    /// The payload of group message `sequence`, from the cache or the stream.
    func payload(of sequence: UInt64) throws(EventLogError) -> [UInt8] {
        if let cached = cache.withLock({ $0.payloads[sequence] }) { return cached }
        guard let message = try fetch(sequence, deadline: Date(timeIntervalSinceNow: 10)) else {
            throw EventLogError("message \(sequence) of the stream \(options.stream) is missing")
        }
        remember(sequence, message.payload)
        return message.payload
    }

    private func remember(_ sequence: UInt64, _ payload: [UInt8]) {
        cache.withLock { cache in
            guard cache.payloads[sequence] == nil, payload.count <= options.cacheBytes else { return }
            cache.payloads[sequence] = payload
            cache.order.append(sequence)
            cache.bytes += payload.count
            while cache.bytes > options.cacheBytes, cache.head < cache.order.count {
                if let evicted = cache.payloads.removeValue(forKey: cache.order[cache.head]) { cache.bytes -= evicted.count }
                cache.head += 1
            }
            if cache.head > 4096 && cache.head * 2 > cache.order.count {
                cache.order.removeFirst(cache.head)
                cache.head = 0
            }
        }
    }

    /// Reads and applies messages after the last applied one through `last`, several requests
    /// in flight at once; every message up to `last` must arrive (replicas that lag are asked again).
    /// `read`: told the sequence of the last message applied after each window of messages (for
    /// the progress of reading the stream at start).
    private func catchUp(
        through last: UInt64, deadline: Date, visit: (Int, UInt64, Timestamp, RecordMeta) -> Void, notify: Bool = true,
        read: (UInt64) -> Void = { _ in }
    ) throws(EventLogError) {
        writerLock.lock()
        defer { writerLock.unlock() }
        let window: UInt64 = 64
        while applied < last {
            let start = applied + 1
            let end = min(last, start + window - 1)
            var requests: [(UInt64, NATSRequest?)] = []
            for sequence in start...end {
                requests.append((sequence, try? jetStream.directGetAsync(stream: options.stream, sequence: sequence)))
            }
            for (sequence, request) in requests {
                var message: StoredMessage?
                if let request, case .success(let found?) = JetStream.storedMessage(request.wait(timeout: 5)) { message = found }
                if message == nil {
                    guard Date() < deadline else {
                        throw EventLogError("cannot read message \(sequence) of the stream \(options.stream) in time")
                    }
                    // Not there on the replica asked (it lags), or the connection broke: ask again.
                    message = try fetch(sequence, deadline: deadline)
                }
                guard let message else {
                    throw EventLogError(
                        "message \(sequence) of the stream \(options.stream) is missing although the stream goes to \(last)")
                }
                try apply(message, visit: visit, notify: notify)
            }
            read(end)
        }
    }

    /// Applies the next message of the stream (the writer lock held).
    private func apply(_ message: StoredMessage, visit: (Int, UInt64, Timestamp, RecordMeta) -> Void, notify: Bool = true)
        throws(EventLogError)
    {
        guard message.sequence == applied + 1 else { return }
        applied = message.sequence
        guard message.headers[Self.kindHeader] == "group", let group = message.headers[Self.groupHeader],
            let position = message.headers[Self.chunkHeader].flatMap(GroupFold.position)
        else {
            fold.interrupt()
            return
        }
        let chunk = GroupFold.Chunk(
            streamSequence: message.sequence, group: group, index: position.index, count: position.count, payload: message.payload)
        guard let chunks = fold.take(chunk) else { return }
        try applyGroup(chunks, visit: visit, notify: notify)
    }

    /// Applies a whole group: checks that its records follow each partition's, then makes them
    /// readable.
    private func applyGroup(_ chunks: [GroupFold.Chunk], visit: (Int, UInt64, Timestamp, RecordMeta) -> Void, notify: Bool = true)
        throws(EventLogError)
    {
        var next = partitionsList.map(\.nextSequence)
        var times = partitionsList.map(\.lastTime)
        struct Piece {
            var partition: Int
            var first: UInt64
            var next: UInt64
            var time: Timestamp
            var stream: UInt64
            var bytes: Int
        }
        var pieces: [Piece] = []
        var records: [LogRecord] = []
        for chunk in chunks {
            var failure: EventLogError?
            chunk.payload.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    guard case .record(let record, let length) = RecordCodec.decode(bytes, at: offset, salt: 0, includePayload: false)
                    else {
                        failure = EventLogError("stream message \(chunk.streamSequence) is damaged at byte \(offset)")
                        return
                    }
                    let partition = record.partition
                    guard partition < next.count else {
                        failure = EventLogError(
                            "stream message \(chunk.streamSequence) names partition \(partition); the stream has \(next.count)")
                        return
                    }
                    guard record.sequence == next[partition] else {
                        failure = EventLogError(
                            "stream message \(chunk.streamSequence) holds partition \(partition)'s record \(record.sequence) where \(next[partition]) was expected"
                        )
                        return
                    }
                    if let previous = times[partition], record.enqueuedTime < previous {
                        failure = EventLogError("stream message \(chunk.streamSequence) goes back in time in partition \(partition)")
                        return
                    }
                    next[partition] += 1
                    times[partition] = record.enqueuedTime
                    if let last = pieces.last, last.partition == partition, last.stream == chunk.streamSequence,
                        last.next == record.sequence
                    {
                        pieces[pieces.count - 1].next += 1
                        pieces[pieces.count - 1].time = record.enqueuedTime
                        pieces[pieces.count - 1].bytes += length
                    } else {
                        pieces.append(
                            Piece(
                                partition: partition, first: record.sequence, next: record.sequence + 1, time: record.enqueuedTime,
                                stream: chunk.streamSequence, bytes: length))
                    }
                    if notify { records.append(record) }
                    offset += length
                }
            }
            if let failure { throw failure }
        }
        if notify {
            for record in records { visit(record.partition, record.sequence, record.enqueuedTime, record.meta) }
        }
        for chunk in chunks { remember(chunk.streamSequence, chunk.payload) }
        // Per partition, in order: a partition's records in one message may be interleaved with
        // another's, so their extents are merged by message.
        for piece in pieces {
            partitionsList[piece.partition].noteApplied(
                first: piece.first, next: piece.next, time: piece.time, streamSequence: piece.stream, bytes: piece.bytes)
        }
        for partition in Set(pieces.map(\.partition)) { partitionsList[partition].publish() }
    }

    // MARK: writing

    public func exclusive<T>(_ body: () -> T) -> T { writerLock.withLock { body() } }

    public func observeOthers(_ visit: @escaping @Sendable (Int, UInt64, Timestamp, RecordMeta) -> Void) {
        writerLock.withLock { observer = visit }
    }

    public func commitRecords(_ records: [EventLog.Pending]) throws(RecordStoreFailure) {
        guard !records.isEmpty else { return }
        writerLock.lock()
        defer { writerLock.unlock() }
        var next = partitionsList.map(\.nextSequence)
        var times = partitionsList.map(\.lastTime)
        var chunks: [[UInt8]] = [[]]
        for record in records {
            guard record.partition < next.count else { throw .notWritten("partition \(record.partition) does not exist") }
            // Checked before publishing: every reader would refuse the stream from such a record on.
            if let last = times[record.partition], record.time < last {
                throw .notWritten(
                    "a record at \(record.time.iso8601) would go back in time in partition \(record.partition), whose last record is at \(last.iso8601)"
                )
            }
            times[record.partition] = record.time
            let length = record.encodedLength
            guard length <= maximumChunk else {
                throw .notWritten("a record of \(length) bytes does not fit the NATS server's max_payload (\(maximumChunk + 1024) bytes)")
            }
            if chunks[chunks.count - 1].count + length > maximumChunk { chunks.append([]) }
            let sequence = next[record.partition]
            next[record.partition] += 1
            record.encode(sequence: sequence, salt: 0, to: &chunks[chunks.count - 1])
        }
        groupCounter += 1
        let group = writerID + "." + String(groupCounter)
        func headers(_ index: Int, expecting expected: UInt64) -> NATSHeaders {
            NATSHeaders([
                (Self.kindHeader, "group"), (Self.groupHeader, group), (Self.chunkHeader, "\(index)/\(chunks.count)"),
                (JetStream.messageID, group + "." + String(index)), (JetStream.expectedLastSequence, String(expected)),
            ])
        }
        var published: [GroupFold.Chunk] = []
        if chunks.count > 1 {
            // All chunks in flight at once, chunk k expecting the sequence chunk k-1 gets when all
            // goes well; from the first that does not, they are sent one by one (same ids).
            let requests = chunks.indices.map { index in
                try? jetStream.publishAsync(
                    subject: subject, headers: headers(index, expecting: applied + UInt64(index)), payload: chunks[index])
            }
            for (index, request) in requests.enumerated() {
                guard let request, case .success(let message) = request.wait(timeout: jetStream.timeout),
                    case .success(let ack) = PublishAck.decode(message.payload), ack.stream == options.stream,
                    ack.sequence == applied + UInt64(index) + 1
                else { break }
                published.append(
                    GroupFold.Chunk(streamSequence: ack.sequence, group: group, index: index, count: chunks.count, payload: chunks[index]))
            }
        }
        var expected = published.last?.streamSequence ?? applied
        for index in published.count..<chunks.count {
            let sequence = try publish(headers: headers(index, expecting: expected), payload: chunks[index], isFirst: index == 0)
            published.append(
                GroupFold.Chunk(streamSequence: sequence, group: group, index: index, count: chunks.count, payload: chunks[index]))
            expected = sequence
        }
        // Stored: apply it as any reader would (a group waiting in the fold is dropped by it, as by them).
        fold.interrupt()
        applied = expected
        do {
            try applyGroup(published, visit: { _, _, _, _ in }, notify: false)
        } catch {
            throw .unknown("the group just stored does not apply: \(error)")
        }
    }

    /// Publishes one chunk, sending it again (same id, same expectation) while JetStream is out
    /// of reach; returns its stream sequence.
    private func publish(headers: NATSHeaders, payload: [UInt8], isFirst: Bool) throws(RecordStoreFailure) -> UInt64 {
        let deadline = Date(timeIntervalSinceNow: options.publishPatience)
        var attempt = 0
        while true {
            attempt += 1
            switch jetStream.publish(subject: subject, headers: headers, payload: payload) {
            case .success(let ack):
                guard ack.stream == options.stream else {
                    throw .unknown("JetStream stored the group in the stream \(ack.stream), not \(options.stream)")
                }
                return ack.sequence
            case .failure(let error) where error.errorCode == JetStreamError.wrongLastSequence:
                // Another writer appended first: read what it appended, then decide again.
                let last = error.actualLastSequence ?? ((try? streamLastSequence()) ?? applied)
                do {
                    try catchUp(
                        through: last, deadline: Date(timeIntervalSinceNow: options.publishPatience), visit: observer ?? { _, _, _, _ in },
                        notify: observer != nil)
                } catch {
                    throw .unknown("another writer appended, and its records cannot be read: \(error)")
                }
                throw .superseded("another ingest appended first (the stream is at \(last))")
            case .failure(let error) where error.transport != nil || error.code == 503 || error.code == 0:
                // Out of reach, or no leader now: the same bytes again are safe (Nats-Msg-Id).
                guard Date() < deadline else {
                    throw .unknown("JetStream did not acknowledge within \(Int(options.publishPatience)) s: \(error)")
                }
                if attempt == 1 || attempt % 20 == 0 { Log.warning("JetStream publish failed (\(error)); sending it again") }
                _ = connection.waitUntilConnected(timeout: 1)
                Thread.sleep(forTimeInterval: min(0.05 * Double(attempt), 0.5))
            case .failure(let error):
                if isFirst { throw .notWritten("JetStream refused the group: \(error)") }
                // Earlier chunks are stored but the group never completes: readers drop it.
                throw .notWritten("JetStream refused part of the group (readers drop the rest): \(error)")
            }
        }
    }

    /// The stream's last sequence, asked of its leader (again while out of reach, until `deadline`).
    private func streamLastSequence(deadline: Date = Date(timeIntervalSinceNow: 10)) throws(EventLogError) -> UInt64 {
        while true {
            switch jetStream.streamInfo(options.stream) {
            case .success(let info?): return info.lastSequence
            case .success(nil): throw EventLogError("the stream \(options.stream) is gone")
            case .failure(let error):
                guard Date() < deadline else { throw EventLogError("cannot ask JetStream about the stream \(options.stream): \(error)") }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
    }

    // MARK: the tail: others' groups

    private func nudgeTail() {
        tail.condition.withLock {
            tail.nudged = true
            tail.condition.signal()
        }
    }

    private func startTail() {
        // Weak between rounds: a store nobody holds any more goes away (and stops its tail).
        let thread = Thread { [weak self, tail] in
            while let store = self, store.tailRound() {}
            tail.finish()
        }
        thread.name = "jetstream-tail"
        tailThread = thread
        thread.start()
    }

    /// One round of the tail: waits for a nudge (another writer published) or a second, then
    /// reads what other writers appended. False once the store shuts down.
    private func tailRound() -> Bool {
        tail.condition.withLock {
            if !tail.nudged && tail.running { _ = tail.condition.wait(until: Date(timeIntervalSinceNow: 1)) }
            tail.nudged = false
        }
        guard tail.isRunning else { return false }
        do {
            try readAhead()
            if tailFailing { Log.notice("reading the stream \(options.stream) again") }
            tailFailing = false
        } catch {
            if !tailFailing { Log.error("cannot follow the stream \(options.stream): \(error); retrying") }
            tailFailing = true
        }
        return true
    }

    /// Fetches messages after the applied one until the stream has no more, applying each.
    private func readAhead() throws(EventLogError) {
        while tail.isRunning {
            let start = writerLock.withLock { applied } + 1
            var requests: [(UInt64, NATSRequest)] = []
            for sequence in start..<(start + 32) {
                guard let request = try? jetStream.directGetAsync(stream: options.stream, sequence: sequence) else { break }
                requests.append((sequence, request))
            }
            var found: [StoredMessage] = []
            for (_, request) in requests {
                guard case .success(let message?) = JetStream.storedMessage(request.wait(timeout: 5)) else { break }
                found.append(message)
            }
            guard !found.isEmpty else { return }
            writerLock.lock()
            defer { writerLock.unlock() }
            for message in found { try apply(message, visit: observer ?? { _, _, _, _ in }, notify: observer != nil) }
            if found.count < requests.count { return }
        }
    }

    // MARK: RecordStore

    /// Nothing to record: JetStream keeps the stream's state.
    public func checkpoint() throws(EventLogError) {}

    public func shutDown() {
        let wasRunning = tail.condition.withLock { () -> Bool in
            defer { tail.running = false }
            tail.condition.broadcast()
            return tail.running
        }
        if wasRunning, let tailThread, tailThread != Thread.current {
            tail.condition.withLock { while !tail.finished { tail.condition.wait() } }
        }
        connection.close()
        for partition in partitionsList { partition.wakeFollowers() }
    }
}

/// Group messages recently read, by stream sequence, evicted oldest first beyond the byte budget.
struct MessageCache {
    var payloads: [UInt64: [UInt8]] = [:]
    /// Sequences in the order cached; those before `head` are evicted.
    var order: [UInt64] = []
    var head = 0
    var bytes = 0
}

/// The tail thread's flags, held apart from the store so the thread can report its end after the
/// store is gone.
final class TailControl: @unchecked Sendable {
    /// A condition variable, not just a lock: the tail thread waits on it for a nudge (or a
    /// second), and `shutDown` waits on it for the thread's end.
    let condition = NSCondition()
    var running = true
    var finished = false
    var nudged = false

    var isRunning: Bool { condition.withLock { running } }

    func finish() {
        condition.withLock {
            finished = true
            condition.broadcast()
        }
    }
}
