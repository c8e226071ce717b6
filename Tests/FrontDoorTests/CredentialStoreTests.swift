import Crypto
import Foundation
import FrontDoorKit
import StackTestSupport
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Credential store")
struct CredentialStoreTests {
    static let created = Timestamp(iso8601: "2024-05-01T12:00:00Z")!

    static func credential(_ key: CredentialKey = .generate(), uris: [String] = ["/subscriptions/s/applications/a"], ids: [String] = [])
        -> Credential
    {
        Credential(key: key, resourceIds: ids, resourceUris: uris, created: created)
    }

    @Test("written credentials read back equal; the file holds a derived key, never the secret; file 0600, directory 0700")
    func roundTrip() throws {
        let home = StackHome()
        let store = CredentialStore(path: CredentialStore.defaultPath(home: home.path))
        let key = CredentialKey.generate()
        var first = Self.credential(key, uris: ["/subscriptions/s/applications/a"], ids: ["sub-1", "sub-2"])
        first.messageTypes = [.usageReported, .subscriptionPurchased]
        first.expires = Timestamp(iso8601: "2025-01-01T00:00:00Z")
        try store.update { $0.append(first) }
        let second = Self.credential()
        try store.update { $0.append(second) }
        #expect(try store.load() == [first, second])

        let text = try String(contentsOfFile: store.path, encoding: .utf8)
        #expect(!text.contains(key.secret))
        #expect(text.contains(ByteText.hex(RequestSignature.signingKey(secret: key.secret))))
        var info = stat()
        #expect(stat(store.path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(stat(home.path + "/data/frontdoor", &info) == 0 && info.st_mode & 0o777 == 0o700)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: home.path + "/data/frontdoor").filter { $0.contains(".tmp") }
        #expect(leftovers.isEmpty)
    }

    @Test("no file means no credentials; a damaged file is an error naming the file and the fault")
    func missingAndDamaged() throws {
        let home = StackHome()
        let store = CredentialStore(path: home.path + "/credentials.json")
        #expect(try store.load().isEmpty)
        let cases: [(String, String)] = [
            ("{", "is not valid JSON"),
            (#"{"format":2,"credentials":[]}"#, "is not a credential file"),
            (#"{"format":1,"credentials":[{"id":"nope"}]}"#, "well-formed \"id\""),
            (
                #"{"format":1,"credentials":[{"id":"fdc_0123456789abcdef","resourceUris":[],"resourceIds":[],"messages":["UsageReported"],"created":"2024-01-01T00:00:00Z","verificationKey":null}]}"#,
                "bound to no resource"
            ),
            (
                #"{"format":1,"credentials":[{"id":"fdc_0123456789abcdef","resourceUris":["u"],"resourceIds":[],"messages":["Ping"],"created":"2024-01-01T00:00:00Z","verificationKey":null}]}"#,
                "\"Ping\" is not a client message type"
            ),
            (
                #"{"format":1,"credentials":[{"id":"fdc_0123456789abcdef","resourceUris":["u"],"resourceIds":[],"messages":[],"created":"2024-01-01T00:00:00Z","verificationKey":null}]}"#,
                "no verificationKey and is not revoked"
            ),
            (
                #"{"format":1,"credentials":[{"id":"fdc_0123456789abcdef","resourceUris":["u"],"resourceIds":[],"messages":[],"created":"2024-01-01T00:00:00Z","verificationKey":"abcd"}]}"#,
                "64 hex digits"
            ),
        ]
        for (text, fault) in cases {
            try Data(text.utf8).write(to: URL(fileURLWithPath: store.path))
            let error = #expect(throws: CredentialStoreError.self) { try store.load() }
            #expect(error?.message.contains(store.path) == true)
            #expect(error?.message.contains(fault) == true, "\(error?.message ?? "") should say \(fault)")
        }
        let one = Self.credential()
        try Data(CredentialStore.serialize([one, one])).write(to: URL(fileURLWithPath: store.path))
        let twice = #expect(throws: CredentialStoreError.self) { try store.load() }
        #expect(twice?.message.contains("appears twice") == true)
    }

    @Test("concurrent updates from many writers all land (the lock serializes read-modify-write)")
    func concurrentUpdates() async throws {
        let home = StackHome()
        let store = CredentialStore(path: home.path + "/data/frontdoor/credentials.json")
        let writers = 16
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<writers {
                group.addTask { try store.update { $0.append(Self.credential()) } }
            }
            try await group.waitForAll()
        }
        #expect(try store.load().count == writers)
    }

    @Test("the running view reloads on every change, fails closed on a damaged file and recovers when it is fixed")
    func directoryReloads() throws {
        let home = StackHome()
        let store = CredentialStore(path: home.path + "/credentials.json")
        let directory = try CredentialDirectory(store: store)
        let first = Self.credential()
        #expect(try directory.credential(first.id) == nil)
        try store.update { $0.append(first) }
        #expect(try directory.credential(first.id) == first)
        try store.update { credentials in
            credentials[0].revoked = Self.created
            credentials[0].verificationKey = nil
        }
        #expect(try directory.credential(first.id)?.revoked == Self.created)

        let good = try Data(contentsOf: URL(fileURLWithPath: store.path))
        try Data("{broken".utf8).write(to: URL(fileURLWithPath: store.path))
        #expect(throws: CredentialStoreError.self) { try directory.credential(first.id) }
        #expect(throws: CredentialStoreError.self) { try directory.credential(first.id) }
        try good.write(to: URL(fileURLWithPath: store.path))
        #expect(try directory.credential(first.id)?.revoked == Self.created)
        try FileManager.default.removeItem(atPath: store.path)
        #expect(try directory.credential(first.id) == nil)
    }

    @Test("a damaged file fails the front door's start, not its first request")
    func damagedAtStart() throws {
        let home = StackHome()
        let path = home.path + "/credentials.json"
        try Data("[]".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: CredentialStoreError.self) { _ = try CredentialDirectory(store: CredentialStore(path: path)) }
    }

    @Test("status: active until it expires; revoked wins")
    func status() {
        var credential = Self.credential()
        let expiry = Timestamp(iso8601: "2024-06-01T00:00:00Z")!
        credential.expires = expiry
        #expect(credential.status(at: expiry.adding(microseconds: -1)) == .active)
        #expect(credential.status(at: expiry) == .expired)
        credential.revoked = Self.created
        #expect(credential.status(at: Self.created) == .revoked)
    }

    @Test("a credential may send only its message types, and only for names all bound to it")
    func bindings() throws {
        let credential = Self.credential(uris: ["/apps/a"], ids: ["sub-a"])
        func message(_ json: String) throws -> Message { try Message.decode(try JSONParser.parse(json)).get() }
        let usageURI = try message(
            #"{"type":"UsageReported","value":{"resourceUri":"/apps/a","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":1}}"#)
        #expect(credential.refusal(for: usageURI) == nil)
        let usageBoth = try message(
            #"{"type":"UsageReported","value":{"resourceUri":"/apps/a","resourceId":"sub-a","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":1}}"#
        )
        #expect(credential.refusal(for: usageBoth) == nil)
        let mixed = try message(
            #"{"type":"UsageReported","value":{"resourceUri":"/apps/a","resourceId":"sub-b","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":1}}"#
        )
        #expect(credential.refusal(for: mixed)?.contains(#"not bound to resourceId "sub-b""#) == true)
        let other = try message(
            #"{"type":"UsageReported","value":{"resourceUri":"/apps/b","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":1}}"#)
        #expect(credential.refusal(for: other)?.contains(#"not bound to resourceUri "/apps/b""#) == true)
        // A bound name of the other kind does not count: sub-a is a resourceId, not a resourceUri.
        let kind = try message(#"{"type":"SubscriptionDeleted","value":{"resourceUri":"sub-a"}}"#)
        let deleting = Credential(
            key: .generate(), resourceIds: ["sub-a"], resourceUris: [], messageTypes: [.subscriptionDeleted], created: Self.created)
        #expect(deleting.refusal(for: kind) != nil)
        let deletion = try message(#"{"type":"SubscriptionDeleted","value":{"resourceUri":"/apps/a"}}"#)
        #expect(credential.refusal(for: deletion)?.contains("may send UsageReported only, not SubscriptionDeleted") == true)
    }
}
