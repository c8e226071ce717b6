import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meter-ingest crash safety", .serialized)
struct CrashTests {
    /// What the writer threads saw acknowledged: idempotency key → (partition, sequence), and
    /// each writer's keys in order.
    struct Acks {
        var positions: [String: (Int, Int)] = [:]
        var order: [[String]] = []
    }

    @Test("SIGKILL during concurrent appends loses no acknowledged event and leaves no gap or duplicate")
    func killDuringConcurrentAppends() throws {
        let home = StackHome()
        var ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "4"])
        let writers = 8
        let acks = Locked(Acks(order: Array(repeating: [], count: writers)))
        let stopping = Locked(false)
        let group = DispatchGroup()
        let socket = home.clientSocket
        for writer in 0..<writers {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let client = try? UnixClient(path: socket) else { return }
                var counter = 0
                while !stopping.value {
                    // Mostly one event per request, sometimes a batch.
                    let size = counter % 10 == 0 ? 20 : 1
                    let events = (0..<size).map { offset in
                        usage("sub-\(writer)-\((counter + offset) % 13)", "1", id: "w\(writer)-\(counter + offset)")
                    }
                    guard let response = try? client.call(appendRequest(events)) else { return }
                    for (offset, result) in (response["results"]?.arrayValue ?? []).enumerated() {
                        if result["status"] == "accepted", let partition = result["partition"]?.intValue,
                            let sequence = result["sequence"]?.intValue
                        {
                            let key = "w\(writer)-\(counter + offset)"
                            acks.withLock { acks in
                                acks.positions[key] = (partition, sequence)
                                acks.order[writer].append(key)
                            }
                        }
                    }
                    counter += size
                }
            }.start()
        }
        usleep(1_500_000)
        ingest.kill(SIGKILL)
        stopping.withLock { $0 = true }
        group.wait()
        let acknowledged = acks.value.positions
        #expect(acknowledged.count > 100, "too few appends to test anything: \(acknowledged.count)")

        ingest = try IngestProcess(home: home)
        let records = try readAll(ingest.client(), partitions: 4)
        var seen: [String: (Int, Int)] = [:]
        var duplicates = 0
        for partition in 0..<4 {
            let sequences = records.filter { $0["partition"]?.intValue == partition }.compactMap { $0["sequence"]?.intValue }
            #expect(sequences == Array(0..<sequences.count), "gap or disorder in partition \(partition)")
        }
        for record in records {
            guard let key = record["event"]?["id"]?.stringValue else { continue }
            if seen[key] != nil { duplicates += 1 }
            seen[key] = (record["partition"]?.intValue ?? -1, record["sequence"]?.intValue ?? -1)
        }
        #expect(duplicates == 0)
        var lost = 0
        for (key, position) in acknowledged {
            guard let found = seen[key] else {
                lost += 1
                continue
            }
            #expect(found == position, "\(key) moved")
        }
        #expect(lost == 0, "\(lost) acknowledged events lost")
        // The restarted process took the idempotency table over from the killed one (it read no key
        // from the sealed segments again), and every key is remembered where it landed: a retry of
        // any acknowledged event is a duplicate pointing at its record.
        let takenOver = ingest.log().firstMatch(of: /(\d+) taken over from its table file/).map { Int($0.1) ?? 0 } ?? 0
        #expect(takenOver > 100, "\(ingest.log())")
        #expect(!ingest.log().contains("rebuilt the idempotency table"), "\(ingest.log())")
        let retrying = try ingest.client()
        let keys = Array(acknowledged.keys)
        for start in stride(from: 0, to: keys.count, by: 500) {
            let slice = keys[start..<min(keys.count, start + 500)]
            let events = slice.map { key -> JSONValue in
                let parts = key.dropFirst().split(separator: "-")
                let (writer, number) = (Int(parts[0])!, Int(parts[1])!)
                // The same message as first sent (a retry must match, or it is a conflict).
                return usage("sub-\(writer)-\(number % 13)", "1", id: key)
            }
            let results = try retrying.call(appendRequest(events))["results"]?.arrayValue ?? []
            for (key, result) in zip(slice, results) {
                #expect(result["status"] == "duplicate", "\(key): \(result)")
                let (partition, sequence) = acknowledged[key]!
                #expect(result["partition"]?.intValue == partition && result["sequence"]?.intValue == sequence, "\(key): \(result)")
            }
        }
        // Each writer's acknowledged events keep their order within a partition.
        for keys in acks.value.order {
            var last: [Int: Int] = [:]
            for key in keys {
                guard let (partition, sequence) = acknowledged[key] else { continue }
                #expect(sequence > last[partition, default: -1])
                last[partition] = sequence
            }
        }
    }
}
