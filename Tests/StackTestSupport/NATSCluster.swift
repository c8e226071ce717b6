import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Real `nats-server` processes on loopback for a test, configured by the repository's own
/// deploy/nats/nats-server.conf (a host.conf per node beside a copy of it): JetStream with file
/// storage, routes over TLS with certificates checked both ways, passwords for clients and routes.
/// The directory (stores, certificates, logs) is removed when the cluster goes.
public final class NATSCluster {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let directory: String
    public let clientPorts: [Int]
    public let routePorts: [Int]
    public let user = "ingest"
    public let password = "client-secret-\(UInt32.random(in: 0...UInt32.max))"
    let routePassword = "route-secret-\(UInt32.random(in: 0...UInt32.max))"
    private var processes: [Process?]
    private var logs: [String]

    static let executable: String? = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Where the repository's deploy/nats is.
    public static let deployDirectory: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/nats").path
    }()

    /// Starts `nodes` servers routed to each other and waits until each accepts clients.
    public init(nodes: Int) throws {
        guard NATSCluster.executable != nil else {
            throw Failure(
                description: "nats-server is not installed; install it with: apt-get install -y nats-server (scripts/bootstrap does)")
        }
        directory = "/tmp/mt-nats-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        clientPorts = try (0..<nodes).map { _ in try LoopbackPort.reusable() }
        routePorts = try (0..<nodes).map { _ in try LoopbackPort.reusable() }
        processes = Array(repeating: nil, count: nodes)
        let base = directory
        logs = (0..<nodes).map { "\(base)/n\($0).log" }
        try makeCertificates()
        for node in 0..<nodes { try configure(node) }
        for node in 0..<nodes { try start(node) }
        for node in 0..<nodes { try waitUntilListening(node) }
    }

    deinit {
        for node in processes.indices { kill(node) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `nats://user:password@127.0.0.1:<port>` of `node`.
    public func url(_ node: Int) -> String { "nats://\(user):\(password)@127.0.0.1:\(clientPorts[node])" }

    /// Whether `node` runs.
    public func isRunning(_ node: Int) -> Bool { processes[node]?.isRunning ?? false }

    /// Kills `node` with SIGKILL (its store stays for a restart).
    public func kill(_ node: Int) {
        guard let process = processes[node], process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Starts `node` again on its ports and store.
    public func restart(_ node: Int) throws {
        kill(node)
        try start(node)
        try waitUntilListening(node)
    }

    /// What `node` logged.
    public func log(_ node: Int) -> String { (try? String(contentsOfFile: logs[node], encoding: .utf8)) ?? "" }

    private func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure(description: "openssl \(arguments.first ?? "") failed") }
    }

    /// A CA, and one certificate for 127.0.0.1 (every node is on loopback) signed by it.
    private func makeCertificates() throws {
        try run([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj",
            "/CN=metering test CA",
        ])
        try run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node-key.pem", "-out", "node.csr", "-subj", "/CN=127.0.0.1"])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n".write(
            toFile: directory + "/node.ext", atomically: true, encoding: .utf8)
        try run([
            "x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", "node.pem", "-days", "2",
            "-extfile", "node.ext",
        ])
    }

    private func configure(_ node: Int) throws {
        let nodeDirectory = "\(directory)/n\(node)"
        try FileManager.default.createDirectory(atPath: nodeDirectory + "/store", withIntermediateDirectories: true)
        let routes = routePorts.indices.filter { $0 != node }.map { "\"nats-route://route:\(routePassword)@127.0.0.1:\(routePorts[$0])\"" }
        var host = """
            HOST_NAME: "n\(node)"
            HOST_CLIENTS: "127.0.0.1:\(clientPorts[node])"
            HOST_MONITOR: "127.0.0.1:\(try LoopbackPort.reusable())"
            HOST_CLIENT_USER: "\(user)"
            HOST_CLIENT_PASSWORD: "\(password)"
            HOST_STORE: "\(nodeDirectory)/store"
            HOST_MAX_FILE_STORE: 1GB
            HOST_ROUTES_LISTEN: "127.0.0.1:\(routePorts[node])"
            HOST_ROUTE_USER: "route"
            HOST_ROUTE_PASSWORD: "\(routePassword)"
            HOST_ROUTES: [\(routes.joined(separator: ", "))]
            HOST_TLS_CERT: "\(directory)/node.pem"
            HOST_TLS_KEY: "\(directory)/node-key.pem"
            HOST_TLS_CA: "\(directory)/ca.pem"

            """
        if routePorts.count == 1 {
            // nats-server refuses variables it does not use: no cluster, no route or TLS values.
            host =
                host.split(separator: "\n").filter { !$0.hasPrefix("HOST_ROUTE") && !$0.hasPrefix("HOST_TLS") }.joined(separator: "\n")
                + "\n"
        }
        try host.write(toFile: nodeDirectory + "/host.conf", atomically: true, encoding: .utf8)
        var shared = try String(contentsOfFile: Self.deployDirectory + "/nats-server.conf", encoding: .utf8)
        if routePorts.count == 1, let cluster = shared.range(of: "\ncluster {") {
            // One server is no cluster (JetStream refuses a cluster block without routes).
            shared = String(shared[..<cluster.lowerBound]) + "\n"
        }
        try shared.write(toFile: nodeDirectory + "/nats-server.conf", atomically: true, encoding: .utf8)
    }

    private func start(_ node: Int) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NATSCluster.executable!)
        process.arguments = ["-c", "\(directory)/n\(node)/nats-server.conf", "-l", logs[node]]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        processes[node] = process
    }

    private func waitUntilListening(_ node: Int) throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            guard processes[node]?.isRunning == true else {
                throw Failure(description: "nats-server n\(node) exited: \(log(node).suffix(2000))")
            }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(clientPorts[node]).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if connected == 0 { return }
            usleep(50_000)
        }
        throw Failure(description: "nats-server n\(node) did not listen in 30 s: \(log(node).suffix(2000))")
    }
}
