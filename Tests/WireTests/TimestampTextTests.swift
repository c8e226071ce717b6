import Testing

@testable import Wire

@Suite("Timestamps written as text")
struct TimestampTextTests {
    /// The text as the format defines it, built from Strings the plain way (as `iso8601` did before
    /// it wrote bytes): the oracle for the bytes.
    static func reference(_ time: Timestamp) -> String {
        let seconds = floorDiv(time.microseconds, 1_000_000)
        let micros = time.microseconds - seconds * 1_000_000
        let (year, month, day) = Timestamp.civil(fromDays: floorDiv(seconds, 86_400))
        let secondOfDay = Int(seconds - floorDiv(seconds, 86_400) * 86_400)
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        var text = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T"
        text += "\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
        if micros != 0 { text += "." + pad(Int(micros), 6) }
        return text + "Z"
    }

    @Test("the bytes written without Strings are the format's text, for random instants of every year, before 1970 and past 9999")
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
        #expect(Timestamp(seconds: 951_782_400).iso8601 == "2000-02-29T00:00:00Z")
        #expect(Timestamp(microseconds: -1).iso8601 == "1969-12-31T23:59:59.999999Z")
        for time in samples {
            var bytes: [UInt8] = [0x41]
            time.appendISO8601(to: &bytes)
            #expect(bytes == [0x41] + Array(Self.reference(time).utf8), "\(time.microseconds)")
            #expect(time.iso8601 == Self.reference(time))
        }
    }
}
