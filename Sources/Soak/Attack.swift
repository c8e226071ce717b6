import Foundation
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One kind of hostile client, run on a thread of its own until `stop`, counting what it did.
final class Attack: Sendable {
    let name: String
    private let state = Mutex(State())
    private let finished = DispatchSemaphore(value: 0)

    private struct State {
        var running = true
        /// What it did, by kind.
        var counts: [String: Int] = [:]
    }

    init(_ name: String, _ body: @escaping @Sendable (Attack) -> Void) {
        self.name = name
        let thread = Thread { [self] in
            body(self)
            finished.signal()
        }
        thread.name = "attack-\(name)"
        thread.start()
    }

    var isRunning: Bool { state.withLock { $0.running } }

    func count(_ what: String, _ amount: Int = 1) { state.withLock { $0.counts[what, default: 0] += amount } }

    /// Ends the attack and waits for its thread (which closes its connections).
    func stop() {
        state.withLock { $0.running = false }
        finished.wait()
    }

    /// Sleeps `seconds`, or less when the attack is stopped meanwhile.
    func pause(_ seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning && Date() < deadline { usleep(20_000) }
    }

    var summary: String {
        let text = state.withLock { $0.counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
        return "\(name): \(text.isEmpty ? "nothing" : text)"
    }
}

/// The attacks of the soak.
enum Attacks {
    /// Malformed frames of every kind against the Unix sockets, a few dozen a second.
    static func malformedFrames(_ sockets: [String]) -> Attack {
        Attack("malformed frames") { attack in
            var generator = SplitMix64(seed: 11)
            let deep = Array(repeating: UInt8(ascii: "["), count: 100_000)
            let cases: [[UInt8]] = [
                [0, 0, 0, 0],
                [0xFF, 0xFF, 0xFF, 0xFF],
                [0, 0, 0, 100] + Array("{\"op\":\"status\"".utf8),
                FrameEncoder.frame(Array("not json at all".utf8)),
                FrameEncoder.frame(deep),
                FrameEncoder.frame(Array(#"{"op":"append","events":[{"type":"UsageReported","value":{"quantity":"NaN"}}]}"#.utf8)),
                FrameEncoder.frame(Array("{\"op\":\"\\u0000\\n2026-01-01 forged\"}".utf8)),
                FrameEncoder.frame(Array(#"{"op":"read","partition":99999999999999999999}"#.utf8)),
                FrameEncoder.frame(Array(#"{"op":"follow","partition":0,"from":-1}"#.utf8)),
            ]
            while attack.isRunning {
                let path = sockets[Int.random(in: 0..<sockets.count, using: &generator)]
                guard let socket = RawSocket.unix(path) else {
                    attack.count("not connected")
                    attack.pause(0.05)
                    continue
                }
                var bytes = cases[Int.random(in: 0..<(cases.count + 1), using: &generator) % cases.count]
                if Int.random(in: 0..<5, using: &generator) == 0 {
                    bytes = (0..<Int.random(in: 1...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                }
                _ = socket.send(bytes)
                attack.count("sent")
                // Read the answer (an error frame), or give up after a moment.
                let deadline = Date().addingTimeInterval(0.2)
                while Date() < deadline && !socket.peerClosed() { usleep(10_000) }
                attack.pause(0.02)
            }
        }
    }

    /// Garbage and half requests against the HTTP servers.
    static func malformedHTTP(_ ports: [Int]) -> Attack {
        Attack("malformed HTTP") { attack in
            var generator = SplitMix64(seed: 13)
            let cases = [
                "GARBAGE\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "GET /%zz HTTP/1.1\r\n\r\n",
                "POST /v1/messages HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                "POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "GET /x%0a2026-01-01T00:00:00Z%20forged%00 HTTP/1.1\r\n\r\n",
                "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 40_000) + "\r\n\r\n",
                "POST /v1/messages HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\"",
            ]
            while attack.isRunning {
                let port = ports[Int.random(in: 0..<ports.count, using: &generator)]
                if let socket = RawSocket.tcp(port, within: 2) {
                    let request = cases[Int.random(in: 0..<cases.count, using: &generator)]
                    _ = socket.exchange(Array(request.utf8), within: 1)
                    attack.count("sent")
                } else {
                    attack.count("not connected")
                }
                attack.pause(0.05)
            }
        }
    }

    /// `connections` slowloris connections to `port`: a request head one byte a second, never
    /// finished; a closed one is opened again.
    static func slowloris(port: Int, connections: Int, label: String) -> Attack {
        Attack("slowloris \(label)") { attack in
            let start = Array("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8)
            var held: [RawSocket?] = Array(repeating: nil, count: connections)
            while attack.isRunning {
                for index in held.indices where attack.isRunning {
                    if let socket = held[index], socket.send([UInt8(ascii: "a")]) != nil, !socket.peerClosed() { continue }
                    if held[index] != nil { attack.count("closed by the server") }
                    held[index] = RawSocket.tcp(port, within: 1)
                    if let socket = held[index] {
                        socket.send(start)
                        attack.count("opened")
                    } else {
                        attack.count("not connected")
                    }
                }
                attack.pause(1)
            }
        }
    }

    /// `connections` clients of each socket that pipeline requests with big answers and never
    /// read them; a closed one is opened again.
    static func nonReaders(_ targets: [(path: String, request: Request)], connections: Int) -> Attack {
        Attack("non-readers") { attack in
            var held: [(socket: RawSocket?, pending: [UInt8], target: Int)] = []
            for index in 0..<(connections * targets.count) { held.append((nil, [], index % targets.count)) }
            while attack.isRunning {
                for index in held.indices where attack.isRunning {
                    if held[index].socket == nil || held[index].socket!.peerHungUp() {
                        if held[index].socket != nil { attack.count("closed by the server") }
                        let target = targets[held[index].target]
                        held[index].socket = RawSocket.unix(target.path)
                        held[index].pending = Array(repeating: FrameEncoder.frame(target.request.bytes), count: 200).flatMap { $0 }
                        attack.count(held[index].socket == nil ? "not connected" : "opened")
                    }
                    if let socket = held[index].socket, !held[index].pending.isEmpty, let sent = socket.send(held[index].pending) {
                        held[index].pending.removeFirst(sent)
                    }
                }
                attack.pause(0.5)
            }
        }
    }

    /// Holds up to `holding` connections to `path` that never send anything, replacing a tenth
    /// of them every second: more than the socket's budget.
    static func flood(_ path: String, holding: Int, label: String) -> Attack {
        Attack("connection flood \(label)") { attack in
            var held: [RawSocket] = []
            while attack.isRunning {
                held.removeFirst(min(held.count, holding / 10))
                while held.count < holding && attack.isRunning {
                    guard let socket = RawSocket.unix(path) else {
                        attack.count("not connected")
                        break
                    }
                    held.append(socket)
                    attack.count("opened")
                }
                attack.pause(1)
                let before = held.count
                held.removeAll { $0.peerClosed() }
                attack.count("closed by the server", before - held.count)
            }
        }
    }
}
