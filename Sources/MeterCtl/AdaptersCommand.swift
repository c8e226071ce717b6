import AdapterKit
import Foundation
import Wire

/// `meterctl adapters create|list|revoke`: the read-only credentials billing adapters read the
/// usage API with (docs/BILLING-ADAPTERS.md). Works on the credential file directly; every running
/// meter-query picks a change up on its next request.
enum AdaptersCommand {
    static let credentials = Option(
        "credentials", .value("FILE"), "the adapter credential file meter-query reads", environment: AdapterCredentialStore.variable,
        fallback: .inHome("data/adapters/credentials.json"))
    static let name = Option("name", .value("TEXT"), "what uses it, for people (e.g. contoso-billing)")
    static let subscriptions = Option(
        "subscription", .repeated("NAME"), "a resourceId or resourceUri it may read (repeat it; none: every subscription)")

    static let command = Command(
        name: "adapters", summary: "the read-only credentials billing adapters read the usage API with (meter-query)",
        details:
            "They live in one file; every meter-query serving the usage API (METERING_QUERY_ADAPTER_HTTP) picks a change up on its next request (docs/BILLING-ADAPTERS.md).",
        subcommands: [
            Command(
                name: "create", summary: "a new adapter credential, for every subscription or some (its key is shown once)",
                options: [name, subscriptions, CredentialsCommand.expires, .json, .home, credentials],
                examples: [
                    "meterctl adapters create --name contoso-billing", "meterctl adapters create --name one-customer --subscription sub-1",
                ],
                run: { try create($0, store($0)) }),
            Command(
                name: "list", summary: "the adapter credentials: scope, status, expiry (never a key)",
                options: [.json, .home, credentials],
                examples: ["meterctl adapters list"], run: { try list($0, store($0)) }),
            Command(
                name: "revoke", summary: "revoke an adapter credential: meter-query refuses it from its next request",
                arguments: [Argument(name: "ID", summary: "the credential's id, as 'adapters list' shows it")],
                options: [.home, credentials], examples: ["meterctl adapters revoke mad_0123456789abcdef"],
                run: { try revoke($0, store($0)) }),
        ])

    private static func store(_ invocation: Invocation) -> AdapterCredentialStore {
        AdapterCredentialStore(path: invocation.path(credentials)!)
    }

    private static func now() -> Timestamp { Timestamp(seconds: Int64(Date().timeIntervalSince1970)) }

    private static func create(_ invocation: Invocation, _ store: AdapterCredentialStore) throws {
        let names = invocation.all(subscriptions)
        for name in names where name.isEmpty || name.trimmingCharacters(in: .whitespaces) != name {
            throw MeterCtl.Failure("subscription names must be non-empty, without leading or trailing spaces: \"\(name)\"")
        }
        var unique: [String] = []
        for name in names where !unique.contains(name) { unique.append(name) }
        let created = now()
        let expires = try invocation.value(CredentialsCommand.expires).map { text throws -> Timestamp in
            try CredentialsCommand.expiry(text, from: created)
        }
        let key = AdapterKey.generate()
        let credential = AdapterCredential(
            key: key, name: invocation.value(name) ?? "", subscriptions: unique.isEmpty ? nil : unique, created: created, expires: expires)
        try store.update { credentials in credentials.append(credential) }
        if invocation.flag(.json) {
            var object = credential.json.objectValue ?? JSONObject()
            object["secretHash"] = nil
            object.members.insert(.init("key", .string(key.text)), at: 1)
            MeterCtl.printJSON(.object(object))
            return
        }
        print("created adapter credential \(credential.id) in \(store.path)")
        print("  reads:   \(credential.scopeText)")
        print("  expires: \(expires?.iso8601 ?? "never")")
        print("The key is shown only now (meter-query keeps its SHA-256, never the key).")
        print("The adapter sends it as: Authorization: Bearer <key>")
        print("")
        print(key.text)
    }

    private static func list(_ invocation: Invocation, _ store: AdapterCredentialStore) throws {
        let credentials = try store.load()
        let time = now()
        if invocation.flag(.json) {
            MeterCtl.printJSON(
                .array(
                    credentials.map { credential in
                        var object = credential.json.objectValue ?? JSONObject()
                        object["secretHash"] = nil
                        object.members.insert(.init("status", .string(credential.status(at: time).rawValue)), at: 1)
                        return .object(object)
                    }))
            return
        }
        var rows = [["id", "name", "status", "reads", "created", "expires"]]
        for credential in credentials {
            rows.append([
                credential.id, credential.name, credential.status(at: time).rawValue, credential.scopeText, credential.created.iso8601,
                credential.revoked.map { "revoked \($0.iso8601)" } ?? credential.expires?.iso8601 ?? "never",
            ])
        }
        Table.print(rows)
        print("\(credentials.count) adapter credentials in \(store.path)")
    }

    private static func revoke(_ invocation: Invocation, _ store: AdapterCredentialStore) throws {
        let id = invocation.words[0]
        let outcome: String = try store.update { credentials in
            guard let index = credentials.firstIndex(where: { $0.id == id }) else {
                throw MeterCtl.Failure("no adapter credential \(id) in \(store.path)")
            }
            if let revoked = credentials[index].revoked { return "adapter credential \(id) was already revoked at \(revoked.iso8601)" }
            credentials[index].revoked = now()
            credentials[index].secretHash = nil
            return "revoked adapter credential \(id); meter-query refuses it from its next request"
        }
        print(outcome)
    }
}
