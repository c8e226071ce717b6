import Billing
import Daemon
import Dispatch
import Foundation
import Metrics
import Projection
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Starts the aggregator and serves until SIGTERM. Not isolated to the main actor: its closures
/// run on Dispatch queues and worker threads.
nonisolated func runAggregator() -> Never {
    let configuration = ServiceLifecycle.configure(component: "meter-aggregator", usage: AggregatorConfiguration.usage) {
        (settings: inout Settings) throws(SettingsError) in try AggregatorConfiguration(settings: &settings)
    }
    UnixSocket.raiseOpenFileLimit()

    // The partitions to own: configured, or every partition of ingest's log.
    let owned: [Int]
    if let partitions = configuration.partitions {
        owned = partitions
    } else {
        owned = Array(
            0..<PartitionFollower.waitForPartitionCount(
                ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes))
    }

    do {
        for partition in owned {
            try StateLock.take(
                SnapshotStore(root: configuration.snapshotDirectory, partition: partition, kept: 1).directory, by: "meter-aggregator")
        }
    } catch {
        ServiceLifecycle.fail("\(error)")
    }
    let workers = PartitionWorker.restoreAll(owned, configuration: configuration)
    let handler = AggregatorHandler(workers: workers)
    let metrics = MetricsRegistry()
    FoldMetrics.register(
        metrics, component: "aggregator",
        partitions: workers.map { worker in
            FoldMetrics.Partition(
                partition: worker.partition, position: { worker.nextSequence() }, ingestNext: { worker.progress.follower.ingestNext },
                figures: { worker.read { FoldMetrics.Figures($0) } })
        })
    let endpoint = ServiceLifecycle.starting { () throws(StartupFailure) in
        try MetricsEndpoint.serve(configuration.metrics, component: "meter-aggregator", home: configuration.home, registry: metrics)
    }
    let server = ServiceLifecycle.starting { () throws(StartupFailure) in
        try UnixServer.oneSocket(
            component: "meter-aggregator", name: "aggregator", path: configuration.socket, setting: "METERING_AGGREGATOR_SOCKET",
            maximumFrameBytes: configuration.maximumFrameBytes, handler: handler)
    }

    let started = Date()
    for worker in workers { worker.start() }
    server.start()
    let ready = "folding partitions \(owned.map(String.init).joined(separator: ",")) from \(configuration.ingestSocket)"
    Systemd.notifyReady(status: ready)
    Log.info("ready: \(ready)")
    Thread {
        for worker in workers { _ = worker.waitUntilCaughtUp(timeout: 86_400) }
        let applied = workers.reduce(0) { $0 + $1.progress.follower.recordsFolded }
        let seconds = Date().timeIntervalSince(started)
        Log.info("caught up with ingest: \(applied) records folded in \(String(format: "%.2f", seconds)) s")
        Systemd.notifyStatus("caught up; \(ready)")
    }.start()

    ServiceLifecycle.runUntilTerminated(stopping: "writing snapshots") {
        endpoint?.stop()
        server.stop()
        for worker in workers { worker.stop() }
    }
}
