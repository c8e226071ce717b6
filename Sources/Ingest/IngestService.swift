import Daemon
import Dispatch
import EventStore
import Foundation
import Metrics
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Starts ingest and serves until SIGTERM. Not isolated to the main actor: its closures run on
/// Dispatch queues (the committer commits on the thread that submits to it when idle).
nonisolated func runIngest() -> Never {
    let configuration = ServiceLifecycle.configure(component: "meter-ingest", usage: IngestConfiguration.usage) {
        (settings: inout Settings) throws(SettingsError) in try IngestConfiguration(settings: &settings)
    }

    UnixSocket.raiseOpenFileLimit()

    // Recovery: open the log, rebuilding routing and idempotency from record headers.
    let recoveryStart = Date()
    var purchases: [ResourceName] = []
    var definitions: [(partition: Int, sequence: UInt64)] = []
    var idempotency = IdempotencyIndex(retentionDays: configuration.idempotencyDays, capacity: configuration.expectedKeys)
    var newestTime: Timestamp?
    var keysRead = 0
    let log: any RecordStore
    do {
        log = try openStore(
            configuration,
            willVisit: { records, newest in
                newestTime = newest
                idempotency.reserveCapacity(records)
            },
            visit: { partition, sequence, time, meta in
                if let resource = meta.purchasedResource { purchases.append(resource) }
                if meta.definesPlan { definitions.append((partition, sequence)) }
                // The JetStream store shows keys one by one (the embedded log gives them to `keys`).
                if let digest = meta.keyDigest ?? meta.idempotencyKey.map(IdempotencyIndex.digest),
                    idempotency.isRetained(time, now: newestTime ?? time)
                {
                    keysRead += 1
                    idempotency.remember(
                        digest: digest,
                        at: IdempotencyIndex.Position(
                            partition: partition, sequence: sequence, enqueuedTime: time, payloadDigest: meta.payloadDigest))
                }
            },
            keys: { keys in
                // Keys already outside the window are never remembered: the log's newest time is known.
                let horizon = (newestTime ?? .epoch).adding(microseconds: -idempotency.retentionMicroseconds)
                keysRead += keys.count
                idempotency.remember(keys, retainedFrom: horizon)
            },
            keysFrom: { identity, next in
                // The embedded log: the index lives in a file beside it, taken over when it can be trusted.
                let opened = IdempotencyIndex.opening(
                    path: configuration.logDirectory + "/" + EventLog.idempotencyTableName, identity: identity,
                    partitions: next.count, logNext: next, retentionDays: configuration.idempotencyDays,
                    expectedKeys: configuration.expectedKeys)
                idempotency = opened.index
                if let notice = opened.notice { Log.notice(notice) }
                return opened.from
            })
    } catch {
        fail("cannot open the event log: \(error)", code: openingFailureCode(error))
    }
    for notice in log.notices { Log.notice(notice) }
    // Routes follow the log's own partition count, which is fixed when the log is created.
    var router = PartitionRouter(partitionCount: log.storedPartitions.count)
    for resource in purchases { router.learnPurchase(resource) }
    purchases = []
    // The plan catalog, from the few records the segment summaries point at, in log order.
    var catalog = PlanCatalog()
    do {
        catalog = try PlanCatalog.recovered(from: log, definitions: definitions)
    } catch {
        fail("cannot read the plan catalog from the event log: \(error)")
    }
    if let newestTime { idempotency.expire(now: newestTime) }
    if idempotency.isKeptInFile { idempotency.cover(log.storedPartitions.map(\.nextSequence)) }
    // Growths while reading keys one by one (a store that cannot say beforehand how many records
    // it holds, as JetStream's): not growths while appending, so said here and not in the metrics.
    let recoveryGrowths =
        idempotency.growths == 0
        ? ""
        : "; the table grew \(idempotency.growths) time\(idempotency.growths == 1 ? "" : "s") while recovering (\(Int(idempotency.growthSeconds * 1000)) ms; \(IngestConfiguration.expectedKeysHint))"
    Log.info(
        "recovered \(log.storedPartitions.reduce(0) { $0 + Int($1.nextSequence) }) records in \(log.storedPartitions.count) partitions in \(String(format: "%.2f", Date().timeIntervalSince(recoveryStart))) s; log \(log.identity), clock \(log.clock); \(idempotency.count) idempotency keys in a table of \(idempotency.memoryBytes < 1 << 20 ? "\(idempotency.memoryBytes >> 10) KiB" : "\(idempotency.memoryBytes >> 20) MiB") (\(idempotency.isKeptInFile ? "\(keysRead) read from the log, \(max(0, idempotency.count - keysRead)) taken over from its table file" : "kept in memory only"), \(router.knownNames) purchased names, \(catalog.count) catalog plans\(recoveryGrowths)"
    )

    let clock = Clock(
        mode: configuration.clock == .manual ? .manual : .system, start: newestTime ?? Timestamp.epoch)
    let committer = Committer(
        log: log, clock: clock, attribution: configuration.attribution, router: router, idempotency: idempotency, catalog: catalog)

    // Sockets: from systemd when socket-activated, else bound at the configured paths.
    var listeners: [Listener] = []
    let inherited = Systemd.inheritedSockets()
    if !inherited.isEmpty {
        for socket in inherited {
            switch socket.name {
            case "client", "ingest", "ingest.socket":
                listeners.append(Listener(descriptor: socket.descriptor, name: IngestHandler.clientListener))
            case "admin", "ingest-admin", "ingest-admin.socket":
                listeners.append(Listener(descriptor: socket.descriptor, name: IngestHandler.adminListener))
            default:
                fail("systemd passed a socket named \"\(socket.name)\"; name them FileDescriptorName=client and FileDescriptorName=admin")
            }
        }
        Log.info("serving \(listeners.count) sockets passed by systemd (\(listeners.map(\.name).joined(separator: ", ")))")
    } else {
        do {
            for path in [configuration.clientSocket, configuration.adminSocket] {
                let parent = (path as NSString).deletingLastPathComponent
                try FileManager.default.createDirectory(
                    atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
            }
            listeners.append(
                Listener(
                    descriptor: try UnixSocket.listen(path: configuration.clientSocket, mode: 0o660), name: IngestHandler.clientListener))
            listeners.append(
                Listener(descriptor: try UnixSocket.listen(path: configuration.adminSocket, mode: 0o600), name: IngestHandler.adminListener)
            )
        } catch {
            fail("cannot listen: \(error)")
        }
        Log.info("listening on \(configuration.clientSocket) (client, mode 0660) and \(configuration.adminSocket) (admin, mode 0600)")
    }

    // Connection budgets from the open-file limit, after the log and the sockets are open.
    let descriptors = DescriptorBudget.measure(reserve: IngestConfiguration.reservedDescriptors)
    let budgets: (client: Int, admin: Int)
    do {
        budgets = try configuration.connectionBudgets(within: descriptors)
    } catch {
        fail("\(error)")
    }
    if configuration.maximumConnectionsExplicit && budgets.client < configuration.maximumConnections {
        Log.warning(
            "METERING_MAX_CONNECTIONS=\(configuration.maximumConnections) does not fit the open-file limit (\(descriptors)): the client socket takes \(budgets.client)"
        )
    }
    for index in listeners.indices {
        listeners[index].maximumConnections = listeners[index].name == IngestHandler.adminListener ? budgets.admin : budgets.client
    }
    Log.info("connections: \(budgets.client) on the client socket, \(budgets.admin) on the admin socket (\(descriptors))")
    var serverConfiguration = UnixServer.Configuration()
    serverConfiguration.maximumFrameLength = configuration.maximumFrameBytes
    serverConfiguration.idleTimeoutSeconds = Double(configuration.idleTimeoutSeconds)
    nonisolated(unsafe) var serverReference: UnixServer?
    let connectionCount: @Sendable () -> Int = { serverReference?.connectionCount ?? 0 }
    let handler = IngestHandler(log: log, committer: committer, clock: clock, connectionCount: connectionCount)
    let server: UnixServer
    do {
        server = try UnixServer(listeners: listeners, configuration: serverConfiguration, handler: handler)
    } catch {
        fail("cannot start the server: \(error)")
    }
    serverReference = server
    ingestMetrics.registry.collect("metering_ingest_connections", "Connections open on ingest's sockets.", kind: .gauge) {
        [MetricsRegistry.Sample(Double(connectionCount()))]
    }
    let endpoint = ServiceLifecycle.starting { () throws(StartupFailure) in
        try MetricsEndpoint.serve(
            configuration.metrics, component: "meter-ingest", home: configuration.home, registry: ingestMetrics.registry)
    }

    // A tick on every partition at start-up, then shortly after every full hour (system clock).
    let startTick = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var ticked = 0
    committer.submit(
        .ticks(reason: "starting") { positions in
            ticked = positions.count
            startTick.signal()
        })
    startTick.wait()
    // A start whose first write failed is not a start: never report it ready.
    guard ticked == log.storedPartitions.count else { fail("cannot write the start-up tick to the log; see the error above", code: 75) }
    server.start()

    // The high-water marks follow what was acknowledged at least once a second (never per append),
    // so damage that loses a record acknowledged more than a second before is always detected.
    let marks = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "ingest-high-water"))
    marks.schedule(deadline: .now() + 1, repeating: 1, leeway: .milliseconds(100))
    nonisolated(unsafe) var marksFailing = false
    marks.setEventHandler {
        do {
            try log.checkpoint()
            if marksFailing { Log.notice("high-water marks written again") }
            marksFailing = false
        } catch {
            if !marksFailing { Log.error("\(error); will retry every second") }
            marksFailing = true
        }
    }
    marks.resume()

    let ticker = DispatchQueue(label: "ingest-ticker")
    // Hours close at their end plus the late grace: a tick then too, so they close without traffic.
    let graceOffset = Double(configuration.attribution.lateGrace % Timestamp.microsecondsPerHour) / 1_000_000
    @Sendable func scheduleHourlyTick() {
        let now = Date().timeIntervalSince1970
        let hour = floor(now / 3600) * 3600
        let candidates = [hour + 3600 + 1, hour + graceOffset + 1, hour + 3600 + graceOffset + 1].filter { $0 > now }
        let next = candidates.min()!
        ticker.asyncAfter(wallDeadline: .now() + (next - now)) {
            committer.submit(.ticks(reason: "newhour") { _ in })
            scheduleHourlyTick()
        }
    }
    if clock.mode == .system { scheduleHourlyTick() }

    let readyStatus =
        "serving \(log.storedPartitions.count) partitions, clock \(configuration.clock.rawValue), attribution \(configuration.attribution)"
    Systemd.notifyReady(status: readyStatus)
    Log.info("ready: \(readyStatus), log at \(log.location)")

    // SIGTERM / SIGINT: stop accepting, finish what is queued, release the log.
    ServiceLifecycle.runUntilTerminated(stopping: "shutting down") {
        endpoint?.stop()
        server.stop()
        committer.stop()
        do { try log.checkpoint() } catch { Log.error("\(error) at shutdown") }
        log.shutDown()
    }
}

/// A start-up failure: logged, told to systemd, exit status `code`.
nonisolated func fail(_ message: String, code: Int32 = 78) -> Never { ServiceLifecycle.fail(message, code: code) }
