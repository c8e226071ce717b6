import Testing
import Wire

@testable import Connector

@Suite("Connector watermark encoding")
struct WatermarkTests {
    static func sample() -> SourceState {
        var state = SourceState(source: "gw", kind: .file)
        state.file = FilePosition(
            device: 2049, inode: UInt64.max - 1, offset: 123_456, line: 789, tail: Array("tail bytes\n".utf8), header: ["time", "sub"],
            discarding: true)
        state.accumulator.emittedBefore = Timestamp(iso8601: "2024-05-01T11:00:00Z")
        _ = state.accumulator.add(meter: "calls", subscription: "a", time: Timestamp(iso8601: "2024-05-01T11:10:00Z")!, amount: Quantity(3))
        _ = state.accumulator.add(
            meter: "egress", subscription: "b", time: Timestamp(iso8601: "2024-05-01T10:10:00Z")!, amount: Quantity(exactly: "0.25")!)
        state.accumulator.newestTime = nil
        state.outbox = [["id": "conn:gw:calls:a:2024-05-01T10:00:00Z", "type": "UsageReported", "value": ["quantity": .number("0.001")]]]
        state.counters.read = 10
        state.counters.counted = 7
        state.counters.malformed = 3
        state.counters.late = 1
        state.counters.rotations = 2
        state.counters.meters["calls"] = MeterCounters(
            counted: 7, skipped: 1, malformed: 2, late: 1, events: 4, quantity: Quantity(exactly: "0.004")!)
        state.counters.noteMalformed(MalformedExample(at: "line 3", reason: "not JSON", text: ""))
        state.counters.noteProblem("a truncation")
        return state
    }

    @Test("A watermark reads back exactly as it was written: position, open sums, late counts, outbox, counters")
    func roundTrip() throws {
        let state = Self.sample()
        let text = JSONWriter.string(state.json)
        let back = try SourceState(json: try JSONParser.parse(text))
        #expect(back == state)
        #expect(back.accumulator.open.values.contains { $0.late == 1 })
        var command = SourceState(source: "jobs", kind: .command)
        command.since = Timestamp(iso8601: "2024-05-01T10:00:00.5Z")
        #expect(try SourceState(json: try JSONParser.parse(JSONWriter.string(command.json))) == command)
    }

    @Test("A damaged watermark is refused, naming the member")
    func damage() throws {
        let good = Self.sample().json
        func damaged(_ change: (inout JSONObject) -> Void) -> String {
            var object = good.objectValue!
            change(&object)
            do {
                _ = try SourceState(json: .object(object))
                return "accepted"
            } catch {
                return error.path
            }
        }
        #expect(damaged { $0["format"] = 2 } == "format")
        #expect(damaged { $0["kind"] = "socket" } == "kind")
        #expect(damaged { $0["file"] = ["device": 1] } == "file.tail")
        #expect(
            damaged { $0["open"] = [["hour": "soon", "meter": "m", "subscription": "s", "total": 1, "records": 1, "late": 0]] }
                == "open[0].hour")
        #expect(
            damaged {
                $0["open"] = [["hour": "2024-05-01T10:00:00Z", "meter": "m", "subscription": "s", "total": "1", "records": 1, "late": 0]]
            } == "open[0].total")
        #expect(damaged { $0["counters"] = ["read": -1] } == "counters.read")
        #expect(damaged { $0["outbox"] = nil } == "outbox")
    }

    @Test("The tail keeps the last 4096 bytes before the position, across short and long reads")
    func tail() {
        var position = FilePosition(device: 1, inode: 1, offset: 0, line: 0, tail: [], header: nil, discarding: false)
        position.advance(over: ArraySlice(Array("abc\n".utf8)), newlines: 1)
        #expect(position.tail == Array("abc\n".utf8))
        let long = Array(repeating: UInt8(ascii: "x"), count: 5000) + Array("end\n".utf8)
        position.advance(over: ArraySlice(long), newlines: 1)
        #expect(position.tail.count == 4096 && position.tail.suffix(4) == ArraySlice("end\n".utf8))
        position.advance(over: ArraySlice(Array("z\n".utf8)), newlines: 1)
        #expect(position.tail.count == 4096 && position.tail.suffix(6) == ArraySlice("end\nz\n".utf8))
        #expect(position.offset == 5010 && position.line == 3)
    }
}
