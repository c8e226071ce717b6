import Testing
import Wire

@testable import Transport

@Suite("A connection's output queue")
struct OutputQueueTests {
    /// Takes up to `limit` bytes of the queue's pieces, as a socket that accepts only that many would.
    private func send(_ queue: inout OutputQueue, atMost limit: Int) -> [UInt8] {
        let taken = queue.withUnsentPieces { pieces -> [UInt8] in
            #expect(pieces.count <= OutputQueue.maximumPieces)
            #expect(pieces.allSatisfy { !$0.isEmpty })
            var taken: [UInt8] = []
            for piece in pieces where taken.count < limit { taken += piece.prefix(limit - taken.count) }
            return taken
        }
        queue.markSent(taken.count)
        return taken
    }

    private func payload(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) &+ seed } }

    @Test("small frames go out as one piece, framed as the frame encoder frames them")
    func smallFramesGoOutAsOnePiece() {
        var queue = OutputQueue()
        let payloads = [Array(#"{"ok":true}"#.utf8), Array(#"{"ok":false}"#.utf8), payload(300, seed: 7)]
        var expected: [UInt8] = []
        for payload in payloads {
            queue.append(frame: payload)
            FrameEncoder.append(payload, to: &expected)
        }
        #expect(queue.unsentBytes == expected.count)
        #expect(queue.withUnsentPieces { $0.count } == 1)
        #expect(send(&queue, atMost: .max) == expected)
        #expect(queue.isEmpty)
    }

    @Test("a large payload is a piece of its own between the headers and small frames around it")
    func aLargePayloadIsAPieceOfItsOwn() {
        var queue = OutputQueue()
        let large = payload(OutputQueue.separatePayloadBytes + 5, seed: 1)
        queue.append(frame: [1, 2, 3])
        queue.append(frame: large)
        queue.append(frame: [4])
        var expected: [UInt8] = []
        for payload in [[1, 2, 3], large, [4]] { FrameEncoder.append(payload, to: &expected) }
        let sizes = queue.withUnsentPieces { $0.map(\.count) }
        #expect(sizes == [4 + 3 + 4, large.count, 4 + 1])
        #expect(send(&queue, atMost: .max) == expected)
        #expect(queue.unsentBytes == 0)
    }

    @Test("bytes sent a few at a time, across every piece's end, arrive in order and complete")
    func partialSendsArriveInOrder() {
        var generator = SplitMix64(seed: 12)
        for round in 0..<40 {
            var queue = OutputQueue()
            var expected: [UInt8] = []
            var received: [UInt8] = []
            for index in 0..<30 {
                let large = generator.next() % 3 == 0
                let size = large ? OutputQueue.separatePayloadBytes + Int(generator.next() % 5000) : 1 + Int(generator.next() % 200)
                let frame = payload(size, seed: UInt8(truncatingIfNeeded: index + round))
                queue.append(frame: frame)
                FrameEncoder.append(frame, to: &expected)
                // The socket takes some of it now and then, as answers keep coming.
                if generator.next() % 2 == 0 { received += send(&queue, atMost: 1 + Int(generator.next() % 40_000)) }
                #expect(queue.unsentBytes == expected.count - received.count)
            }
            while !queue.isEmpty { received += send(&queue, atMost: 1 + Int(generator.next() % 70_000)) }
            #expect(received == expected, "round \(round)")
        }
    }

    @Test("at most eight pieces go to one write, however many frames wait")
    func atMostEightPiecesPerWrite() {
        var queue = OutputQueue()
        var expected: [UInt8] = []
        for index in 0..<20 {
            let frame = payload(OutputQueue.separatePayloadBytes, seed: UInt8(index))
            queue.append(frame: frame)
            FrameEncoder.append(frame, to: &expected)
        }
        #expect(queue.withUnsentPieces { $0.count } == OutputQueue.maximumPieces)
        var received: [UInt8] = []
        while !queue.isEmpty { received += send(&queue, atMost: .max) }
        #expect(received == expected)
    }

    @Test("a queue emptied by closing holds nothing and takes new frames")
    func removeAllEmptiesTheQueue() {
        var queue = OutputQueue()
        queue.append(frame: payload(OutputQueue.separatePayloadBytes * 2, seed: 3))
        _ = send(&queue, atMost: 1000)
        queue.removeAll()
        #expect(queue.isEmpty)
        #expect(queue.withUnsentPieces { $0.count } == 0)
        queue.append(frame: [9])
        #expect(send(&queue, atMost: .max) == [0, 0, 0, 1, 9])
    }
}
