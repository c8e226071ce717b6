import Daemon
import EventStore
import Foundation
import Metrics
import Projection
import Synchronization
import SystemIO
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The thresholds the folds check, replaced whenever a registration changes.
final class RulesBox: Sendable {
    private let rules = Mutex(ThresholdRules([]))

    var current: ThresholdRules {
        get { rules.withLock { $0 } }
        set { rules.withLock { $0 = newValue } }
    }
}

/// Starts the notifier and serves until SIGTERM. Not isolated to the main actor: its closures run
/// on Dispatch queues and worker threads.
nonisolated func runNotifier() -> Never {
    let configuration = ServiceLifecycle.configure(component: "meter-notifier", usage: NotifierConfiguration.usage) {
        (settings: inout Settings) throws(SettingsError) in try NotifierConfiguration(settings: &settings)
    }
    UnixSocket.raiseOpenFileLimit()
    let data = configuration.dataDirectory
    let binding: LogBinding
    do {
        // The registrations hold the subscribers' secrets: the directory is the notifier's alone.
        try FileIO.makeDirectory(data, mode: 0o700)
        chmod(data, 0o700)
        try StateLock.take(data, by: "meter-notifier")
        binding = try LogBinding(root: data)
    } catch {
        ServiceLifecycle.fail("\(error) (METERING_NOTIFIER_DATA)")
    }
    let partitionCount = PartitionFollower.waitForPartitionCount(
        ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes)
    let outboxes: [Outbox]
    do {
        outboxes = try (0..<partitionCount).map { partition throws(Outbox.Failure) in
            let digits = String(partition)
            return try Outbox(
                directory: data + "/outbox/p" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits, partition: partition)
        }
    } catch {
        ServiceLifecycle.fail("cannot open the outbox in \(data) (METERING_NOTIFIER_DATA): \(error)")
    }
    let metrics = NotifierMetrics()
    let rules = RulesBox()
    let dispatcher: Dispatcher
    do {
        dispatcher = try Dispatcher(
            directory: data, outboxes: outboxes, settings: configuration.delivery, metrics: metrics,
            rulesChanged: { rules.current = $0 })
    } catch {
        ServiceLifecycle.fail("cannot read the registrations in \(data) (METERING_NOTIFIER_DATA): \(error)")
    }
    rules.current = dispatcher.rules
    let workers = (0..<partitionCount).map { partition in
        NotificationWorker(
            partition: partition, configuration: configuration, outbox: outboxes[partition], binding: binding, metrics: metrics,
            rules: { rules.current }, wrote: { dispatcher.outboxesGrew() })
    }
    let handler = NotifierHandler(dispatcher: dispatcher, workers: workers)
    let server = ServiceLifecycle.starting { () throws(StartupFailure) in
        try UnixServer.oneSocket(
            component: "meter-notifier", name: "notifier", path: configuration.socket, setting: "METERING_NOTIFIER_SOCKET",
            maximumFrameBytes: configuration.maximumFrameBytes, handler: handler)
    }
    // Registering a URL sends it billing events: the socket is the owner's alone when bound here.
    if Systemd.inheritedSockets().isEmpty { chmod(configuration.socket, 0o600) }

    registerMetrics(metrics.registry, workers: workers, dispatcher: dispatcher)
    let endpoint = ServiceLifecycle.starting { () throws(StartupFailure) in
        try MetricsEndpoint.serve(
            configuration.metrics, component: "meter-notifier", home: configuration.home, registry: metrics.registry)
    }

    for worker in workers { worker.start() }
    dispatcher.start()
    server.start()
    // Segments every subscriber has passed are deleted once a minute.
    Thread {
        while true {
            Thread.sleep(forTimeInterval: 60)
            dispatcher.prune()
        }
    }.start()
    let ready = "notifications of \(partitionCount) partitions from \(configuration.ingestSocket), \(dispatcher.list().count) subscribers"
    Systemd.notifyReady(status: ready)
    Log.info("ready: \(ready)")

    ServiceLifecycle.runUntilTerminated(stopping: "writing snapshots and cursors") {
        endpoint?.stop()
        server.stop()
        for worker in workers { worker.stop() }
        dispatcher.stop()
    }
}

/// The figures read at each scrape: how far each partition's fold is behind ingest, and per
/// subscriber the notifications not yet delivered and the dead letters.
private func registerMetrics(_ registry: MetricsRegistry, workers: [NotificationWorker], dispatcher: Dispatcher) {
    registry.collect(
        "metering_notifier_lag_records", "Records of the partition that ingest has and the notifier has not folded yet.", kind: .gauge,
        labels: ["partition"]
    ) {
        workers.map { worker in
            let next = worker.nextSequenceFolded
            let head = worker.followerProgress.ingestNext ?? next
            return MetricsRegistry.Sample([String(worker.partition)], Double(head > next ? head - next : 0))
        }
    }
    registry.collect(
        "metering_notifier_backlog_notifications",
        "Notifications in the outbox after the subscriber's cursors (not yet delivered or skipped).",
        kind: .gauge, labels: ["subscriber"]
    ) { dispatcher.figures.map { MetricsRegistry.Sample([$0.id], Double($0.backlog)) } }
    registry.collect(
        "metering_notifier_dead_letters", "Notifications that ran out of delivery attempts, kept until retried.", kind: .gauge,
        labels: ["subscriber"]
    ) { dispatcher.figures.map { MetricsRegistry.Sample([$0.id], Double($0.deadLetters)) } }
    registry.collect(
        "metering_notifier_subscriber_failing", "1 while the subscriber's latest delivery attempt failed.", kind: .gauge,
        labels: ["subscriber"]
    ) { dispatcher.figures.map { MetricsRegistry.Sample([$0.id], $0.failing ? 1 : 0) } }
}
