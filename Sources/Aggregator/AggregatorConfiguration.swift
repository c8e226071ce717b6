import Daemon
import Foundation
import Metrics
import Wire

/// How `meter-aggregator` runs: from flags and `METERING_*` variables (DESIGN.md §6.1).
struct AggregatorConfiguration {
    /// Where Prometheus metrics are served (`METERING_METRICS_ADDR`), nil when off.
    var metrics: MetricsAddress?
    var home: String
    var ingestSocket: String
    var socket: String
    var snapshotDirectory: String
    /// The partitions this replica owns, or nil for all of the log's partitions.
    var partitions: [Int]?
    var snapshotEveryRecords: Int
    var snapshotEverySeconds: Int
    var snapshotsKept: Int
    var maximumFrameBytes: Int

    static let usage = """
        meter-aggregator: folds the event log into per-subscription meter state.

        Settings (flag, environment variable, default):
          --home                METERING_HOME                          ./.metering
          --ingest-socket       METERING_INGEST_SOCKET                 $METERING_HOME/run/ingest.sock
          --socket              METERING_AGGREGATOR_SOCKET             $METERING_HOME/run/aggregator.sock
          --partitions          METERING_AGGREGATOR_PARTITIONS         all (or a list such as 0,2)
          --snapshot-records    METERING_AGGREGATOR_SNAPSHOT_RECORDS   100000 (records between snapshots)
          --snapshot-seconds    METERING_AGGREGATOR_SNAPSHOT_SECONDS   3600 (log time between snapshots)
          --snapshots-kept      METERING_AGGREGATOR_SNAPSHOTS_KEPT     3
          --max-frame-bytes     METERING_MAX_FRAME_BYTES               16777216
        \(MetricsAddress.usageLine)

        Snapshots live in $METERING_HOME/data/aggregator/p<partition>/. Under systemd the socket
        comes from the .socket unit (FileDescriptorName=aggregator).
        """

    init(settings: inout Settings) throws(SettingsError) {
        home = settings.home()
        ingestSocket = Settings.absolute(settings.string("ingest-socket", "METERING_INGEST_SOCKET", default: home + "/run/ingest.sock"))
        socket = Settings.absolute(settings.string("socket", "METERING_AGGREGATOR_SOCKET", default: home + "/run/aggregator.sock"))
        snapshotDirectory = home + "/data/aggregator"
        if let list = settings.optionalString("partitions", "METERING_AGGREGATOR_PARTITIONS"), list != "all" {
            var owned: [Int] = []
            for part in list.split(separator: ",") {
                guard let number = Int(part.trimmingCharacters(in: .whitespaces)), number >= 0, number < 1024 else {
                    throw SettingsError(
                        "invalid METERING_AGGREGATOR_PARTITIONS=\"\(list)\": expected \"all\" or partition numbers such as 0,2")
                }
                if !owned.contains(number) { owned.append(number) }
            }
            guard !owned.isEmpty else { throw SettingsError("METERING_AGGREGATOR_PARTITIONS is empty; give \"all\" or a list such as 0,2") }
            partitions = owned.sorted()
        }
        snapshotEveryRecords = try settings.integer(
            "snapshot-records", "METERING_AGGREGATOR_SNAPSHOT_RECORDS", default: 100_000, range: 1...100_000_000)
        snapshotEverySeconds = try settings.integer(
            "snapshot-seconds", "METERING_AGGREGATOR_SNAPSHOT_SECONDS", default: 3600, range: 1...31_536_000)
        snapshotsKept = try settings.integer("snapshots-kept", "METERING_AGGREGATOR_SNAPSHOTS_KEPT", default: 3, range: 1...100)
        maximumFrameBytes = try settings.integer(
            "max-frame-bytes", "METERING_MAX_FRAME_BYTES", default: FrameEncoder.defaultMaximumFrameLength, range: 1024...(256 << 20))
        metrics = try MetricsAddress.setting(&settings)
        try settings.rejectUnknownFlags()
    }
}
