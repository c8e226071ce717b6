import Foundation
import HTTP
import StackTestSupport
import Testing
import Wire

/// Injected faults on the metering calls: failed calls, and connections cut before or after the
/// call is recorded.
@Suite("The marketplace emulator's injected faults")
struct FaultInjectionTests {
    /// An emulator at 2024-01-31T10:00Z with `faults` set, and a token.
    static func start(faults: JSONValue) throws -> (Emulator, String) {
        let emulator = try Emulator()
        try emulator.setClock("2024-01-31T10:00:00Z")
        let response = try emulator.call("POST", "/emulator/faults", json: faults)
        #expect(response.status == 200, "\(response.text)")
        return (emulator, try emulator.token())
    }

    /// What each of `count` calls got: its status, or `drop` when the connection was cut.
    static func outcomes(_ emulator: Emulator, token: String, count: Int) throws -> [String] {
        try (0..<count).map { index in
            do {
                return String(try emulator.batch([usageItem("res-\(index)")], token: token).status)
            } catch TestHTTPClient.Failure.closed {
                return "drop"
            }
        }
    }

    @Test("faults are injected deterministically from the seed: failed calls record nothing, half of the drops record the call")
    func deterministic() throws {
        let faults: JSONValue = ["failRate": .number("0.3"), "status": 503, "dropRate": .number("0.2"), "seed": 42]
        let (first, firstToken) = try Self.start(faults: faults)
        let (second, secondToken) = try Self.start(faults: faults)
        let sequence = try Self.outcomes(first, token: firstToken, count: 40)
        #expect(try Self.outcomes(second, token: secondToken, count: 40) == sequence)
        #expect(sequence.contains("200") && sequence.contains("503") && sequence.contains("drop"), "\(sequence)")
        #expect(Set(sequence).isSubset(of: ["200", "503", "drop"]))
        let (other, otherToken) = try Self.start(faults: [
            "failRate": .number("0.3"), "status": 503, "dropRate": .number("0.2"), "seed": 43,
        ])
        #expect(try Self.outcomes(other, token: otherToken, count: 40) != sequence)

        // Drops alternate: the first is before processing, the second after recording, ...
        let drops = sequence.filter { $0 == "drop" }.count
        var expected: [String] = []
        var dropsSoFar = 0
        for (index, outcome) in sequence.enumerated() {
            if outcome == "drop" { dropsSoFar += 1 }
            if outcome == "200" || (outcome == "drop" && dropsSoFar % 2 == 0) { expected.append("res-\(index)") }
        }
        #expect(try first.ledger().compactMap { $0["resourceId"]?.stringValue } == expected)
        let stats = try first.call("GET", "/emulator/stats").json?["faults"]
        #expect(stats?["failed"] == .number(String(sequence.filter { $0 == "503" }.count)))
        #expect(stats?["droppedBeforeProcessing"] == .number(String((drops + 1) / 2)))
        #expect(stats?["droppedAfterRecording"] == .number(String(drops / 2)))
        #expect(stats?["configuration"]?["seed"] == 42)
    }

    @Test("a call dropped after it was recorded is answered Duplicate, with the same quantity, when it is sent again")
    func droppedAfterRecording() throws {
        let (emulator, token) = try Self.start(faults: ["dropRate": 1, "dropMode": "after", "seed": 1])
        let items = [usageItem("res-1", quantity: "12.5"), usageItem("res-2", quantity: "3")]
        #expect(throws: TestHTTPClient.Failure.self) { try emulator.batch(items, token: token) }
        #expect(try emulator.ledger().count == 2)
        _ = try emulator.call("POST", "/emulator/faults", json: [:])
        let retry = try emulator.batch(items, token: token)
        #expect(retry.status == 200)
        let results = retry.json?["result"]?.arrayValue ?? []
        #expect(results.map { $0["status"]?.stringValue ?? "?" } == ["Duplicate", "Duplicate"])
        #expect(results.map { $0["error"]?["additionalInfo"]?["acceptedMessage"]?["quantity"] } == [.number("12.5"), .number("3")])
        #expect(try emulator.ledger().count == 2)
    }

    @Test("a call dropped before processing records nothing, so sending it again is Accepted")
    func droppedBeforeProcessing() throws {
        let (emulator, token) = try Self.start(faults: ["dropRate": 1, "dropMode": "before"])
        #expect(throws: TestHTTPClient.Failure.self) { try emulator.batch([usageItem()], token: token) }
        #expect(try emulator.ledger().isEmpty)
        _ = try emulator.call("POST", "/emulator/faults", json: ["failRate": 0])
        #expect(try emulator.batch([usageItem()], token: token).json?["result"]?.arrayValue?.first?["status"] == "Accepted")
    }

    @Test("a failed call answers its status, 429 with Retry-After, and records nothing")
    func failedCalls() throws {
        let (emulator, token) = try Self.start(faults: ["failRate": 1, "status": 429])
        let response = try emulator.batch([usageItem()], token: token)
        #expect(response.status == 429)
        #expect(response.headers["retry-after"] == "1")
        let single = try emulator.call(
            "POST", "/api/usageEvent?api-version=2018-08-31", headers: ["Authorization": "Bearer \(token)"], json: usageItem())
        #expect(single.status == 429)
        // Control and token calls are never faulted.
        #expect(try emulator.call("GET", "/emulator/ledger").status == 200)
        _ = try emulator.token()
        #expect(try emulator.ledger().isEmpty)
        _ = try emulator.call("POST", "/emulator/faults", json: ["failRate": 1, "status": 500])
        #expect(try emulator.batch([usageItem()], token: token).status == 500)
    }

    @Test("a delay holds every metering call for that long")
    func delay() throws {
        let (emulator, token) = try Self.start(faults: ["delayMs": 300])
        let start = Date()
        #expect(try emulator.batch([usageItem()], token: token).status == 200)
        #expect(Date().timeIntervalSince(start) >= 0.3)
        #expect(try emulator.call("GET", "/emulator/stats").json?["faults"]?["delayed"] == 1)
    }

    @Test("a bad fault configuration is refused with 400 naming the member, and the previous one stays")
    func badConfiguration() throws {
        let (emulator, _) = try Self.start(faults: ["failRate": .number("0.5"), "seed": 9])
        let bad: [JSONValue] = [
            ["failRate": .number("1.5")], ["status": 404], ["failRat": .number("0.1")], ["dropMode": "sideways"],
            ["failRate": .number("0.6"), "dropRate": .number("0.6")], ["delayMs": -1], ["seed": "abc"], [1, 2],
        ]
        for body in bad {
            let response = try emulator.call("POST", "/emulator/faults", json: body)
            #expect(response.status == 400, "\(JSONWriter.string(body))")
        }
        let current = try emulator.call("GET", "/emulator/faults").json
        #expect(current?["failRate"] == .number("0.5"))
        #expect(current?["seed"] == 9)
    }
}
