import Foundation
import FrontDoorKit
import Wire

/// `meterctl credentials create|list|revoke`: the credentials managed applications call home
/// with (docs/FRONTDOOR.md). Works on the credential file directly; a running meter-frontdoor
/// picks every change up on its next request.
enum CredentialsCommand {
    static let credentials = Option(
        "credentials", .value("FILE"), "the credential file meter-frontdoor reads", environment: "METERING_FRONTDOOR_CREDENTIALS",
        fallback: .inHome("data/frontdoor/credentials.json"))
    static let resourceUris = Option("resource-uri", .repeated("URI"), "a resourceUri the application may report for")
    static let resourceIds = Option("resource-id", .repeated("ID"), "a resourceId the application may report for")
    static let allow = Option(
        "allow", .repeated("TYPE[,TYPE]"), "message types it may send: UsageReported, SubscriptionPurchased, SubscriptionDeleted",
        fallback: .value("UsageReported"))
    static let expires = Option(
        "expires", .value("TIME|90d"), "when it stops working: an ISO 8601 time, or a duration such as 90d, 12h, 30m")

    static let command = Command(
        name: "credentials", summary: "the credentials managed applications call home with (meter-frontdoor)",
        details: "They live in one file; a running meter-frontdoor picks every change up on its next request (docs/FRONTDOOR.md).",
        subcommands: [
            Command(
                name: "create", summary: "a new credential for the resources a deployment reports for (its key is shown once)",
                options: [resourceUris, resourceIds, allow, expires, .json, .home, credentials],
                examples: [
                    "meterctl credentials create --resource-uri /subscriptions/s/resourceGroups/g/providers/Microsoft.Solutions/applications/app --expires 90d"
                ],
                run: { try create($0, store($0)) }),
            Command(
                name: "list", summary: "the credentials: resources, message types, status, expiry", options: [.json, .home, credentials],
                examples: ["meterctl credentials list"], run: { try list($0, store($0)) }),
            Command(
                name: "revoke", summary: "revoke a credential: meter-frontdoor refuses it from its next request",
                arguments: [Argument(name: "ID", summary: "the credential's id, as 'credentials list' shows it")],
                options: [.home, credentials], examples: ["meterctl credentials revoke cred-1a2b3c"], run: { try revoke($0, store($0)) }),
        ])

    private static func store(_ invocation: Invocation) -> CredentialStore { CredentialStore(path: invocation.path(credentials)!) }

    /// Whole seconds: the file and the list read better, and nothing needs more.
    private static func now() -> Timestamp { Timestamp(seconds: Int64(Date().timeIntervalSince1970)) }

    private static func create(_ invocation: Invocation, _ store: CredentialStore) throws {
        let uris = invocation.all(resourceUris)
        let ids = invocation.all(resourceIds)
        guard !uris.isEmpty || !ids.isEmpty else {
            throw MeterCtl.Failure("credentials create needs the resources it reports for: --resource-uri URI and/or --resource-id ID")
        }
        for name in uris + ids where name.isEmpty || name.trimmingCharacters(in: .whitespaces) != name {
            throw MeterCtl.Failure("resource names must be non-empty, without leading or trailing spaces: \"\(name)\"")
        }
        var types: [MessageType] = []
        for text in invocation.all(allow).flatMap({ $0.split(separator: ",").map(String.init) }) {
            guard let type = MessageType(rawValue: text), type.isClientMessage else {
                throw MeterCtl.Failure("--allow \(text): expected UsageReported, SubscriptionPurchased or SubscriptionDeleted")
            }
            if !types.contains(type) { types.append(type) }
        }
        if types.isEmpty { types = [.usageReported] }
        let created = now()
        let expires = try invocation.value(expires).map { text throws -> Timestamp in try expiry(text, from: created) }
        let json = invocation.flag(.json)
        let key = CredentialKey.generate()
        let credential = Credential(
            key: key, resourceIds: unique(ids), resourceUris: unique(uris), messageTypes: types, created: created, expires: expires)
        try store.update { credentials in credentials.append(credential) }
        if json {
            var object = credential.json.objectValue ?? JSONObject()
            object["verificationKey"] = nil
            object.members.insert(.init("key", .string(key.text)), at: 1)
            MeterCtl.printJSON(.object(object))
            return
        }
        print("created credential \(credential.id) in \(store.path)")
        print("  reports for: \(credential.boundNames)")
        print("  may send:    \(types.map(\.rawValue).joined(separator: ", "))")
        print("  expires:     \(expires?.iso8601 ?? "never")")
        print("The key is shown only now (the front door keeps a key derived from it, never the key).")
        print("Give it to the deployment, e.g. as the secureString ARM parameter meteringKey:")
        print("")
        print(key.text)
    }

    /// An ISO 8601 time, or a duration from now: `90d`, `12h`, `30m`.
    static func expiry(_ text: String, from now: Timestamp) throws -> Timestamp {
        let time: Timestamp
        if let absolute = Timestamp(iso8601: text) {
            time = absolute
        } else if let unit = text.last, let count = Int64(text.dropLast()), count > 0, count <= 100_000,
            let seconds = ["d": Int64(86_400), "h": 3600, "m": 60][String(unit)]
        {
            time = now.adding(microseconds: count * seconds * 1_000_000)
        } else {
            throw MeterCtl.Failure(
                "--expires \(text): expected an ISO 8601 time (2026-01-01T00:00:00Z) or a duration such as 90d, 12h, 30m")
        }
        guard time > now else { throw MeterCtl.Failure("--expires \(text) is not in the future") }
        return time
    }

    private static func unique(_ names: [String]) -> [String] {
        var seen: Set<String> = []
        return names.filter { seen.insert($0).inserted }
    }

    private static func list(_ invocation: Invocation, _ store: CredentialStore) throws {
        let json = invocation.flag(.json)
        let credentials = try store.load()
        let time = now()
        if json {
            MeterCtl.printJSON(
                .array(
                    credentials.map { credential in
                        var object = credential.json.objectValue ?? JSONObject()
                        object["verificationKey"] = nil
                        object.members.insert(.init("status", .string(credential.status(at: time).rawValue)), at: 1)
                        return .object(object)
                    }))
            return
        }
        var rows = [["id", "status", "resources", "messages", "created", "expires"]]
        for credential in credentials {
            let names = credential.resourceUris + credential.resourceIds
            rows.append([
                credential.id, credential.status(at: time).rawValue, names.joined(separator: " "),
                credential.messageTypes.map(\.rawValue).joined(separator: ","), credential.created.iso8601,
                credential.revoked.map { "revoked \($0.iso8601)" } ?? credential.expires?.iso8601 ?? "never",
            ])
        }
        Table.print(rows)
        print("\(credentials.count) credentials in \(store.path)")
    }

    private static func revoke(_ invocation: Invocation, _ store: CredentialStore) throws {
        let id = invocation.words[0]
        let outcome: String = try store.update { credentials in
            guard let index = credentials.firstIndex(where: { $0.id == id }) else {
                throw MeterCtl.Failure("no credential \(id) in \(store.path)")
            }
            if let revoked = credentials[index].revoked { return "credential \(id) was already revoked at \(revoked.iso8601)" }
            credentials[index].revoked = now()
            // Nothing verifies with it any more: keep no key material for a dead credential.
            credentials[index].verificationKey = nil
            return "revoked credential \(id); meter-frontdoor refuses it from its next request"
        }
        print(outcome)
    }
}
