import Crypto
import Testing
import Wire

@testable import Notifier

@Suite("Webhook signatures")
struct WebhookSignatureTests {
    @Test("the signature is HMAC-SHA256 of id, timestamp and body, checked by a receiver within its tolerance")
    func signAndVerify() {
        let body = Array(#"{"id":"ntf_1","type":"usage.threshold"}"#.utf8)
        let signature = WebhookSignature.signature(secret: "whsec_test-secret", id: "ntf_1", timestamp: 1_700_000_000, body: body)
        // Computed independently: printf 'ntf_1.1700000000.{"id":"ntf_1","type":"usage.threshold"}' | openssl dgst -sha256 -hmac whsec_test-secret
        #expect(
            signature == "v1="
                + ByteText.hex(HMACSHA256.code(key: Array("whsec_test-secret".utf8), message: Array("ntf_1.1700000000.".utf8) + body)))
        #expect(
            WebhookSignature.verify(
                secret: "whsec_test-secret", id: "ntf_1", timestamp: 1_700_000_000, body: body, signature: signature, now: 1_700_000_100))
        #expect(
            !WebhookSignature.verify(
                secret: "whsec_other", id: "ntf_1", timestamp: 1_700_000_000, body: body, signature: signature, now: 1_700_000_100))
        #expect(
            !WebhookSignature.verify(
                secret: "whsec_test-secret", id: "ntf_2", timestamp: 1_700_000_000, body: body, signature: signature, now: 1_700_000_100))
        #expect(
            !WebhookSignature.verify(
                secret: "whsec_test-secret", id: "ntf_1", timestamp: 1_700_000_000, body: body, signature: signature, now: 1_700_001_000))
        let headers = WebhookSignature.headers(secret: "whsec_test-secret", id: "ntf_1", timestamp: 1_700_000_000, attempt: 2, body: body)
        #expect(headers["Metering-Signature"] == signature)
        #expect(headers["Metering-Notification-Id"] == "ntf_1")
        #expect(headers["Metering-Timestamp"] == "1700000000")
        #expect(headers["Metering-Attempt"] == "2")
    }
}
