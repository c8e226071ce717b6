import Daemon
import Foundation
import Metrics
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Starts the connector: settings and configuration checked, the state directory locked, every
/// watermark loaded and checked against the configuration, then one worker per source until SIGTERM.
nonisolated func runConnector() -> Never {
    let settings = ServiceLifecycle.configure(component: "meter-connector", usage: ConnectorSettings.usage) {
        (settings: inout Settings) throws(SettingsError) in try ConnectorSettings(settings: &settings)
    }
    let config: ConnectorConfig
    do {
        config = try settings.loadConfig()
    } catch {
        ServiceLifecycle.fail("\(error)")
    }
    let store = WatermarkStore(directory: settings.stateDirectory)
    do {
        try FileIO.makeDirectory(settings.stateDirectory)
        try ServiceLifecycle.makeSocketDirectory(for: settings.statusPath)
    } catch {
        ServiceLifecycle.fail("cannot create \(settings.stateDirectory) (METERING_CONNECTOR_STATE): \(error)")
    }
    // Kept open (and locked) for the life of the process.
    let lock: Int32
    do {
        lock = try FileIO.lockExclusively(settings.stateDirectory + "/LOCK")
    } catch {
        ServiceLifecycle.fail("another meter-connector uses the state directory \(settings.stateDirectory): \(error)")
    }
    var states: [SourceState] = []
    for source in config.sources {
        do {
            let state = try store.load(source.name) ?? SourceState(source: source.name, kind: source.kind)
            try check(state, against: source, store: store)
            states.append(state)
        } catch {
            ServiceLifecycle.fail("\(error)")
        }
    }
    let board = StatusBoard(
        path: settings.statusPath, sources: config.sources.map(\.name),
        header: [
            .init("pid", .number(String(getpid()))), .init("config", .string(settings.configPath)),
            .init("ingestSocket", .string(settings.ingestSocket)), .init("clock", .string(settings.clock.rawValue)),
            .init("started", .string(Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601)),
        ])
    let endpoint = ServiceLifecycle.starting { () throws(StartupFailure) in
        try MetricsEndpoint.serve(
            settings.metrics, component: "meter-connector", home: settings.home, registry: connectorMetrics(board))
    }
    let workers = zip(config.sources, states).map { source, state in
        SourceWorker(
            config: source, state: state, pollSeconds: Double(config.pollMilliseconds) / 1000, store: store,
            link: IngestLink(socket: settings.ingestSocket, clock: settings.clock), board: board, failpoint: settings.failpoint)
    }
    let done = DispatchGroup()
    for worker in workers {
        done.enter()
        let thread = Thread {
            worker.run()
            done.leave()
        }
        thread.name = "source-\(worker.config.name)"
        thread.start()
    }
    board.write()
    let ready = "\(workers.count) sources (\(config.sources.map(\.name).joined(separator: ", "))) into \(settings.ingestSocket)"
    Systemd.notifyReady(status: ready)
    Log.info("ready: \(ready); clock \(settings.clock.rawValue), status in \(settings.statusPath)")
    ServiceLifecycle.runUntilTerminated(stopping: "persisting watermarks") {
        for worker in workers { worker.stop() }
        // A command in flight is stopped and its run discarded; everything else stops at once.
        if done.wait(timeout: .now() + 20) == .timedOut { Log.warning("a source did not stop in 20 s") }
        board.stopped()
        endpoint?.stop()
        close(lock)
    }
}

extension SourceConfig {
    var kind: SourceState.Kind {
        if case .command = input { return .command }
        return .file
    }
}

/// A watermark must fit the configuration: same kind of source, and every meter it holds unsent
/// sums for still configured (dropping them would lose usage, guessing would mis-bill it).
private func check(_ state: SourceState, against source: SourceConfig, store: WatermarkStore) throws(WatermarkStore.Failure) {
    guard state.kind == source.kind else {
        throw WatermarkStore.Failure(
            description:
                "source \"\(source.name)\" is now a \(source.kind.rawValue) source but its watermark \(store.path(source.name)) is for a \(state.kind.rawValue) source; give the source a new name, or move the watermark aside"
        )
    }
    let known = Set(source.meters.map(\.name))
    let missing = Set(state.accumulator.open.keys.map(\.meter)).subtracting(known).sorted()
    if let meter = missing.first {
        throw WatermarkStore.Failure(
            description:
                "the watermark \(store.path(source.name)) holds usage not emitted yet for meter \"\(meter)\", which source \"\(source.name)\" no longer configures; configure it again until that usage is emitted"
        )
    }
}

/// The connector's figures, read from what each source last published: how far behind its input
/// it is and the lines it could not read.
nonisolated func connectorMetrics(_ board: StatusBoard) -> MetricsRegistry {
    let registry = MetricsRegistry()
    func each(_ name: String, _ help: String, kind: MetricsRegistry.Kind, _ value: @escaping @Sendable (JSONValue) -> JSONValue?) {
        registry.collect(name, help, kind: kind, labels: ["source"]) {
            board.statuses.compactMap { name, status in
                guard case .number(let text)? = value(status), let number = Double(text) else { return nil }
                return MetricsRegistry.Sample([name], number)
            }
        }
    }
    each("metering_connector_lag_bytes", "Bytes of a file source not read yet.", kind: .gauge) { $0["lag"]?["bytes"] }
    each("metering_connector_open_records", "Records counted into hours that are not sent yet.", kind: .gauge) { $0["lag"]?["records"] }
    each("metering_connector_malformed_lines_total", "Lines of a source that could not be read as a record.", kind: .counter) {
        $0["records"]?["malformed"]
    }
    each("metering_connector_late_records_total", "Records for hours already sent, not counted.", kind: .counter) {
        $0["records"]?["late"]
    }
    each("metering_connector_accepted_events_total", "Usage events ingest accepted from a source.", kind: .counter) {
        $0["events"]?["accepted"]
    }
    return registry
}
