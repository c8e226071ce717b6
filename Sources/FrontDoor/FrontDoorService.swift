import Daemon
import Foundation
import FrontDoorKit
import HTTP
import Metrics
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Starts the front door and serves until SIGTERM. Not isolated to the main actor: its closures
/// run on the server's threads and Dispatch queues.
nonisolated func runFrontDoor() -> Never {
    let configuration = ServiceLifecycle.configure(component: "meter-frontdoor", usage: FrontDoorConfiguration.usage) {
        (settings: inout Settings) throws(SettingsError) in try FrontDoorConfiguration(settings: &settings)
    }
    let credentials: CredentialDirectory
    do {
        credentials = try CredentialDirectory(store: CredentialStore(path: configuration.credentials))
    } catch {
        ServiceLifecycle.fail("cannot use the credential file (METERING_FRONTDOOR_CREDENTIALS): \(error)")
    }
    let handler = FrontDoorHandler(configuration: configuration, credentials: credentials)
    // Each connection in a request also holds one to ingest: two descriptors per connection.
    let descriptors = DescriptorBudget.measure(reserve: 64)
    var limits = HTTPServer.Limits()
    limits.maximumConnections = descriptors.cap(configuration.maximumConnections, ways: 2)
    if limits.maximumConnections < 4 { ServiceLifecycle.fail(descriptors.tooFew(8)) }
    if limits.maximumConnections < configuration.maximumConnections {
        Log.warning(
            "METERING_FRONTDOOR_MAX_CONNECTIONS=\(configuration.maximumConnections) does not fit the open-file limit (\(descriptors)): serving \(limits.maximumConnections)"
        )
    }
    limits.maximumBodyBytes = configuration.maximumBodyBytes
    let server: HTTPServer
    let address: String
    do {
        switch configuration.listen {
        case .tcp(let host, let port):
            server = try HTTPServer(host: host, port: port, limits: limits, handler: handler)
            address = "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(server.port)"
            if host != "127.0.0.1" {
                Log.warning("listening on \(host), not loopback: only a TLS-terminating proxy should reach this port (docs/FRONTDOOR.md)")
            }
        case .unix(let path):
            try ServiceLifecycle.makeSocketDirectory(for: path)
            server = try HTTPServer(socketPath: path, limits: limits, handler: handler)
            address = "unix:\(path)"
        }
    } catch {
        ServiceLifecycle.fail("cannot listen on METERING_FRONTDOOR_LISTEN=\(configuration.listen): \(error)")
    }
    ServiceLifecycle.publishAddress(address, to: configuration.addressFile)
    let endpoint = ServiceLifecycle.starting { () throws(StartupFailure) in
        try MetricsEndpoint.serve(
            configuration.metrics, component: "meter-frontdoor", home: configuration.home, registry: frontDoorMetrics.registry)
    }
    server.start()
    Log.info(
        "listening on \(address); appending to \(configuration.ingestSocket); \(credentials.count) credentials in \(configuration.credentials); skew \(configuration.maximumSkewSeconds) s, \(configuration.rate) requests/s per credential (burst \(configuration.burst)), \(configuration.maximumEvents) messages and \(configuration.maximumBodyBytes) bytes per request"
    )
    Systemd.notifyReady(status: "listening on \(address)")
    ServiceLifecycle.runUntilTerminated(stopping: "answering the requests in hand") {
        endpoint?.stop()
        server.stop(waitingUpTo: 5)
        ServiceLifecycle.removeAddressFile(address, at: configuration.addressFile)
    }
}
