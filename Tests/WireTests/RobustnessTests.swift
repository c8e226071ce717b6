import TestFixtures
import Testing
import Wire

/// Deterministic random inputs for the decoders: they must answer with an error, never crash.
/// (The coverage-guided fuzzer in fuzz/ explores further; this runs in every test run.)
@Suite("Decoder robustness")
struct RobustnessTests {
    @Test("random bytes never crash the frame decoder or the request decoder")
    func randomBytes() {
        var random = SplitMix64(seed: 42)
        for _ in 0..<2_000 {
            let count = Int.random(in: 0..<200, using: &random)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            var decoder = FrameDecoder(maximumFrameLength: 1 << 16)
            if let frames = try? decoder.decode(bytes) {
                for frame in frames { _ = Request.decode(frame) }
            }
            _ = Request.decode(bytes)
        }
    }

    @Test("mutated sample messages are accepted or rejected with a reason, never crash")
    func mutatedSamples() throws {
        var random = SplitMix64(seed: 7)
        var corpus: [[UInt8]] = []
        for (_, message) in try Fixtures.internalMessages() { corpus.append(JSONWriter.bytes(message)) }
        #expect(!corpus.isEmpty)
        var accepted = 0
        var rejected = 0
        for _ in 0..<20_000 {
            var bytes = corpus[Int.random(in: 0..<corpus.count, using: &random)]
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let position = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0: bytes[position] = UInt8.random(in: 0...255, using: &random)
                case 1: bytes.remove(at: position)
                case 2: bytes.insert(Array("{}[]\",:0-e.\\".utf8).randomElement(using: &random)!, at: position)
                default: bytes = Array(bytes[..<position])
                }
                if bytes.isEmpty { break }
            }
            guard let json = try? JSONParser.parse(bytes) else {
                rejected += 1
                continue
            }
            switch Message.decode(json) {
            case .success: accepted += 1
            case .failure(let error):
                #expect(!error.reason.isEmpty)
                rejected += 1
            }
        }
        #expect(accepted > 0 && rejected > 0)
    }
}
