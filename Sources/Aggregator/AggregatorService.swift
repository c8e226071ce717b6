import Billing
import Dispatch
import Foundation
import Projection
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

    let workers = owned.map { PartitionWorker(partition: $0, configuration: configuration) }
    let handler = AggregatorHandler(workers: workers)

    var listener: Listener
    let inherited = Systemd.inheritedSockets()
    if let socket = inherited.first {
        if inherited.count > 1 || !["aggregator", "aggregator.socket", "unknown"].contains(socket.name) {
            fail(
                "systemd passed \(inherited.count) sockets (\(inherited.map(\.name))); meter-aggregator takes one, FileDescriptorName=aggregator"
            )
        }
        listener = Listener(descriptor: socket.descriptor, name: "aggregator")
        Log.info("serving the socket passed by systemd")
    } else {
        do {
            try ServiceLifecycle.makeSocketDirectory(for: configuration.socket)
            listener = Listener(descriptor: try UnixSocket.listen(path: configuration.socket, mode: 0o660), name: "aggregator")
        } catch {
            fail("cannot listen on \(configuration.socket): \(error)")
        }
        Log.info("listening on \(configuration.socket) (mode 0660)")
    }
    var serverConfiguration = UnixServer.Configuration()
    serverConfiguration.maximumFrameLength = configuration.maximumFrameBytes
    let server: UnixServer
    do {
        server = try UnixServer(listeners: [listener], configuration: serverConfiguration, handler: handler)
    } catch {
        fail("cannot start the server: \(error)")
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
        server.stop()
        for worker in workers { worker.stop() }
    }
}

/// A start-up failure: logged, told to systemd, exit status `code`.
nonisolated func fail(_ message: String, code: Int32 = 78) -> Never { ServiceLifecycle.fail(message, code: code) }
