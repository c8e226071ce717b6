import EventStore
import JetStreamStore
import Wire

/// Opens the store the configuration names, recovering as `EventLog`'s initializer describes: the
/// embedded log gives its idempotency keys to `keys` a segment at a time, the JetStream store shows
/// them to `visit` with the other records.
func openStore(
    _ configuration: IngestConfiguration, willVisit: (_ records: Int, _ newestTime: Timestamp?) -> Void,
    visit: (Int, UInt64, Timestamp, RecordMeta) -> Void, keys: (([SegmentSummary.Key]) -> Void)?,
    keysFrom: ((_ identity: String, _ next: [UInt64]) -> [UInt64])? = nil
) throws(EventLogError) -> any RecordStore {
    switch configuration.store {
    case .embedded:
        var options = EventLog.Options(partitionCount: configuration.partitions)
        options.partitionCountIsExplicit = configuration.partitionsExplicit
        options.segmentBytes = configuration.segmentBytes
        options.clock = configuration.clock.rawValue
        options.allowClockChange = configuration.allowClockChange
        return try EventLog(
            directory: configuration.logDirectory, options: options, willVisit: willVisit, visit: visit, keys: keys,
            keysFrom: keysFrom)
    case .jetstream:
        var options = JetStreamStore.Options(servers: configuration.natsServers, partitionCount: configuration.partitions)
        options.partitionCountIsExplicit = configuration.partitionsExplicit
        options.stream = configuration.natsStream
        options.replicas = configuration.natsReplicas
        options.clock = configuration.clock.rawValue
        options.allowClockChange = configuration.allowClockChange
        options.duplicateWindowSeconds = max(7, configuration.idempotencyDays) * 86_400
        return try JetStreamStore(options: options, willVisit: willVisit, visit: visit)
    }
}

/// The exit status for a store that cannot be opened: 75 (start again later) when the NATS
/// server or JetStream was out of reach, 78 (a configuration or data problem) otherwise.
func openingFailureCode(_ error: EventLogError) -> Int32 { JetStreamStore.isUnreachable(error) ? 75 : 78 }
