import EventStore
import Wire

/// How `meter-ingest` runs: from flags and `METERING_*` variables (DESIGN.md §6.1).
struct IngestConfiguration {
    enum ClockMode: String, CaseIterable {
        case system, manual
    }

    enum ClockChange: String, CaseIterable {
        case refuse, allow
    }

    var home: String
    var dataDirectory: String
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
    var maximumConnections: Int

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
          --max-connections    METERING_MAX_CONNECTIONS      16384

        Under systemd the sockets come from the .socket unit (FileDescriptorName=client / admin).
        The log lives in $METERING_HOME/data/log; it records the clock it was written on, and
        starting it on the other clock is refused unless METERING_CLOCK_CHANGE=allow.
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
        maximumConnections = try settings.integer(
            "max-connections", "METERING_MAX_CONNECTIONS", default: 16_384, range: 1...1_000_000)
        try settings.rejectUnknownFlags()
        if clientSocket == adminSocket {
            throw SettingsError("METERING_INGEST_SOCKET and METERING_INGEST_ADMIN_SOCKET must differ (both are \(clientSocket))")
        }
    }
}
