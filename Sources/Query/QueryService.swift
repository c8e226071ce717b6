import AdapterKit
import Crypto
import Daemon
import Foundation
import HTTP
import Metrics
import Projection
import QueryModel
import QueryWeb
import SystemIO
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Starts the query service and serves until SIGTERM. Not isolated to the main actor: its closures
/// run on Dispatch queues and worker threads.
nonisolated func runQuery() -> Never {
    let configuration = ServiceLifecycle.configure(component: "meter-query", usage: QueryConfiguration.usage) {
        (settings: inout Settings) throws(SettingsError) in try QueryConfiguration(settings: &settings)
    }
    UnixSocket.raiseOpenFileLimit()

    let usage: UsageStore
    let submissions: Journal
    let binding: LogBinding
    do {
        try StateLock.take(configuration.dataDirectory, by: "meter-query")
        binding = try LogBinding(root: configuration.dataDirectory)
    } catch {
        ServiceLifecycle.fail("\(error) (METERING_QUERY_DATA)")
    }
    let partitionCount = PartitionFollower.waitForPartitionCount(
        ingestSocket: configuration.ingestSocket, maximumFrameBytes: configuration.maximumFrameBytes)
    do {
        try setAsideOldUsageJournal(configuration.dataDirectory)
        usage = try UsageStore(
            directory: configuration.dataDirectory + "/usage", partitions: partitionCount, retentionDays: configuration.usageRetentionDays)
        submissions = try Journal(path: configuration.dataDirectory + "/submissions.journal")
    } catch {
        ServiceLifecycle.fail("cannot open the read models in \(configuration.dataDirectory) (METERING_QUERY_DATA): \(error)")
    }
    let watchers = WatcherRegistry(maximum: configuration.maximumWatchers)
    let workers = ViewWorker.restoreAll(
        partitions: partitionCount, configuration: configuration, usage: usage, submissions: submissions, watchers: watchers,
        binding: binding)
    let handler = QueryHandler(workers: workers, usage: usage, submissions: submissions, watchers: watchers, configuration: configuration)
    let metrics = MetricsRegistry()
    FoldMetrics.register(
        metrics, component: "query",
        partitions: workers.map { worker in
            FoldMetrics.Partition(
                partition: worker.partition, position: { worker.nextSequence() }, ingestNext: { worker.followerProgress.ingestNext },
                figures: { worker.read { FoldMetrics.Figures($0.state) } })
        })
    let endpoint = ServiceLifecycle.starting { () throws(StartupFailure) in
        try MetricsEndpoint.serve(configuration.metrics, component: "meter-query", home: configuration.home, registry: metrics)
    }

    // The run-rate page and the usage API take up to a quarter each of the descriptors left for
    // connections (256 at most); the socket's budget is derived from what remains.
    var pageLimits = HTTPServer.Limits()
    var adapterLimits = HTTPServer.Limits()
    var reserved = 128
    if configuration.http != nil {
        pageLimits.maximumConnections = max(4, DescriptorBudget.measure(reserve: reserved).cap(pageLimits.maximumConnections, ways: 4))
        reserved += pageLimits.maximumConnections
    }
    if configuration.adapterHTTP != nil {
        adapterLimits.maximumConnections = max(
            4, DescriptorBudget.measure(reserve: reserved).cap(adapterLimits.maximumConnections, ways: 4))
        reserved += adapterLimits.maximumConnections
    }
    let server = ServiceLifecycle.starting { () throws(StartupFailure) in
        try UnixServer.oneSocket(
            component: "meter-query", name: "query", path: configuration.socket, setting: "METERING_QUERY_SOCKET",
            maximumFrameBytes: configuration.maximumFrameBytes, reservedDescriptors: reserved, handler: handler)
    }

    // The customer run-rate page: read-only, off unless configured, every request with a signed,
    // expiring token for one subscription.
    var web: HTTPServer?
    if let http = configuration.http {
        do {
            let secret = try AccessTokenSecret.loadOrCreate(path: configuration.tokenSecretFile)
            let pages = RunRateHTTPHandler(verifier: AccessTokenVerifier(secret: secret)) { name in
                Result { () throws(WireError) in JSONObject([.init("ok", true)] + (try handler.runRate(name, series: true)).members) }
            }
            web = try HTTPServer(host: http.host, port: http.port, limits: pageLimits, handler: pages)
        } catch {
            ServiceLifecycle.fail("cannot serve the run-rate page on \(http.host):\(http.port) (METERING_QUERY_HTTP): \(error)")
        }
        if let web {
            // Tests and `meterctl up` learn the port (0 asks the kernel for one) from this file.
            try? ServiceLifecycle.writeAddressFile("http://\(web.host):\(web.port)", to: configuration.home + "/run/query-http.addr")
            Log.info("run-rate page on http://\(web.host):\(web.port)/ (tokens from meterctl token)")
        }
    }

    // The usage API for billing adapters: read-only, off unless configured, every request with an
    // adapter key from meterctl adapters.
    var adapters: HTTPServer?
    if let address = configuration.adapterHTTP {
        do {
            let credentials = try AdapterCredentialDirectory(store: AdapterCredentialStore(path: configuration.adapterCredentials))
            adapters = try HTTPServer(
                host: address.host, port: address.port, limits: adapterLimits,
                handler: AdapterHTTPHandler(credentials: credentials, backend: handler))
            Log.info("adapter credentials in \(configuration.adapterCredentials): \(credentials.count)")
        } catch {
            ServiceLifecycle.fail(
                "cannot serve the usage API on \(address.host):\(address.port) (METERING_QUERY_ADAPTER_HTTP, METERING_ADAPTER_CREDENTIALS): \(error)"
            )
        }
        if let adapters {
            try? ServiceLifecycle.writeAddressFile("http://\(adapters.host):\(adapters.port)", to: configuration.adapterAddressFile)
            Log.info("usage API on http://\(adapters.host):\(adapters.port)/v1/ (keys from meterctl adapters create)")
        }
    }

    let pageServer = web
    let adapterServer = adapters
    let started = Date()
    for worker in workers { worker.start() }
    server.start()
    pageServer?.start()
    adapterServer?.start()
    let ready = "read models of \(partitionCount) partitions from \(configuration.ingestSocket)"
    Systemd.notifyReady(status: ready)
    let position = usage.position
    Log.info(
        "ready: \(ready) (usage records: ids \(position.firstId)..<\(position.nextId) numbered, kept \(configuration.usageRetentionDays) days; submission records: \(submissions.count))"
    )
    Thread {
        for worker in workers { _ = worker.waitUntilCaughtUp(timeout: 86_400) }
        let folded = workers.reduce(0) { $0 + $1.followerProgress.recordsFolded }
        Log.info("caught up with ingest: \(folded) records folded in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        // Catching up parses large batches on four threads; hand the freed arenas back to the
        // system so the resident size is the read models', not the peak of the parsing.
        ServiceLifecycle.releaseFreeMemory()
        Systemd.notifyStatus("caught up; \(ready)")
    }.start()

    ServiceLifecycle.runUntilTerminated(stopping: "writing snapshots") {
        endpoint?.stop()
        pageServer?.stop(waitingUpTo: 2)
        adapterServer?.stop(waitingUpTo: 2)
        server.stop()
        for worker in workers { worker.stop() }
    }
}

/// The single usage journal of versions before usage ids came from the log: its ids were this
/// replica's own. It is kept aside (`usage.journal.v1`), and the snapshots that count its lines are
/// refused by the new journals, so the partitions are folded again and every record gets its id
/// anew, the same on every replica.
private func setAsideOldUsageJournal(_ directory: String) throws {
    let old = directory + "/usage.journal"
    guard FileManager.default.fileExists(atPath: old) else { return }
    let aside = old + ".v1"
    guard rename(old, aside) == 0 else { throw SystemError("rename", "\(old) to \(aside)") }
    Log.notice(
        "usage ids now follow from the log and are the same on every replica: \(old) was moved to \(aside) and the log is folded again; billing adapters start again from id 0 (docs/BILLING-ADAPTERS.md)"
    )
}
