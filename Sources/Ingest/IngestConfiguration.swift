import Daemon
import EventStore
import Foundation
import JetStreamStore
import Metrics
import NATS
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// How `meter-ingest` runs: from flags and `METERING_*` variables (DESIGN.md §6.1).
struct IngestConfiguration {
    /// Where Prometheus metrics are served (`METERING_METRICS_ADDR`), nil when off.
    var metrics: MetricsAddress?
    enum ClockMode: String, CaseIterable {
        case system, manual
    }

    enum ClockChange: String, CaseIterable {
        case refuse, allow
    }

    enum AttributionMode: String, CaseIterable {
        case enqueued, event
    }

    /// Where the records are kept.
    enum StoreKind: String, CaseIterable {
        /// The log under `$METERING_HOME/data/log` (fsync before every acknowledgement).
        case embedded
        /// A stream on the NATS JetStream cluster (docs/SCALING.md).
        case jetstream
    }

    var home: String
    var dataDirectory: String
    /// Where the embedded log is (and, beside its segments, the idempotency table file).
    var logDirectory: String { dataDirectory + "/log" }
    var clientSocket: String
    var adminSocket: String
    var partitions: Int
    var partitionsExplicit: Bool
    var clock: ClockMode
    /// Whether a log written on the other clock may be switched to `clock` (for good).
    var allowClockChange: Bool
    var maximumFrameBytes: Int
    var segmentBytes: Int
    var idempotencyDays: Int
    /// Idempotency keys the table is made for at start, so that it does not grow (each growth
    /// moves every key while appends wait) until there are more; 0: it starts small.
    var expectedKeys: Int
    /// The client socket's connection budget (capped by the open-file limit at start-up).
    var maximumConnections: Int
    var maximumConnectionsExplicit: Bool
    /// The admin socket's own budget, so a flood on the client socket never locks operators and
    /// the submitter out.
    var adminConnections: Int
    var idleTimeoutSeconds: Int
    /// How the folds attribute usage to hours; written into every tick, so they follow the log.
    var attribution: Attribution
    var store: StoreKind
    /// The NATS server(s) of this host, for the JetStream store.
    var natsServers: [NATSServerAddress]
    var natsStream: String
    var natsReplicas: Int

    static let usage = """
        meter-ingest: the only writer of the metering event log.

        Settings (flag, environment variable, default):
          --home               METERING_HOME                 ./.metering
          --socket             METERING_INGEST_SOCKET        $METERING_HOME/run/ingest.sock
          --admin-socket       METERING_INGEST_ADMIN_SOCKET  $METERING_HOME/run/ingest-admin.sock
          --partitions         METERING_PARTITIONS           4 (for a new log; fixed afterwards)
          --clock              METERING_CLOCK                system | manual
          --clock-change       METERING_CLOCK_CHANGE         refuse | allow (switch a log written on the other clock)
          --max-frame-bytes    METERING_MAX_FRAME_BYTES      16777216
          --segment-bytes      METERING_SEGMENT_BYTES        67108864
          --idempotency-days   METERING_IDEMPOTENCY_DAYS     7
          --expected-keys      METERING_INGEST_EXPECTED_KEYS  0 (idempotency ids expected within those days:
                                                             the table is made for them at start, 40 bytes
                                                             a slot, instead of growing while appending)
          --max-connections    METERING_MAX_CONNECTIONS      16384 (client socket; fewer when the
                                                             open-file limit cannot hold them)
          --admin-connections  METERING_INGEST_ADMIN_CONNECTIONS  64 (admin socket, a budget of its own)
          --idle-timeout       METERING_INGEST_IDLE_SECONDS  60 (a connection with nothing in flight
                                                             is closed after this many seconds)
          --attribution        METERING_ATTRIBUTION          enqueued | event (usage's own timestamp decides
                                                             its hour while the hour is open)
          --late-grace         METERING_LATE_GRACE           1h (event only: how long an hour stays open
                                                             after its end; seconds, or 90m, 2h; at most 6h)
          --store              METERING_STORE                embedded | jetstream
          --nats-url           METERING_NATS_URL             nats://127.0.0.1:4222 (the NATS server on this
                                                             host; nats://user:password@host:port)
          --nats-stream        METERING_NATS_STREAM          METERING (the JetStream stream)
          --nats-replicas      METERING_NATS_REPLICAS        3 (copies of every record: 1, 3 or 5)
        \(MetricsAddress.usageLine)

        Under systemd the sockets come from the .socket unit (FileDescriptorName=client / admin).
        The log lives in $METERING_HOME/data/log; it records the clock it was written on, and
        starting it on the other clock is refused unless METERING_CLOCK_CHANGE=allow.
        The attribution is written into every tick of the log: the aggregator and the query service
        take it from there (docs/BILLING.md, "Late usage").
        With METERING_STORE=jetstream the records live in a JetStream stream instead, shared by
        the ingest instances of every host (docs/SCALING.md).
        """

    init(settings: inout Settings) throws(SettingsError) {
        home = settings.home()
        dataDirectory = home + "/data"
        clientSocket = Settings.absolute(settings.string("socket", "METERING_INGEST_SOCKET", default: home + "/run/ingest.sock"))
        adminSocket = Settings.absolute(
            settings.string("admin-socket", "METERING_INGEST_ADMIN_SOCKET", default: home + "/run/ingest-admin.sock"))
        partitionsExplicit = settings.isGiven("partitions", "METERING_PARTITIONS")
        partitions = try settings.integer("partitions", "METERING_PARTITIONS", default: 4, range: 1...1024)
        clock = try settings.choice("clock", "METERING_CLOCK", default: ClockMode.system)
        allowClockChange = try settings.choice("clock-change", "METERING_CLOCK_CHANGE", default: ClockChange.refuse) == .allow
        maximumFrameBytes = try settings.integer(
            "max-frame-bytes", "METERING_MAX_FRAME_BYTES", default: FrameEncoder.defaultMaximumFrameLength,
            range: 1024...RecordCodec.maximumPayloadLength)
        segmentBytes = try settings.integer("segment-bytes", "METERING_SEGMENT_BYTES", default: 64 << 20, range: (64 << 10)...(1 << 30))
        idempotencyDays = try settings.integer("idempotency-days", "METERING_IDEMPOTENCY_DAYS", default: 7, range: 1...3650)
        expectedKeys = try settings.integer(
            "expected-keys", "METERING_INGEST_EXPECTED_KEYS", default: 0, range: 0...Self.maximumExpectedKeys)
        if expectedKeys > 0 {
            let limit = Self.memoryLimit
            try Self.checkTableFits(expectedKeys: expectedKeys, memory: limit.bytes, cgroup: limit.cgroup)
        }
        maximumConnectionsExplicit = settings.isGiven("max-connections", "METERING_MAX_CONNECTIONS")
        maximumConnections = try settings.integer(
            "max-connections", "METERING_MAX_CONNECTIONS", default: 16_384, range: 1...1_000_000)
        adminConnections = try settings.integer(
            "admin-connections", "METERING_INGEST_ADMIN_CONNECTIONS", default: 64, range: 1...10_000)
        idleTimeoutSeconds = try settings.integer("idle-timeout", "METERING_INGEST_IDLE_SECONDS", default: 60, range: 1...86_400)
        store = try settings.choice("store", "METERING_STORE", default: StoreKind.embedded)
        let url = settings.string("nats-url", "METERING_NATS_URL", default: "nats://127.0.0.1:4222")
        guard let servers = NATSServerAddress.list(url) else {
            throw SettingsError(
                "METERING_NATS_URL must be nats://[user:password@]host[:port] (commas between several), not \"\(url.prefix(200))\"")
        }
        natsServers = servers
        natsStream = settings.string("nats-stream", "METERING_NATS_STREAM", default: "METERING")
        guard JetStreamStore.Options.isValidStreamName(natsStream) else {
            throw SettingsError("METERING_NATS_STREAM must be letters, digits, - and _ (at most 64), not \"\(natsStream.prefix(100))\"")
        }
        natsReplicas = try settings.integer("nats-replicas", "METERING_NATS_REPLICAS", default: 3, range: 1...5)
        guard [1, 3, 5].contains(natsReplicas) else { throw SettingsError("METERING_NATS_REPLICAS must be 1, 3 or 5, not \(natsReplicas)") }
        metrics = try MetricsAddress.setting(&settings)
        let mode = try settings.choice("attribution", "METERING_ATTRIBUTION", default: AttributionMode.enqueued)
        let graceText = settings.optionalString("late-grace", "METERING_LATE_GRACE")
        switch mode {
        case .enqueued:
            if let graceText {
                throw SettingsError(
                    "METERING_LATE_GRACE=\"\(graceText)\" applies to event-time attribution only; set METERING_ATTRIBUTION=event, or leave METERING_LATE_GRACE unset"
                )
            }
            attribution = .enqueued
        case .event:
            let text = graceText ?? "1h"
            guard let grace = Attribution.parseDuration(text), grace <= Attribution.maximumLateGrace else {
                throw SettingsError(
                    "invalid METERING_LATE_GRACE=\"\(text)\": expected a duration from 0 to 6h in whole seconds, minutes or hours (7200, 90m, 2h)"
                )
            }
            attribution = .event(lateGrace: grace)
        }
        try settings.rejectUnknownFlags()
        if clientSocket == adminSocket {
            throw SettingsError("METERING_INGEST_SOCKET and METERING_INGEST_ADMIN_SOCKET must differ (both are \(clientSocket))")
        }
    }

    /// The most `METERING_INGEST_EXPECTED_KEYS` takes (a table of 2³¹ slots, 80 GiB).
    static let maximumExpectedKeys = 1_000_000_000

    /// What the logs say after a growth of the idempotency table (appends waited, or a start took
    /// longer).
    static let expectedKeysHint = "METERING_INGEST_EXPECTED_KEYS makes it large enough at start"

    /// This machine's memory in bytes (0 when unknown).
    static var physicalMemory: Int { max(0, sysconf(Int32(_SC_PHYS_PAGES))) * max(0, sysconf(Int32(_SC_PAGESIZE))) }

    /// The memory this process may use: the machine's, or less when a cgroup it is in has a lower
    /// memory limit (a container, or a systemd unit with `MemoryMax=`), with that cgroup's path.
    static var memoryLimit: (bytes: Int, cgroup: String?) {
        memoryLimit(
            ownCgroups: try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8), physical: physicalMemory,
            read: { try? String(contentsOfFile: $0, encoding: .utf8) })
    }

    /// `memoryLimit` from the text of `/proc/self/cgroup` (`id:controllers:path` lines; an empty
    /// list of controllers is the unified hierarchy), reading the limit files with `read`: the
    /// lowest limit of the process's memory cgroup and of those above it, when below `physical`.
    static func memoryLimit(ownCgroups: String?, physical: Int, read: (String) -> String?) -> (bytes: Int, cgroup: String?) {
        var lowest = (bytes: physical, cgroup: String?.none)
        for line in (ownCgroups ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/") else { continue }
            let file: String
            let root: String
            if fields[1].isEmpty {
                (root, file) = ("/sys/fs/cgroup", "memory.max")
            } else if fields[1].split(separator: ",").contains("memory") {
                (root, file) = ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            } else {
                continue
            }
            // The cgroup itself, then each one above it: a limit anywhere above applies too.
            var path = String(fields[2])
            while true {
                let directory = path == "/" ? root : root + path
                if let text = read(directory + "/" + file),
                    let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes > 0, bytes < lowest.bytes
                {
                    lowest = (bytes, String(fields[2]))
                }
                guard path != "/", let cut = path.lastIndex(of: "/") else { break }
                path = cut == path.startIndex ? "/" : String(path[..<cut])
            }
        }
        return lowest
    }

    /// Refuses an expected key count whose table would take more than half of `memory` (the table
    /// is mapped in whole at start, and a growth holds a second one twice as large for a while);
    /// `cgroup`: the memory is that cgroup's limit, not the machine's.
    static func checkTableFits(expectedKeys: Int, memory: Int, cgroup: String? = nil) throws(SettingsError) {
        guard expectedKeys > 0, memory > 0 else { return }
        let bytes = IdempotencyIndex.memoryBytes(forKeys: expectedKeys)
        guard bytes > memory / 2 else { return }
        let whose = cgroup.map { "its cgroup (\($0)) may use" } ?? "this machine has"
        throw SettingsError(
            "METERING_INGEST_EXPECTED_KEYS=\(expectedKeys) needs an idempotency table of \(bytes >> 20) MiB (\(IdempotencyIndex.slotBytes) bytes a slot, \(bytes / IdempotencyIndex.slotBytes) slots); \(whose) \(memory >> 20) MiB of memory, and the table may take at most half of it"
        )
    }

    /// Descriptors kept out of the connection budgets: segments opened by rolls after start-up
    /// (each open segment holds one), the files of recovery and the durable marks, the epoll and
    /// event descriptors, and a margin.
    static let reservedDescriptors = 128

    /// The two sockets' connection budgets within `descriptors`: the admin socket's first (up to
    /// `adminConnections`, an eighth of what is there at most), the client socket's from the rest
    /// (up to `maximumConnections`). Fails, naming the limit, when the descriptors cannot hold 8
    /// client connections besides the admin socket's.
    func connectionBudgets(within descriptors: DescriptorBudget) throws(SettingsError) -> (client: Int, admin: Int) {
        let admin = min(adminConnections, max(4, descriptors.available / 8))
        guard descriptors.available - admin >= 8 else { throw SettingsError(descriptors.tooFew(admin + 8)) }
        return (min(maximumConnections, descriptors.available - admin), admin)
    }
}
