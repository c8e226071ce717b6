public import Daemon
import Foundation
public import HTTP
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Where a daemon serves its metrics (`METERING_METRICS_ADDR`): a loopback TCP address, or a Unix
/// socket. Anything else is refused at start-up: the figures tell business volumes, so they are
/// never served beyond the host by accident (a scraper elsewhere goes through a proxy that the
/// operator sets up on purpose).
public struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    /// A loopback host and port (0: the kernel picks one), or a Unix socket's path.
    public enum Place: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var place: Place

    /// The line every daemon's `--help` shows for the setting.
    public static let usageLine =
        "  --metrics-addr        METERING_METRICS_ADDR                  off (127.0.0.1:PORT, PORT 0 for any, or unix:PATH: Prometheus metrics on GET /metrics)"

    /// Reads `--metrics-addr` / `METERING_METRICS_ADDR`; nil when it is not given (metrics off).
    public static func setting(_ settings: inout Settings) throws(SettingsError) -> MetricsAddress? {
        guard let text = settings.optionalString("metrics-addr", "METERING_METRICS_ADDR") else { return nil }
        return try parse(text)
    }

    /// Parses `127.0.0.1:9464`, `localhost:9464`, `127.0.0.1:0` or `unix:/run/metering/metrics.sock`.
    public static func parse(_ text: String) throws(SettingsError) -> MetricsAddress {
        let expected = "expected a loopback address such as 127.0.0.1:9464 (port 0 for any free one) or unix:/path/to/metrics.sock"
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), path.utf8.count < 100 else {
                throw SettingsError(
                    "invalid METERING_METRICS_ADDR=\"\(text)\": a Unix socket needs an absolute path shorter than 100 bytes")
            }
            return MetricsAddress(place: .unix(path: path))
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw SettingsError("invalid METERING_METRICS_ADDR=\"\(text)\": \(expected)")
        }
        var host = String(text[..<colon])
        if host == "localhost" { host = "127.0.0.1" }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false).map { UInt8($0) }
        guard octets.count == 4, !octets.contains(nil), octets[0] == 127 else {
            throw SettingsError(
                "invalid METERING_METRICS_ADDR=\"\(text)\": metrics are served on loopback only (127.0.0.0/8) or a Unix socket; \(expected)"
            )
        }
        return MetricsAddress(place: .tcp(host: host, port: port))
    }

    public var description: String {
        switch place {
        case .tcp(let host, let port): return "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }
}

/// The HTTP endpoint of a daemon's metrics: `GET /metrics` answers the registry's exposition,
/// anything else 404. Its address goes to `$METERING_HOME/run/metrics/<component>.addr`, so that
/// scripts and tests find an ephemeral port.
public final class MetricsEndpoint: Sendable {
    public let server: HTTPServer
    /// `http://host:port` or `unix:path`, as written to the address file.
    public let address: String
    private let addressFile: String

    private init(server: HTTPServer, address: String, addressFile: String) {
        self.server = server
        self.address = address
        self.addressFile = addressFile
    }

    /// The address file of `component` under `home`.
    public static func addressFile(home: String, component: String) -> String { home + "/run/metrics/" + component + ".addr" }

    /// Starts serving `registry` at `address` (nil: metrics off, nothing happens), with the
    /// process figures every daemon has added to it. Throws, naming the setting, when the
    /// address cannot be bound or its address file written.
    public static func serve(_ address: MetricsAddress?, component: String, home: String, registry: MetricsRegistry) throws(StartupFailure)
        -> MetricsEndpoint?
    {
        guard let address else { return nil }
        registerProcessMetrics(registry, component: component)
        var limits = HTTPServer.Limits()
        limits.maximumConnections = 16
        limits.maximumConcurrentRequests = 2
        limits.maximumBodyBytes = 0
        let handler = Handler(registry: registry)
        let server: HTTPServer
        let text: String
        do {
            switch address.place {
            case .tcp(let host, let port):
                server = try HTTPServer(host: host, port: port, limits: limits, handler: handler)
                text = "http://\(server.host):\(server.port)"
            case .unix(let path):
                try ServiceLifecycle.makeSocketDirectory(for: path)
                server = try HTTPServer(socketPath: path, mode: 0o660, limits: limits, handler: handler)
                text = "unix:\(path)"
            }
        } catch {
            throw StartupFailure("cannot serve metrics at \(address) (METERING_METRICS_ADDR): \(error)")
        }
        let file = addressFile(home: home, component: component)
        do {
            try ServiceLifecycle.writeAddressFile(text, to: file)
        } catch {
            throw StartupFailure("cannot write \(file): \(error)")
        }
        server.start()
        Log.info("metrics on \(text)/metrics")
        return MetricsEndpoint(server: server, address: text, addressFile: file)
    }

    /// Stops serving and removes the address file.
    public func stop() {
        server.stop(waitingUpTo: 1)
        ServiceLifecycle.removeAddressFile(address, at: addressFile)
    }

    /// The figures of the process itself: when it started, its resident memory, its version.
    static func registerProcessMetrics(_ registry: MetricsRegistry, component: String) {
        let started = Date().timeIntervalSince1970
        registry.collect("process_start_time_seconds", "When the process started, in seconds since the Unix epoch.", kind: .gauge) {
            [MetricsRegistry.Sample(started)]
        }
        registry.collect("process_resident_memory_bytes", "Resident memory of the process in bytes.", kind: .gauge) {
            [MetricsRegistry.Sample(residentBytes())]
        }
        registry.collect(
            "metering_build_info", "The component and release of this process (always 1).", kind: .gauge, labels: ["component", "version"]
        ) { [MetricsRegistry.Sample([component, Version.release], 1)] }
    }

    /// Resident pages times the page size, from `/proc/self/statm`; 0 where there is none.
    static func residentBytes() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE)))
    }

    private struct Handler: HTTPHandler {
        let registry: MetricsRegistry

        func handle(_ request: HTTPRequest) -> HTTPReply {
            guard request.path == "/metrics" else {
                return .respond(HTTPResponse(status: 404, headers: [("Content-Type", "text/plain")], body: Array("GET /metrics\n".utf8)))
            }
            guard request.method == "GET" || request.method == "HEAD" else {
                return .respond(HTTPResponse(status: 405, headers: [("Allow", "GET, HEAD")]))
            }
            return .respond(HTTPResponse(status: 200, headers: [("Content-Type", TextExposition.contentType)], body: registry.exposition()))
        }

        func refused(_ status: Int, reason: String) {}
    }
}
