import Foundation
import Testing

/// A systemd unit file read the way systemd reads the settings checked here: `Key=value` lines per
/// section, a repeated list setting appends, an empty assignment resets the list.
struct UnitFile {
    let name: String
    private var settings: [String: [String]] = [:]

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("systemd").path

    init(_ name: String) throws {
        self.name = name
        let text = try String(contentsOfFile: Self.directory + "/" + name, encoding: .utf8)
        var section = ""
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                section = String(line.dropFirst().dropLast())
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = section + "." + line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            settings[key, default: []].append(value)
        }
    }

    static var all: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// The last value of a single-valued setting.
    func value(_ key: String, in section: String = "Service") -> String? { settings[section + "." + key]?.last }

    /// A list setting's items, as systemd accumulates them.
    func list(_ key: String, in section: String = "Service") -> [String] {
        var items: [String] = []
        for value in settings[section + "." + key] ?? [] {
            if value.isEmpty { items = [] } else { items += value.split(separator: " ").map(String.init) }
        }
        return items
    }

    /// `Environment=` as a dictionary.
    var environment: [String: String] {
        var variables: [String: String] = [:]
        for item in list("Environment") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { variables[parts[0]] = parts[1] }
        }
        return variables
    }

    /// Paths the service may write besides what `ProtectSystem=strict` leaves writable (nothing of
    /// the data): its state and runtime directories, `ReadWritePaths=`, and `BindPaths=` sources
    /// and destinations.
    var writablePaths: [String] {
        var paths = list("StateDirectory").map { "/var/lib/" + $0 } + list("RuntimeDirectory").map { "/run/" + $0 }
        paths += list("ReadWritePaths").map(Self.path)
        for bind in list("BindPaths") { paths += bind.split(separator: ":").map { Self.path(String($0)) } }
        return paths
    }

    /// A path setting's path, without systemd's `-` (ignore if missing) and `+` prefixes.
    static func path(_ item: String) -> String {
        var text = Substring(item)
        while let first = text.first, first == "-" || first == "+" { text = text.dropFirst() }
        return String(text)
    }
}

/// Whether `path` is `directory` or lies inside it (or the other way round: writing a parent
/// directory means being able to replace the child).
private func overlaps(_ path: String, _ directory: String) -> Bool {
    func components(_ text: String) -> [Substring] { text.split(separator: "/") }
    let (a, b) = (components(path), components(directory))
    return a.starts(with: b) || b.starts(with: a)
}

@Suite("The systemd units: least privilege")
struct UnitFileTests {
    static let services = UnitFile.all.filter { $0.hasSuffix(".service") }
    static let sockets = UnitFile.all.filter { $0.hasSuffix(".socket") }
    static let networkFacing = ["meter-query.service", "meter-frontdoor.service"]

    /// Ingest's log directory: `$METERING_HOME/data/log` of its unit.
    static func logDirectory() throws -> String {
        let ingest = try UnitFile("meter-ingest.service")
        return try #require(ingest.environment["METERING_HOME"]) + "/data/log"
    }

    @Test("every service stays failed after a configuration error (78) or a bad setting (64) instead of restarting in a loop")
    func restartPrevention() throws {
        #expect(Self.services.count >= 6)
        for name in Self.services {
            let unit = try UnitFile(name)
            let statuses = unit.list("RestartPreventExitStatus")
            #expect(statuses.contains("78"), "\(name): RestartPreventExitStatus=\(statuses)")
            #expect(statuses.contains("64"), "\(name): RestartPreventExitStatus=\(statuses)")
        }
    }

    @Test("the query page and the front door run as users of their own, outside the admin socket's reach, and can reach the client socket")
    func separateUsers() throws {
        let ingest = try UnitFile("meter-ingest.service")
        let admin = try UnitFile("meter-ingest-admin.socket")
        let client = try UnitFile("meter-ingest.socket")
        let ingestUser = try #require(ingest.value("User"))
        #expect(admin.value("SocketUser", in: "Socket") == ingestUser)
        #expect(admin.value("SocketMode", in: "Socket") == "0600")
        let clientGroup = try #require(client.value("SocketGroup", in: "Socket"))
        var users: Set<String> = [ingestUser]
        for name in Self.networkFacing {
            let unit = try UnitFile(name)
            let user = try #require(unit.value("User"), "\(name) has no User=")
            let groups = [unit.value("Group") ?? user] + unit.list("SupplementaryGroups")
            #expect(users.insert(user).inserted, "\(name) runs as \(user), a user of another service")
            #expect(
                !groups.contains(ingestUser) && !groups.contains(admin.value("SocketGroup", in: "Socket") ?? ingestUser),
                "\(name): \(groups)")
            #expect(groups.contains(clientGroup), "\(name) cannot connect to ingest.sock (group \(clientGroup)): \(groups)")
        }
    }

    @Test(
        "the query page and the front door have the admin socket and the log directory hidden, and nothing of the data writable but their own"
    )
    func hiddenAndReadOnly() throws {
        let log = try Self.logDirectory()
        let adminSocket = try #require(try UnitFile("meter-ingest-admin.socket").value("ListenStream", in: "Socket"))
        #expect(adminSocket == "/run/metering/ingest-admin.sock")
        for name in Self.networkFacing {
            let unit = try UnitFile(name)
            let hidden = unit.list("InaccessiblePaths")
            // Without "-": a path that cannot be hidden stops the start instead of staying visible.
            #expect(hidden.contains(adminSocket), "\(name): InaccessiblePaths=\(hidden)")
            #expect(hidden.contains(log), "\(name): InaccessiblePaths=\(hidden)")
            #expect(unit.value("ProtectSystem") == "strict", "\(name)")
            #expect(unit.list("ReadOnlyPaths").contains(try #require(unit.environment["METERING_HOME"])), "\(name)")
            for path in unit.writablePaths {
                #expect(!overlaps(path, log), "\(name) may write \(path), which holds or is inside the log \(log)")
            }
        }
    }

    @Test("only ingest may write the log; every service is sandboxed (no capabilities, no new privileges, a read-only system)")
    func everyService() throws {
        let log = try Self.logDirectory()
        for name in Self.services {
            let unit = try UnitFile(name)
            let user = unit.value("User") ?? "root"
            #expect(user != "root", "\(name) runs as root")
            #expect(unit.value("ProtectSystem") == "strict", "\(name)")
            #expect(unit.value("NoNewPrivileges") == "yes", "\(name)")
            #expect(unit.value("CapabilityBoundingSet") == "", "\(name): capabilities should be none")
            #expect(unit.value("PrivateTmp") == "yes" && unit.value("PrivateDevices") == "yes", "\(name)")
            #expect(unit.value("ProtectKernelTunables") == "yes" && unit.value("ProtectKernelModules") == "yes", "\(name)")
            #expect(unit.value("RestrictSUIDSGID") == "yes" && unit.value("ProtectClock") == "yes", "\(name)")
            if name != "meter-ingest.service" {
                for path in unit.writablePaths {
                    #expect(!overlaps(path, log), "\(name) may write \(path), which holds or is inside the log \(log)")
                }
            }
        }
    }

    @Test("every socket is closed to other users, and its directory lets the users who may connect reach it")
    func socketModes() throws {
        #expect(Self.sockets.count >= 4)
        for name in Self.sockets {
            let unit = try UnitFile(name)
            let mode = try #require(unit.value("SocketMode", in: "Socket").flatMap { Int($0, radix: 8) }, "\(name): no SocketMode=")
            #expect(mode & 0o007 == 0, "\(name): SocketMode=\(String(mode, radix: 8)) lets every user connect")
            // systemd creates the directory owned by root: without search permission for others,
            // no service user could reach its socket by path.
            let directory = try #require(unit.value("DirectoryMode", in: "Socket").flatMap { Int($0, radix: 8) }, "\(name)")
            #expect(directory & 0o001 != 0, "\(name): DirectoryMode=\(String(directory, radix: 8))")
            #expect(directory & 0o022 == 0, "\(name): DirectoryMode=\(String(directory, radix: 8)) lets others create files there")
        }
    }

    @Test(
        "the notifier's data (the subscribers' secrets) is its own alone, its socket the metering user's, and it reaches out over TCP only")
    func notifier() throws {
        let unit = try UnitFile("meter-notifier.service")
        let socket = try UnitFile("meter-notifier.socket")
        #expect(unit.value("StateDirectoryMode") == "0700")
        #expect(unit.value("UMask") == "0077")
        #expect(unit.writablePaths == ["/var/lib/metering/data/notifier"])
        #expect(unit.environment["METERING_NOTIFIER_DATA"] == "/var/lib/metering/data/notifier")
        #expect(unit.list("InaccessiblePaths").contains("-" + (try Self.logDirectory())))
        #expect(Set(unit.list("RestrictAddressFamilies")) == ["AF_UNIX", "AF_INET", "AF_INET6"])
        #expect(unit.value("PrivateNetwork") != "yes", "webhooks need the network")
        #expect(socket.value("SocketMode", in: "Socket") == "0600")
        #expect(socket.value("FileDescriptorName", in: "Socket") == "notifier")
        #expect(socket.value("Service", in: "Socket") == "meter-notifier.service")
        let target = try UnitFile("metering.target")
        #expect(target.list("Wants", in: "Unit").contains("meter-notifier.socket"))
    }
}
