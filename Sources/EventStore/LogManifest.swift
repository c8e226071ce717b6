public import Wire

/// What a log says about itself in `log.json`: its identity, its partition count, the clock its
/// times come from, and the losses an operator accepted. Pure: encoded and decoded as JSON.
///
/// The identity is made when the log is created and changes only when an operator accepts lost
/// records (`meterctl log accept-loss`): from then on sequence numbers are reused, so everything
/// folded from the old identity must be rebuilt. Every `read`/`follow` answer carries it, and the
/// aggregator and query refuse a log whose identity is not the one their state was folded from.
public struct LogManifest: Sendable, Hashable {
    /// The current format of the log (format 1 had one directory per partition and `log.json`
    /// held only `partitions`): the version `--version` reports.
    public static let currentFormat = Version.logFormat

    /// 32 hexadecimal digits, random at creation.
    public var identity: String
    public var partitions: Int
    /// `system` or `manual`: the clock the log's enqueued times come from.
    public var clock: String
    /// When the log was created (wall clock), for operators.
    public var created: String
    /// Records an operator accepted as lost, oldest first.
    public var losses: [Loss]

    /// Records accepted as lost: the log identity before, when, and the missing ranges.
    public struct Loss: Sendable, Hashable {
        public var previousIdentity: String
        public var accepted: String
        public var missing: [String]

        public init(previousIdentity: String, accepted: String, missing: [String]) {
            self.previousIdentity = previousIdentity
            self.accepted = accepted
            self.missing = missing
        }
    }

    public init(identity: String, partitions: Int, clock: String, created: String, losses: [Loss] = []) {
        self.identity = identity
        self.partitions = partitions
        self.clock = clock
        self.created = created
        self.losses = losses
    }

    /// A fresh identity: 128 random bits.
    public static func newIdentity() -> String {
        var generator = SystemRandomNumberGenerator()
        return [generator.next(), generator.next()].map { (word: UInt64) -> String in
            let digits = String(word, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }.joined()
    }

    /// The JSON written to `log.json`.
    public var json: JSONValue {
        [
            "format": .number(String(Self.currentFormat)),
            "identity": .string(identity),
            "partitions": .number(String(partitions)),
            "clock": .string(clock),
            "created": .string(created),
            "losses": .array(
                losses.map {
                    [
                        "previousIdentity": .string($0.previousIdentity), "accepted": .string($0.accepted),
                        "missing": .array($0.missing.map { .string($0) }),
                    ]
                }),
        ]
    }

    /// What `log.json` held: a current manifest, or the partition count of a format-1 log (which
    /// has no identity or clock yet).
    public enum Decoded: Sendable, Hashable {
        case current(LogManifest)
        case formatOne(partitions: Int)
    }

    /// Reads `log.json`'s bytes; the error says what is wrong.
    public static func decode(_ bytes: [UInt8]) -> Result<Decoded, EventLogError> {
        guard let json = try? JSONParser.parse(bytes, maximumDepth: 8), json.objectValue != nil else {
            return .failure(EventLogError("it is not a JSON object"))
        }
        guard let partitions = json["partitions"]?.intValue, partitions > 0, partitions <= 4096 else {
            return .failure(EventLogError("\"partitions\" must be a whole number from 1 to 4096"))
        }
        switch json["format"]?.intValue {
        case 1: return .success(.formatOne(partitions: partitions))
        case currentFormat:
            guard let identity = json["identity"]?.stringValue, identity.utf8.count == 32,
                identity.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
            else { return .failure(EventLogError("\"identity\" must be 32 lowercase hexadecimal digits")) }
            guard let clock = json["clock"]?.stringValue, clock == "system" || clock == "manual" else {
                return .failure(EventLogError("\"clock\" must be \"system\" or \"manual\""))
            }
            var losses: [Loss] = []
            for entry in json["losses"]?.arrayValue ?? [] {
                guard let previous = entry["previousIdentity"]?.stringValue, let accepted = entry["accepted"]?.stringValue else {
                    return .failure(EventLogError("an entry of \"losses\" lacks previousIdentity or accepted"))
                }
                losses.append(
                    Loss(
                        previousIdentity: previous, accepted: accepted,
                        missing: (entry["missing"]?.arrayValue ?? []).compactMap(\.stringValue)))
            }
            return .success(
                .current(
                    LogManifest(
                        identity: identity, partitions: partitions, clock: clock, created: json["created"]?.stringValue ?? "",
                        losses: losses)))
        default:
            return .failure(EventLogError("\"format\" must be 1 or \(currentFormat)"))
        }
    }
}
