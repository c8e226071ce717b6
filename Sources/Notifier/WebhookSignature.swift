import Crypto
import Wire

/// How a notification is signed, so its receiver can tell it came from this notifier and was not
/// replayed: `Metering-Signature: v1=<hex HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`, with the
/// id and the Unix time of the attempt in headers of their own. Pure: bytes in, text out.
enum WebhookSignature {
    static let idHeader = "Metering-Notification-Id"
    static let timestampHeader = "Metering-Timestamp"
    static let signatureHeader = "Metering-Signature"
    static let attemptHeader = "Metering-Attempt"

    /// `v1=` and the hexadecimal HMAC-SHA256 of `<id>.<timestamp>.<body>` under `secret`.
    static func signature(secret: String, id: String, timestamp: Int64, body: [UInt8]) -> String {
        "v1=" + ByteText.hex(HMACSHA256.code(key: Array(secret.utf8), message: Array("\(id).\(timestamp).".utf8) + body))
    }

    /// The header fields of one delivery attempt of `body` (the notification `id`), number `attempt`.
    static func headers(secret: String, id: String, timestamp: Int64, attempt: Int, body: [UInt8]) -> [String: String] {
        [
            "Content-Type": "application/json", "User-Agent": "meter-notifier/\(Version.release)", idHeader: id,
            timestampHeader: String(timestamp), attemptHeader: String(attempt),
            signatureHeader: signature(secret: secret, id: id, timestamp: timestamp, body: body),
        ]
    }

    /// What a receiver does: recomputes the signature (constant time) and refuses a timestamp more
    /// than `tolerance` seconds from its own clock `now`.
    static func verify(
        secret: String, id: String, timestamp: Int64, body: [UInt8], signature: String, now: Int64, tolerance: Int64 = 300
    ) -> Bool {
        guard abs(now - timestamp) <= tolerance else { return false }
        let expected = self.signature(secret: secret, id: id, timestamp: timestamp, body: body)
        return HMACSHA256.constantTimeEqual(Array(expected.utf8), Array(signature.utf8))
    }
}
