import HTTP
import Wire

/// Failures injected into the metering calls (`batchUsageEvent`, `usageEvent`), deterministic
/// given the seed and the order of the calls: each authorized call (a 400 for a bad api-version
/// or a 401 draws nothing) takes the next number of a SplitMix64 sequence; below `failRate`
/// the call fails with `status` and records nothing; below `failRate + dropRate` its connection
/// is cut without a reply, either before anything is recorded or after recording (the crash
/// after the call that a submitter must survive). With `dropMode` `both` the drops alternate,
/// before first, so exactly half of them are of each kind.
struct FaultInjector: Sendable {
    enum DropMode: String, CaseIterable, Sendable {
        case both, before, after
    }

    struct Configuration: Sendable {
        var failRate = 0.0
        var status = 503
        var dropRate = 0.0
        var dropMode = DropMode.both
        /// A delay before answering every metering call, in milliseconds.
        var delayMs = 0
        var seed: UInt64 = 0

        init() {}

        /// Reads `{"failRate":0.3,"status":503,"dropRate":0.1,"dropMode":"both","delayMs":0,"seed":42}`;
        /// absent members take their defaults, and an absent seed is drawn at random (and
        /// reported back, so the run can be repeated).
        init(json: JSONValue) throws(HTTPError) {
            guard let object = json.objectValue else { throw HTTPError(400, "the fault configuration must be a JSON object") }
            let known: Set<String> = ["failRate", "status", "dropRate", "dropMode", "delayMs", "seed"]
            if let unknown = object.keys.first(where: { !known.contains($0) }) {
                throw HTTPError(400, "unknown member \"\(unknown)\"; expected \(known.sorted().joined(separator: ", "))")
            }
            failRate = try Self.rate(object["failRate"], "failRate")
            dropRate = try Self.rate(object["dropRate"], "dropRate")
            guard failRate + dropRate <= 1 else { throw HTTPError(400, "failRate + dropRate must be at most 1") }
            if let value = object["status"] {
                guard let status = value.intValue, status == 429 || (500...599).contains(status) else {
                    throw HTTPError(400, "status must be 429 or a 5xx status such as 503")
                }
                self.status = status
            }
            if let value = object["dropMode"] {
                guard let text = value.stringValue, let mode = DropMode(rawValue: text) else {
                    throw HTTPError(400, "dropMode must be \"both\", \"before\" or \"after\"")
                }
                dropMode = mode
            }
            if let value = object["delayMs"] {
                guard let delay = value.intValue, (0...60_000).contains(delay) else {
                    throw HTTPError(400, "delayMs must be a whole number from 0 to 60000")
                }
                delayMs = delay
            }
            switch object["seed"] {
            case nil, .null?:
                seed = UInt64.random(in: 0...UInt64.max)
            case .number(let text)?:
                guard let value = UInt64(text) ?? Int64(text).map({ UInt64(bitPattern: $0) }) else {
                    throw HTTPError(400, "seed must be a whole number")
                }
                seed = value
            default:
                throw HTTPError(400, "seed must be a whole number")
            }
        }

        private static func rate(_ value: JSONValue?, _ name: String) throws(HTTPError) -> Double {
            guard let value else { return 0 }
            guard case .number(let text) = value, let rate = Double(text), rate >= 0, rate <= 1 else {
                throw HTTPError(400, "\(name) must be a number from 0 to 1")
            }
            return rate
        }

        var json: JSONValue {
            [
                "failRate": .number(String(failRate)), "status": .number(String(status)), "dropRate": .number(String(dropRate)),
                "dropMode": .string(dropMode.rawValue), "delayMs": .number(String(delayMs)), "seed": .number(String(seed)),
            ]
        }
    }

    /// What happens to one call.
    enum Fault: Sendable, Equatable {
        case none
        /// Answer `status` (Retry-After: 1 for 429), recording nothing.
        case fail(status: Int)
        /// Cut the connection before processing: nothing is recorded.
        case dropBeforeProcessing
        /// Process and record the call, then cut the connection instead of replying.
        case dropAfterRecording
    }

    private(set) var configuration: Configuration
    private var random: SplitMix64
    private var drops = 0

    init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.random = SplitMix64(seed: configuration.seed)
    }

    /// The fault for the next call.
    mutating func draw() -> Fault {
        let draw = Double(random.next() >> 11) * 0x1p-53
        if draw < configuration.failRate { return .fail(status: configuration.status) }
        guard draw < configuration.failRate + configuration.dropRate else { return .none }
        switch configuration.dropMode {
        case .before: return .dropBeforeProcessing
        case .after: return .dropAfterRecording
        case .both:
            drops += 1
            return drops % 2 == 1 ? .dropBeforeProcessing : .dropAfterRecording
        }
    }
}
