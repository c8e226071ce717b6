import Daemon
import Foundation
import HTTP
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Starts the emulator and serves until SIGTERM. Not isolated to the main actor: its closures
/// run on the server's threads and Dispatch queues.
nonisolated func runEmulator() -> Never {
    ServiceLifecycle.installTerminationHandling()
    let configuration = readConfiguration()
    UnixSocket.raiseOpenFileLimit()
    let marketplace = Marketplace(unknownResources: configuration.unknownResources, unknownDimensions: configuration.unknownDimensions)
    let clock = EmulatorClock(mode: configuration.clock, ingestSocket: configuration.ingestSocket)
    let handler = EmulatorHandler(
        marketplace: marketplace, clock: clock,
        tokens: TokenIssuer(requiredSecret: configuration.clientSecret, lifetime: configuration.tokenLifetime),
        requiresAuthorization: configuration.requiresAuthorization, offerId: configuration.offerId,
        azureSubscriptionId: configuration.azureSubscriptionId)
    var limits = HTTPServer.Limits()
    limits.maximumConnections = configuration.maximumConnections
    let server: HTTPServer
    do {
        server = try HTTPServer(host: configuration.host, port: configuration.port, limits: limits, handler: handler)
    } catch {
        ServiceLifecycle.fail("cannot listen on \(configuration.host):\(configuration.port): \(error)")
    }
    // A wildcard address is reachable on loopback, and clients cannot connect to 0.0.0.0.
    let advertisedHost = configuration.host == "0.0.0.0" ? "127.0.0.1" : configuration.host
    let address = "http://\(advertisedHost):\(server.port)"
    ServiceLifecycle.publishAddress(address, to: configuration.addressFile)
    server.start()
    var details = ["clock \(configuration.clock.rawValue)"]
    if configuration.clock == .ingest { details.append("following \(configuration.ingestSocket)") }
    details.append(configuration.requiresAuthorization ? "bearer tokens required" : "no authorization (--no-auth)")
    details.append(configuration.clientSecret == nil ? "any client secret" : "one client secret accepted")
    details.append("\(configuration.unknownResources.count) unknown resources, \(configuration.unknownDimensions.count) unknown dimensions")
    Log.info("listening on \(address) (\(details.joined(separator: ", "))); address in \(configuration.addressFile)")
    Systemd.notifyReady(status: "listening on \(address)")
    ServiceLifecycle.runUntilTerminated(stopping: "answering the requests in hand") {
        server.stop(waitingUpTo: 5)
        ServiceLifecycle.removeAddressFile(address, at: configuration.addressFile)
    }
}

/// `ServiceLifecycle.configure`, with on/off flags such as `--no-auth` accepted without a value.
private func readConfiguration() -> EmulatorConfiguration {
    Log.setComponent("meter-marketplace-emulator")
    do {
        let arguments = EmulatorConfiguration.normalizedArguments(Array(CommandLine.arguments.dropFirst()))
        var settings = try Settings(arguments: arguments)
        ServiceLifecycle.answerHelpOrVersion(settings, component: "meter-marketplace-emulator", usage: EmulatorConfiguration.usage)
        try Log.configure(environment: settings.environment)
        return try EmulatorConfiguration(settings: &settings)
    } catch {
        ServiceLifecycle.fail("\(error)", code: 64)
    }
}
