import Daemon
import Foundation
import Metrics
import Wire

/// How `meter-notifier` runs: from flags and `METERING_*` variables.
struct NotifierConfiguration {
    var home: String
    var ingestSocket: String
    var socket: String
    var dataDirectory: String
    var snapshotEveryRecords: Int
    var snapshotEverySeconds: Int
    var snapshotsKept: Int
    var maximumFrameBytes: Int
    var attempts: Int
    var initialBackoffMilliseconds: Int
    var maximumBackoffSeconds: Int
    var timeoutSeconds: Int
    var metrics: MetricsAddress?

    static let usage = """
        meter-notifier: follows the event log and posts signed notifications (webhooks) to the
        subscribers registered with `meterctl notifications add` (docs/NOTIFICATIONS.md).

        Settings (flag, environment variable, default):
          --home                METERING_HOME                          ./.metering
          --ingest-socket       METERING_INGEST_SOCKET                 $METERING_HOME/run/ingest.sock
          --socket              METERING_NOTIFIER_SOCKET               $METERING_HOME/run/notifier.sock (mode 0600)
          --data                METERING_NOTIFIER_DATA                 $METERING_HOME/data/notifier
          --attempts            METERING_NOTIFIER_ATTEMPTS             8 (per notification, then a dead letter)
          --retry-ms            METERING_NOTIFIER_RETRY_MS             1000 (the first retry's delay; doubles)
          --max-backoff         METERING_NOTIFIER_MAX_BACKOFF          600 (seconds between retries at most)
          --timeout             METERING_NOTIFIER_TIMEOUT              10 (seconds per delivery attempt)
          --snapshot-records    METERING_NOTIFIER_SNAPSHOT_RECORDS     100000 (records between snapshots)
          --snapshot-seconds    METERING_NOTIFIER_SNAPSHOT_SECONDS     3600 (log time between snapshots)
          --snapshots-kept      METERING_NOTIFIER_SNAPSHOTS_KEPT       3
          --max-frame-bytes     METERING_MAX_FRAME_BYTES               16777216
        \(MetricsAddress.usageLine)

        Under systemd the socket comes from the .socket unit (FileDescriptorName=notifier).
        """

    init(settings: inout Settings) throws(SettingsError) {
        home = settings.home()
        ingestSocket = Settings.absolute(settings.string("ingest-socket", "METERING_INGEST_SOCKET", default: home + "/run/ingest.sock"))
        socket = Settings.absolute(settings.string("socket", "METERING_NOTIFIER_SOCKET", default: home + "/run/notifier.sock"))
        dataDirectory = Settings.absolute(settings.string("data", "METERING_NOTIFIER_DATA", default: home + "/data/notifier"))
        attempts = try settings.integer("attempts", "METERING_NOTIFIER_ATTEMPTS", default: 8, range: 1...100)
        initialBackoffMilliseconds = try settings.integer("retry-ms", "METERING_NOTIFIER_RETRY_MS", default: 1000, range: 10...3_600_000)
        maximumBackoffSeconds = try settings.integer("max-backoff", "METERING_NOTIFIER_MAX_BACKOFF", default: 600, range: 1...86_400)
        timeoutSeconds = try settings.integer("timeout", "METERING_NOTIFIER_TIMEOUT", default: 10, range: 1...300)
        snapshotEveryRecords = try settings.integer(
            "snapshot-records", "METERING_NOTIFIER_SNAPSHOT_RECORDS", default: 100_000, range: 1...100_000_000)
        snapshotEverySeconds = try settings.integer(
            "snapshot-seconds", "METERING_NOTIFIER_SNAPSHOT_SECONDS", default: 3600, range: 1...31_536_000)
        snapshotsKept = try settings.integer("snapshots-kept", "METERING_NOTIFIER_SNAPSHOTS_KEPT", default: 3, range: 1...100)
        maximumFrameBytes = try settings.integer(
            "max-frame-bytes", "METERING_MAX_FRAME_BYTES", default: FrameEncoder.defaultMaximumFrameLength, range: 1024...(256 << 20))
        metrics = try MetricsAddress.setting(&settings)
        try settings.rejectUnknownFlags()
    }

    var delivery: Dispatcher.Settings {
        Dispatcher.Settings(
            attempts: attempts, initialBackoff: Double(initialBackoffMilliseconds) / 1000, maximumBackoff: Double(maximumBackoffSeconds),
            timeout: Double(timeoutSeconds))
    }
}
