import Testing
import Wire

@Suite("Timestamps written as text")
struct TimestampTextTests {
    @Test("the bytes written without Strings are iso8601's, for random instants of every year, before 1970 and past 9999")
    func appendedBytesAreTheText() {
        var random = SplitMix64(seed: 12)
        var samples: [Timestamp] = [
            .epoch, Timestamp(microseconds: -1), Timestamp(microseconds: 1), Timestamp(seconds: 951_782_400),  // 2000-02-29
            Timestamp(seconds: -62_167_219_200),  // 0000-01-01
            Timestamp(seconds: 253_402_300_799), Timestamp(seconds: 253_402_300_800),  // 9999-12-31T23:59:59, 10000-01-01
            Timestamp(seconds: -62_167_219_201),
        ]
        for _ in 0..<20_000 {
            let span = Int64(1) << Int64(random.next() % 60)
            let micros = Int64(bitPattern: random.next()) % span
            samples.append(Timestamp(microseconds: random.next() % 2 == 0 ? micros : micros / 1_000_000 * 1_000_000))
        }
        for time in samples {
            var bytes: [UInt8] = [0x41]
            time.appendISO8601(to: &bytes)
            #expect(bytes == [0x41] + Array(time.iso8601.utf8), "\(time.microseconds)")
        }
    }
}
