import Foundation
import JetStreamStore
import Testing

@Suite("Progress of reading the stream at start")
struct StreamReadingProgressTests {
    let start = Date(timeIntervalSince1970: 1_700_000_000)

    @Test("nothing is said before the interval; then a line with the message, the last, the share and the time, at most once per interval")
    func linesAtMostOncePerInterval() {
        var progress = StreamReadingProgress(stream: "metering", last: 2_000, interval: 5, started: start)
        #expect(progress.read(64, now: start) == nil)
        #expect(progress.read(640, now: start.addingTimeInterval(4.9)) == nil)
        #expect(
            progress.read(704, now: start.addingTimeInterval(5)) == "reading the stream metering: message 704 of 2000 (35%) after 5 s")
        #expect(progress.read(1_280, now: start.addingTimeInterval(9.9)) == nil, "the next line is due 5 s after the last one")
        #expect(
            progress.read(1_344, now: start.addingTimeInterval(10.2))
                == "reading the stream metering: message 1344 of 2000 (67%) after 10 s")
    }

    @Test("an empty stream or messages past the last one read at start never say more than 100%")
    func shareStaysWithinBounds() {
        var empty = StreamReadingProgress(stream: "s", last: 0, interval: 1, started: start)
        #expect(empty.read(0, now: start.addingTimeInterval(1))?.contains("(100%)") == true)
        var grown = StreamReadingProgress(stream: "s", last: 100, interval: 1, started: start)
        #expect(grown.read(150, now: start.addingTimeInterval(1))?.contains("message 150 of 100 (100%)") == true)
    }
}
