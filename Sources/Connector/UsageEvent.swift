import Crypto
import Wire

/// The `UsageReported` message emitted for one closed bucket, and its idempotency key.
enum UsageEvent {
    /// `conn:<source>:<meter>:<subscription>:<hour>`: the same bucket always gets the same key, so
    /// ingest answers a re-emission `duplicate`. Source and meter names have no `:`, and the hour
    /// has a fixed length at the end, so keys of different buckets never collide. A subscription
    /// that would make the key longer than ingest accepts (200 bytes) is replaced by `#` and the
    /// hex SHA-256 of its name.
    static func idempotencyKey(source: String, meter: String, subscription: String, hour: Timestamp) -> String {
        let plain = "conn:\(source):\(meter):\(subscription):\(hour.iso8601)"
        if plain.utf8.count <= Message.maximumIdLength { return plain }
        return "conn:\(source):\(meter):#\(ByteText.hex(SHA256.hash(Array(subscription.utf8)))):\(hour.iso8601)"
    }

    /// The message for a bucket: `timestamp` is the hour it was counted for (the sender's time,
    /// recorded only; ingest's enqueued time bills it), `properties` say where it came from.
    /// Nil when the scaled quantity is out of range.
    static func message(
        source: String, rule: MeterRule, key: HourlyAccumulator.Key, bucket: HourlyAccumulator.Bucket
    ) -> JSONValue? {
        guard let quantity = rule.quantity(bucket.total) else { return nil }
        let hour = key.hour.iso8601
        return [
            "id": .string(idempotencyKey(source: source, meter: rule.name, subscription: key.subscription, hour: key.hour)),
            "type": "UsageReported",
            "value": .object(
                JSONObject([
                    JSONObject.Member(rule.subscriptionKey.rawValue, .string(key.subscription)),
                    JSONObject.Member("timestamp", .string(hour)),
                    JSONObject.Member("meterName", .string(rule.meterName)),
                    JSONObject.Member("quantity", quantity.json),
                    JSONObject.Member(
                        "properties",
                        [
                            "connector": .string(source), "meter": .string(rule.name), "hour": .string(hour),
                            "records": .string(String(bucket.records)), "lateRecords": .string(String(bucket.late)),
                        ]),
                ])),
        ]
    }
}
