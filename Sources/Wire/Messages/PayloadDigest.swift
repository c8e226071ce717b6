/// A 128-bit digest of a message's canonical form: what ingest keeps beside each idempotency key,
/// so the same key sent again with the same message is a `duplicate` and with a different one a
/// `conflict`.
///
/// The canonical form (`CanonicalJSON`) makes white space, member order, number spellings and
/// escape spellings of a resend not matter. Not cryptographic: a sender able to pick two payloads with
/// one digest could only make its own second message look like its first.
public struct PayloadDigest: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The digest of `message`'s canonical form.
    public init(of message: JSONValue) {
        self = CanonicalJSON.bytes(message).withUnsafeBytes { Self.hash($0) }
    }

    /// The digest of a client message's meaning: its canonical form without the sender's own
    /// `value.timestamp`, which is recorded but decides nothing by default, so a retry that stamps
    /// its time again is still a duplicate while any other difference is a conflict.
    public static func ofMessage(_ message: JSONValue) -> PayloadDigest {
        guard case .object(var envelope) = message, case .object(var value)? = envelope["value"], value["timestamp"] != nil else {
            return PayloadDigest(of: message)
        }
        value["timestamp"] = nil
        envelope["value"] = .object(value)
        return PayloadDigest(of: .object(envelope))
    }

    /// 32 hexadecimal digits.
    public var description: String { Self.hex(high) + Self.hex(low) }

    /// Two independent 64-bit lanes over 8-byte words, each finished with SplitMix64's finalizer.
    /// Stable across runs, processes and machines (the words are read little-endian).
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> PayloadDigest {
        hash(bytes, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// The digest of `first` followed by `second`: the same as of the two joined (a message's
    /// canonical form with its timestamp left out is hashed without copying the rest).
    public static func hash(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> PayloadDigest {
        let count = first.count + second.count
        var high: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
        var low: UInt64 = 0xC2B2_AE3D_27D4_EB4F &+ UInt64(count)
        var index = 0
        while index < count {
            var word: UInt64
            if index + 8 <= first.count {
                word = first.loadUnaligned(fromByteOffset: index, as: UInt64.self).littleEndian
            } else if index >= first.count && index - first.count + 8 <= second.count {
                word = second.loadUnaligned(fromByteOffset: index - first.count, as: UInt64.self).littleEndian
            } else {
                // The word that straddles the two, or the last, short one.
                word = 0
                for shift in 0..<min(8, count - index) {
                    let at = index + shift
                    word |= UInt64(at < first.count ? first[at] : second[at - first.count]) << (8 * UInt64(shift))
                }
            }
            high = rotate((high ^ word) &* 0xFF51_AFD7_ED55_8CCD, 31)
            low = rotate((low &+ word) &* 0xC4CE_B9FE_1A85_EC53, 27) ^ rotate(high, 17)
            index += 8
        }
        return PayloadDigest(high: finalize(high), low: finalize(low &+ 0x1656_67B1_9E37_79F9))
    }

    /// The digest of a string's UTF-8 (idempotency keys).
    public static func hash(_ text: String) -> PayloadDigest {
        var text = text
        return text.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    private static func rotate(_ value: UInt64, _ count: UInt64) -> UInt64 { (value << count) | (value >> (64 - count)) }

    private static func finalize(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Reads 32 hexadecimal digits.
    public init?(hex text: String) {
        guard text.utf8.count == 32, let high = UInt64(text.prefix(16), radix: 16), let low = UInt64(text.suffix(16), radix: 16)
        else { return nil }
        self.init(high: high, low: low)
    }
}
