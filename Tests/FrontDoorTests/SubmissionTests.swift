import Crypto
import Foundation
import FrontDoorKit
import TestFixtures
import Testing
import Wire

@Suite("Request bodies and the messages forwarded")
struct SubmissionTests {
    static func messages(_ text: String, maximum: Int = 3) -> Result<[JSONValue], Submission.Refusal> {
        Submission.messages(Array(text.utf8), maximumEvents: maximum)
    }

    static let usage =
        #"{"type":"UsageReported","value":{"resourceUri":"/apps/a","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":1.50}}"#

    @Test("a body is an array of 1 to the maximum messages, or one message; anything else is refused with a reason")
    func bodies() throws {
        #expect(try Self.messages("[\(Self.usage),\(Self.usage)]").get().count == 2)
        #expect(try Self.messages(Self.usage).get().count == 1)
        #expect(try Self.messages("\u{FEFF}[\(Self.usage)]").get().count == 1)
        let refusals: [(String, String, String)] = [
            ("", "bad_request", "the body is empty"),
            ("[]", "bad_request", "the array is empty"),
            ("[1,2,3,4]", "too_many_events", "4 messages in one request; send at most 3"),
            ("{\"type\":", "bad_request", "not valid JSON"),
            (#"{"a":1,"a":2}"#, "bad_request", "repeated key"),
            ("42", "bad_request", "got a number"),
            (#""text""#, "bad_request", "got a string"),
        ]
        for (body, code, text) in refusals {
            guard case .failure(let refusal) = Self.messages(body) else {
                Issue.record("\(body) was accepted")
                continue
            }
            #expect(refusal.code == code)
            #expect(refusal.message.contains(text), "\(refusal.message)")
        }
    }

    static let credential = Credential(
        key: .generate(), resourceIds: ["sub-a"], resourceUris: ["/apps/a"], messageTypes: [.usageReported, .subscriptionDeleted],
        created: Timestamp(seconds: 0))

    @Test("a forwarded message keeps its content, with its id scoped to its resource and the credential stamped in its properties")
    func forwarded() throws {
        let event = try JSONParser.parse(
            #"{"id":"retry-me","type":"UsageReported","value":{"resourceUri":"/apps/a","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":1.50,"properties":{"region":"eu","frontdoor.credential":"forged"}}}"#
        )
        let forwarded = try Submission.prepare(event, for: Self.credential).get()
        let expectedKey = "fd:" + ByteText.hex(SHA256.hash(Array("/apps/a".utf8)).prefix(16)) + ":retry-me"
        #expect(forwarded["id"] == .string(expectedKey))
        #expect(forwarded["value"]?["quantity"] == .number("1.50"))
        #expect(forwarded["value"]?["properties"]?["region"] == "eu")
        #expect(forwarded["value"]?["properties"]?["frontdoor.credential"] == .string(Self.credential.id))
        // The key is the same on every retry, and a different resource gets a different key.
        #expect(try Submission.prepare(event, for: Self.credential).get()["id"] == .string(expectedKey))
        #expect(
            Submission.namespacedKey("retry-me", resource: ResourceName(resourceId: "sub-a"))
                != Submission.namespacedKey("retry-me", resource: ResourceName(resourceUri: "/apps/a")))
        // Routing prefers the resourceId, and so does the key.
        #expect(
            Submission.namespacedKey("k", resource: ResourceName(resourceId: "sub-a", resourceUri: "/apps/a"))
                == Submission.namespacedKey("k", resource: ResourceName(resourceId: "sub-a")))
        let keyLength = Submission.namespacedKey(
            String(repeating: "k", count: Submission.maximumClientIdLength), resource: ResourceName(resourceId: "x")
        )
        .utf8.count
        #expect(keyLength == Message.maximumIdLength)

        let deletion = try JSONParser.parse(#"{"id":"d","type":"SubscriptionDeleted","value":{"resourceId":"sub-a"}}"#)
        let deleted = try Submission.prepare(deletion, for: Self.credential).get()
        #expect(deleted["value"] == deletion["value"])
        #expect(deleted["type"] == deletion["type"])
    }

    @Test("refusals per message use ingest's codes: invalid_event for bad messages, forbidden for unbound or internal ones")
    func refusals() throws {
        let cases: [(String, ErrorCode, String)] = [
            (
                #"{"id":"1","type":"UsageReported","value":{"resourceUri":"/apps/a","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":-1}}"#,
                .invalidEvent, "value.quantity: must not be negative"
            ),
            (
                #"{"type":"UsageReported","value":{"resourceUri":"/apps/a","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":1}}"#,
                .invalidEvent, "id: missing; through the front door every message carries an idempotency key"
            ),
            (#"{"type":"UsageReport","value":{}}"#, .invalidEvent, "unknown message type"),
            ("[1]", .invalidEvent, "a message must be a JSON object"),
            (
                #"{"id":"2","type":"UsageReported","value":{"resourceUri":"/apps/b","timestamp":"2024-01-01T00:00:00Z","meterName":"m","quantity":1}}"#,
                .forbidden, #"not bound to resourceUri "/apps/b""#
            ),
            (#"{"type":"Ping","value":{"partitionId":"0"}}"#, .forbidden, "Ping is an internal message"),
            (
                #"{"id":"3","type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"sub-a","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"m":{"type":"simple","dimension":"d"}}}}}}"#,
                .forbidden, "not SubscriptionPurchased"
            ),
            (
                #"{"id":"\#(String(repeating: "k", count: Submission.maximumClientIdLength + 1))","type":"SubscriptionDeleted","value":{"resourceId":"sub-a"}}"#,
                .invalidEvent, "at most \(Submission.maximumClientIdLength) bytes"
            ),
        ]
        for (text, code, reason) in cases {
            let event = try JSONParser.parse(text)
            guard case .failure(let error) = Submission.prepare(event, for: Self.credential) else {
                Issue.record("\(text) was forwarded")
                continue
            }
            #expect(error.code == code)
            #expect(error.message.contains(reason), "\(error.message)")
        }
    }

    @Test(
        "every client message of the samples passes, given an id, for a credential bound to its names; internal ones are forbidden"
    )
    func sampleMessages() throws {
        let samples = try Fixtures.internalMessages()
        #expect(samples.count > 10)
        var forwardedCount = 0
        for (file, sample) in samples {
            var envelope = try #require(sample.objectValue)
            envelope["id"] = .string("sample-\(forwardedCount)")
            let message = JSONValue.object(envelope)
            let decoded = try Message.decode(message).get()
            let credential = Credential(
                key: .generate(), resourceIds: decoded.resource?.resourceId.map { [$0] } ?? [],
                resourceUris: decoded.resource?.resourceUri.map { [$0] } ?? ["unused"],
                messageTypes: [.subscriptionPurchased, .usageReported, .subscriptionDeleted],
                created: Timestamp(seconds: 0))
            switch Submission.prepare(message, for: credential) {
            case .success:
                #expect(decoded.type.isClientMessage, "\(file)")
                forwardedCount += 1
            case .failure(let error):
                #expect(!decoded.type.isClientMessage, "\(file): \(error)")
                #expect(error.code == .forbidden)
            }
        }
        #expect(forwardedCount > 5)
    }
}
