import Foundation
import FrontDoorKit
import StackTestSupport
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The front door end to end: real meter-ingest, real meter-frontdoor, and Debian's nginx running
/// the shipped configuration with a self-signed certificate, all on loopback; requests over HTTPS.
@Suite("Front door through the TLS proxy")
struct FrontDoorProxyTests {
    static let appA = "/subscriptions/0000/resourceGroups/customer-a/providers/Microsoft.Solutions/applications/app-a"
    static let appB = "/subscriptions/1111/resourceGroups/customer-b/providers/Microsoft.Solutions/applications/app-b"

    @Test("a valid credential reports a batch over HTTPS; the events are in ingest's log; a retry is answered duplicate")
    func reportsUsage() throws {
        let stack = try ProxyStack()
        let key = try stack.createCredential(["--resource-uri", Self.appA])
        let health = try stack.send("GET", path: "/v1/health", body: [], headers: [])
        #expect(health.status == 200)
        #expect(health.json?["status"] == "ok")

        let batch = [
            usage(uri: Self.appA, quantity: "2.5", id: "use-1"), usage(uri: Self.appA, quantity: "0.1", id: "use-2", meter: "mem"),
        ]
        let first = try stack.post(key, batch)
        #expect(first.status == 200, "\(first.body)")
        #expect(first.json?["accepted"] == 2)
        #expect(first.results.map { $0["status"] } == ["accepted", "accepted"])
        #expect(first.results.map { $0["id"] } == ["use-1", "use-2"])

        // The same messages again (a client retrying after a lost answer), freshly signed.
        let retry = try stack.post(key, batch)
        #expect(retry.status == 200)
        #expect(retry.json?["duplicate"] == 2)
        #expect(retry.results.map { $0["status"] } == ["duplicate", "duplicate"])
        #expect(retry.results.map { $0["sequence"] } == first.results.map { $0["sequence"] })

        let events = try stack.frontDoorEvents()
        #expect(events.count == 2)
        #expect(events.map { $0["value"]?["resourceUri"] } == [.string(Self.appA), .string(Self.appA)])
        #expect(events.map { $0["value"]?["quantity"] } == [.number("2.5"), .number("0.1")])
        #expect(events.map { $0["value"]?["properties"]?[Submission.credentialProperty] } == [.string(key.id), .string(key.id)])
        #expect(events.map { $0["id"]?.stringValue?.hasSuffix(":use-1") } == [true, false])

        let list = try stack.meterctl(["credentials", "list"])
        #expect(list.status == 0)
        #expect(list.output.contains(key.id) && list.output.contains("active") && list.output.contains(Self.appA))
        #expect(!list.output.contains(key.secret))
    }

    @Test("a credential for A cannot report for B: every event of a batch is checked, the others go through")
    func boundToItsResources() throws {
        let stack = try ProxyStack()
        let keyA = try stack.createCredential(["--resource-uri", Self.appA])
        let keyB = try stack.createCredential(["--resource-uri", Self.appB, "--resource-id", "sub-b"])
        var mixed = usage(uri: Self.appA, quantity: "1", id: "a-mixed").objectValue!
        var value = mixed["value"]!.objectValue!
        value["resourceId"] = "sub-b"
        mixed["value"] = .object(value)
        let purchase = try JSONParser.parse(
            #"{"id":"a-purchase","type":"SubscriptionPurchased","value":{"subscription":{"resourceUri":"\#(Self.appA)","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"cpu":{"type":"simple","dimension":"cpu","included":"Infinite"}}}}}}"#
        )
        let answer = try stack.post(
            keyA,
            [
                usage(uri: Self.appA, quantity: "3", id: "a-own"), usage(uri: Self.appB, quantity: "7", id: "a-for-b"), .object(mixed),
                purchase,
            ])
        #expect(answer.status == 200, "\(answer.body)")
        #expect(answer.results.map { $0["status"] } == ["accepted", "rejected", "rejected", "rejected"])
        #expect(answer.results.dropFirst().map { $0["error"]?["code"] } == ["forbidden", "forbidden", "forbidden"])
        #expect(answer.results[1]["error"]?["message"]?.stringValue?.contains("not bound to resourceUri \"\(Self.appB)\"") == true)
        #expect(answer.results[2]["error"]?["message"]?.stringValue?.contains("not bound to resourceId \"sub-b\"") == true)
        #expect(answer.results[3]["error"]?["message"]?.stringValue?.contains("not SubscriptionPurchased") == true)
        // B's own credential reports for B.
        let own = try stack.post(keyB, [usage(uri: Self.appB, quantity: "7", id: "b-own")])
        #expect(own.results.map { $0["status"] } == ["accepted"])

        let events = try stack.frontDoorEvents()
        #expect(events.count == 2)
        #expect(Set(events.compactMap { $0["value"]?["resourceUri"]?.stringValue }) == [Self.appA, Self.appB])
        let eventForB = try #require(events.first { $0["value"]?["resourceUri"] == .string(Self.appB) })
        #expect(eventForB["value"]?["properties"]?[Submission.credentialProperty] == .string(keyB.id))
        // A name with a newline is refused, and cannot forge a line in the operator's log.
        let forged = try stack.post(keyA, [usage(uri: "/apps/x\n2026-01-01T00:00:00Z meter-frontdoor info: all is well", quantity: "1")])
        #expect(forged.results.first?["error"]?["code"] == "forbidden")
        let log = stack.frontDoor.log()
        #expect(log.contains("refused event: forbidden: credential \(keyA.id) is not bound to resourceUri"))
        #expect(!log.contains("\n2026-01-01T00:00:00Z meter-frontdoor info: all is well"))
        #expect(log.contains(#"/apps/x\n2026-01-01T00:00:00Z"#))
    }

    @Test("revoked, expired and unknown credentials are refused, and the running front door sees a revocation at once")
    func revokedAndExpired() throws {
        let stack = try ProxyStack()
        let key = try stack.createCredential(["--resource-uri", Self.appA, "--expires", "30d"])
        #expect(try stack.post(key, [usage(uri: Self.appA, quantity: "1")]).status == 200)

        let revoke = try stack.meterctl(["credentials", "revoke", key.id])
        #expect(revoke.status == 0, "\(revoke.errors)")
        let revoked = try stack.post(key, [usage(uri: Self.appA, quantity: "1")])
        #expect(revoked.status == 401)
        #expect(revoked.errorCode == "credential_revoked")
        #expect(try stack.meterctl(["credentials", "list"]).output.contains("revoked"))
        // The stored key material is gone with the revocation.
        #expect(try stack.store.load().first?.verificationKey == nil)

        let expiredKey = CredentialKey.generate()
        try stack.store.update { credentials in
            credentials.append(
                Credential(
                    key: expiredKey, resourceIds: [], resourceUris: [Self.appA], created: Timestamp(seconds: 1_000),
                    expires: Timestamp(seconds: Int64(Date().timeIntervalSince1970) - 1)))
        }
        let expired = try stack.post(expiredKey, [usage(uri: Self.appA, quantity: "1")])
        #expect(expired.status == 401)
        #expect(expired.errorCode == "credential_expired")

        let unknown = try stack.post(CredentialKey.generate(), [usage(uri: Self.appA, quantity: "1")])
        #expect(unknown.status == 401)
        #expect(unknown.errorCode == "unknown_credential")

        #expect(try stack.frontDoorEvents().count == 1)
        let log = stack.frontDoor.log()
        #expect(log.contains("refused 401 credential_revoked") && log.contains("credential=\(key.id) client=127.0.0.1"))
        #expect(log.contains("refused 401 credential_expired") && log.contains("refused 401 unknown_credential"))
        #expect(!log.contains(key.secret) && !log.contains(expiredKey.secret))
    }

    @Test("tampered bodies and headers, stale times and replayed requests are refused, and logged without secrets")
    func tamperedAndReplayed() throws {
        let stack = try ProxyStack()
        let key = try stack.createCredential(["--resource-uri", Self.appA])
        let body = JSONWriter.bytes(.array([usage(uri: Self.appA, quantity: "5", id: "once")]))
        let headers = stack.signedHeaders(key, body: body)
        let accepted = try stack.send(body: body, headers: headers)
        #expect(accepted.status == 200)
        #expect(accepted.results.first?["status"] == "accepted")

        var signatures: [String] = headers.filter { $0.name == RequestSignature.signatureHeader }.map(\.value)
        func expectRefused(_ answer: HTTPAnswer, _ code: String, _ comment: Comment) {
            #expect(answer.status == 401, comment)
            #expect(answer.errorCode == code, comment)
            #expect(answer.json?["error"]?["message"]?.stringValue?.isEmpty == false)
        }
        expectRefused(try stack.send(body: body, headers: headers), "replayed_request", "the same request again")

        let tampered = JSONWriter.bytes(.array([usage(uri: Self.appA, quantity: "500", id: "once")]))
        let fresh = stack.signedHeaders(key, body: body)
        signatures += fresh.filter { $0.name == RequestSignature.signatureHeader }.map(\.value)
        expectRefused(try stack.send(body: tampered, headers: fresh), "bad_signature", "another body under a valid signature")

        func replacing(_ name: String, _ value: String, in list: [(name: String, value: String)]) -> [(name: String, value: String)] {
            list.map { $0.name == name ? ($0.name, value) : $0 }
        }
        let again = stack.signedHeaders(key, body: body)
        let time = again.first { $0.name == RequestSignature.timestampHeader }!.value
        expectRefused(
            try stack.send(body: body, headers: replacing(RequestSignature.timestampHeader, String(Int64(time)! + 1), in: again)),
            "bad_signature", "a changed timestamp")
        expectRefused(
            try stack.send(body: body, headers: replacing(RequestSignature.nonceHeader, "a-different-nonce-123", in: again)),
            "bad_signature", "a changed nonce")
        let other = try stack.createCredential(["--resource-uri", Self.appA])
        expectRefused(
            try stack.send(body: body, headers: replacing(RequestSignature.credentialHeader, other.id, in: again)), "bad_signature",
            "another credential's id")
        let wrongKey = CredentialKey(id: key.id, secret: CredentialKey.generate().secret)
        expectRefused(try stack.send(body: body, headers: stack.signedHeaders(wrongKey, body: body)), "bad_signature", "a guessed secret")

        let now = Int64(Date().timeIntervalSince1970)
        expectRefused(
            try stack.send(body: body, headers: stack.signedHeaders(key, body: body, timestamp: now - 301)), "stale_request",
            "signed more than the skew ago")
        expectRefused(
            try stack.send(body: body, headers: stack.signedHeaders(key, body: body, timestamp: now + 400)), "stale_request",
            "signed in the future")
        expectRefused(
            try stack.send(body: body, headers: again.filter { $0.name != RequestSignature.signatureHeader }), "unauthenticated",
            "no signature")
        expectRefused(try stack.send(body: body, headers: []), "unauthenticated", "no headers at all")

        let events = try stack.frontDoorEvents()
        #expect(events.count == 1)
        #expect(events.first?["value"]?["quantity"] == .number("5"))
        let log = stack.frontDoor.log()
        for code in ["replayed_request", "bad_signature", "stale_request", "unauthenticated"] {
            #expect(log.contains("refused 401 \(code)"), "\(code) is logged")
        }
        #expect(!log.contains(key.secret))
        for signature in signatures { #expect(!log.contains(signature)) }
    }

    @Test("a credential over its rate gets 429 with Retry-After, others are not affected, and it may go on after waiting")
    func rateLimited() throws {
        let stack = try ProxyStack(frontDoorEnvironment: ["METERING_FRONTDOOR_RATE": "1", "METERING_FRONTDOOR_BURST": "2"])
        let busy = try stack.createCredential(["--resource-uri", Self.appA])
        let calm = try stack.createCredential(["--resource-uri", Self.appB])
        #expect(try stack.post(busy, [usage(uri: Self.appA, quantity: "1")]).status == 200)
        #expect(try stack.post(busy, [usage(uri: Self.appA, quantity: "1")]).status == 200)
        let limited = try stack.post(busy, [usage(uri: Self.appA, quantity: "1")])
        #expect(limited.status == 429)
        #expect(limited.errorCode == "rate_limited")
        let retryAfter = try #require(limited.headers["retry-after"].flatMap { Int($0) })
        #expect(retryAfter >= 1 && retryAfter <= 2)
        #expect(try stack.post(calm, [usage(uri: Self.appB, quantity: "1")]).status == 200)
        usleep(UInt32(retryAfter) * 1_000_000 + 100_000)
        #expect(try stack.post(busy, [usage(uri: Self.appA, quantity: "1")]).status == 200)
        #expect(try stack.frontDoorEvents().count == 4)
        #expect(stack.frontDoor.log().contains("refused 429 rate_limited"))
    }

    @Test("bodies and batches are bounded, and every error is JSON, from the proxy or the front door")
    func boundsAndErrors() throws {
        let stack = try ProxyStack(frontDoorEnvironment: ["METERING_FRONTDOOR_MAX_EVENTS": "3"])
        let key = try stack.createCredential(["--resource-uri", Self.appA])

        let huge = [UInt8](repeating: UInt8(ascii: " "), count: (1 << 20) + 10)
        let tooLarge = try stack.send(body: huge, headers: stack.signedHeaders(key, body: huge))
        #expect(tooLarge.status == 413)
        #expect(tooLarge.errorCode == "body_too_large")

        let four = (0..<4).map { usage(uri: Self.appA, quantity: "1", id: "n\($0)") }
        let tooMany = try stack.post(key, four)
        #expect(tooMany.status == 413)
        #expect(tooMany.errorCode == "too_many_events")

        let garbage = Array("{not json".utf8)
        let badJSON = try stack.send(body: garbage, headers: stack.signedHeaders(key, body: garbage))
        #expect(badJSON.status == 400)
        #expect(badJSON.errorCode == "bad_request")

        let invalid = try JSONParser.parse(
            #"{"type":"UsageReported","value":{"resourceUri":"\#(Self.appA)","meterName":"cpu","quantity":1}}"#)
        let partly = try stack.post(key, [invalid, usage(uri: Self.appA, quantity: "1")])
        #expect(partly.results.map { $0["status"] } == ["rejected", "accepted"])
        #expect(partly.results.first?["error"]?["code"] == "invalid_event")
        #expect(partly.results.first?["error"]?["message"] == "value.timestamp: missing")

        let get = try stack.send("GET", body: [], headers: [])
        #expect(get.status == 405)
        #expect(get.errorCode == "method_not_allowed")
        let elsewhere = try stack.send("GET", path: "/admin", body: [], headers: [])
        #expect(elsewhere.status == 404)
        #expect(elsewhere.errorCode == "not_found")

        // Ingest gone: the front door answers 503 with Retry-After; nothing is half-done silently.
        stack.ingest.kill(SIGTERM)
        let down = try stack.post(key, [usage(uri: Self.appA, quantity: "1", id: "while-down")])
        #expect(down.status == 503)
        #expect(down.errorCode == "unavailable")
        #expect(down.headers["retry-after"] != nil)
        // The front door gone: the proxy answers, in the same shape.
        stack.frontDoor.kill(SIGTERM)
        let noFrontDoor = try stack.post(key, [usage(uri: Self.appA, quantity: "1")])
        #expect(noFrontDoor.status == 503)
        #expect(noFrontDoor.errorCode == "unavailable")
    }

    @Test("scripts/submit-meter reports usage over HTTPS, retries after 429, and a rerun with the same event id is a duplicate")
    func submitMeter() throws {
        let stack = try ProxyStack(frontDoorEnvironment: ["METERING_FRONTDOOR_RATE": "1", "METERING_FRONTDOOR_BURST": "1"])
        let key = try stack.createCredential(["--resource-uri", Self.appA])
        let script = Repository.root + "/scripts/submit-meter"
        var environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "METERING_FRONTDOOR_URL": stack.proxy.baseURL,
            "METERING_FRONTDOOR_KEY": key.text, "METERING_RESOURCE_URI": Self.appA, "METERING_CA_FILE": stack.certificate.certificate,
            // A path only this test could create: a shared one like /nonexistent may appear meanwhile.
            "METERING_CONFIG": stack.home.path + "/no-such-submit-meter.conf",
        ]
        let first = try Command.run(script, ["cpu", "12.5"], environment: environment)
        #expect(first.status == 0, "\(first.errors)")
        #expect(first.output.contains(#""status":"accepted""#))

        // At once again: over the rate (burst 1), so the script waits out Retry-After and retries.
        environment["METERING_EVENT_ID"] = "nightly-2024-03-01"
        let second = try Command.run(script, ["cpu", "3"], environment: environment)
        #expect(second.status == 0, "\(second.errors)")
        #expect(second.errors.contains("attempt 1: 429"))
        #expect(second.output.contains(#""status":"accepted""#))
        let rerun = try Command.run(script, ["cpu", "3"], environment: environment)
        #expect(rerun.status == 0, "\(rerun.errors)")
        #expect(rerun.output.contains(#""status":"duplicate""#))

        environment["METERING_RESOURCE_URI"] = Self.appB
        environment["METERING_EVENT_ID"] = nil
        usleep(1_100_000)
        let forB = try Command.run(script, ["cpu", "1"], environment: environment)
        #expect(forB.status == 1)
        #expect(forB.output.contains("forbidden"))

        environment["METERING_FRONTDOOR_KEY"] = key.id + ".not-the-secret-but-long-enough-to-pass"
        environment["METERING_RESOURCE_URI"] = Self.appA
        usleep(1_100_000)
        let wrongKey = try Command.run(script, ["cpu", "1"], environment: environment)
        #expect(wrongKey.status == 1)
        #expect(wrongKey.errors.contains("bad_signature"))
        environment["METERING_FRONTDOOR_KEY"] = nil
        #expect(try Command.run(script, ["cpu", "1"], environment: environment).status == 2)
        #expect(try Command.run(script, ["cpu", "lots"], environment: environment).status == 2)

        let events = try stack.frontDoorEvents()
        #expect(events.map { $0["value"]?["quantity"] } == [.number("12.5"), .number("3")])
        #expect(events.last?["id"]?.stringValue?.hasSuffix(":nightly-2024-03-01") == true)
        #expect(events.allSatisfy { $0["value"]?["resourceUri"] == .string(Self.appA) })
    }
}
