import Crypto
import Foundation
import Wire

/// A registered receiver of notifications: where they go, the secret they are signed with, which
/// types it wants, the subscriptions and plans it is about, and its usage thresholds.
struct Subscriber: Sendable, Equatable {
    /// `wh_` and 16 hexadecimal digits, chosen by the notifier.
    var id: String
    /// Where notifications are posted: an http or https URL.
    var url: String
    /// The HMAC-SHA256 key of the signatures; never shown after the registration.
    var secret: String
    var events: [NotificationType]
    /// Names (`resourceId` or `resourceUri`) of the subscriptions it is about; empty for all.
    var subscriptions: [String] = []
    /// Plans whose subscriptions it is about; empty for all.
    var plans: [String] = []
    /// Meters its thresholds apply to; empty for all.
    var meters: [String] = []
    var thresholds: [ThresholdMark] = []
    /// When it was registered (wall clock).
    var created: Timestamp

    /// Why a registration is refused: the message names the field.
    struct Invalid: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// A new subscriber from a registration request (`url`, `secret`?, `events`?, `subscriptions`?,
    /// `plans`?, `meters`?, `percents`?, `quantities`?); a secret is made when none is given.
    init(registration request: JSONObject, id: String, created: Timestamp) throws(Invalid) {
        guard let url = request["url"]?.stringValue else { throw Invalid("\"url\" is missing: where the notifications are posted") }
        try Self.check(url: url)
        self.id = id
        self.url = url
        self.created = created
        if let secret = request["secret"]?.stringValue {
            guard secret.utf8.count >= 16, secret.utf8.count <= 512 else {
                throw Invalid("\"secret\" must be 16 to 512 bytes long (leave it out and the notifier makes one)")
            }
            self.secret = secret
        } else {
            secret = Self.makeSecret()
        }
        events = try Self.strings(request, "events").map { name throws(Invalid) -> NotificationType in
            guard let type = NotificationType(rawValue: name) else {
                throw Invalid(
                    "unknown event type \"\(name)\"; the types are \(NotificationType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return type
        }
        if events.isEmpty { events = NotificationType.allCases }
        subscriptions = try Self.strings(request, "subscriptions")
        plans = try Self.strings(request, "plans")
        meters = try Self.strings(request, "meters")
        for value in request["percents"]?.arrayValue ?? [] {
            guard let percent = value.intValue, ThresholdMark.percentRange.contains(percent) else {
                throw Invalid("\"percents\" takes whole numbers from 1 to 1000, not \(JSONWriter.string(value))")
            }
            thresholds.append(.percent(percent))
        }
        for value in request["quantities"]?.arrayValue ?? [] {
            let text: String?
            switch value {
            case .number(let number), .string(let number): text = number
            default: text = nil
            }
            guard let text, let quantity = Quantity(exactly: text), quantity > .zero else {
                throw Invalid("\"quantities\" takes positive quantities, not \(JSONWriter.string(value))")
            }
            thresholds.append(.quantity(quantity))
        }
        var seen: Set<ThresholdMark> = []
        thresholds = thresholds.filter { seen.insert($0).inserted }
        if events.contains(.usageThreshold) && thresholds.isEmpty && request["events"] != nil {
            throw Invalid("usage.threshold needs thresholds: \"percents\" (of the included quantity) and/or \"quantities\"")
        }
        if thresholds.isEmpty { events.removeAll { $0 == .usageThreshold } }
    }

    /// A subscriber as the notifier's file keeps it.
    init(stored json: JSONValue) throws(Invalid) {
        guard let object = json.objectValue, let id = object["id"]?.stringValue, let url = object["url"]?.stringValue,
            let createdText = object["created"]?.stringValue, let created = Timestamp(iso8601: createdText),
            let secret = object["secret"]?.stringValue
        else { throw Invalid("a subscriber entry lacks its id, url, creation time or secret") }
        self.id = id
        self.url = url
        self.secret = secret
        self.created = created
        events = try Self.strings(object, "events").compactMap { NotificationType(rawValue: $0) }
        subscriptions = try Self.strings(object, "subscriptions")
        plans = try Self.strings(object, "plans")
        meters = try Self.strings(object, "meters")
        thresholds = try Self.strings(object, "thresholds").compactMap(ThresholdMark.init)
    }

    static func check(url text: String) throws(Invalid) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty, url.user == nil, url.password == nil
        else {
            throw Invalid("\"url\" must be an http or https URL without credentials in it, such as https://billing.example.com/hooks")
        }
        guard text.utf8.count <= 2048 else { throw Invalid("\"url\" is longer than 2048 bytes") }
    }

    private static func strings(_ object: JSONObject, _ key: String) throws(Invalid) -> [String] {
        guard let value = object[key], value != .null else { return [] }
        guard let array = value.arrayValue else { throw Invalid("\"\(key)\" must be a list of strings") }
        var result: [String] = []
        for element in array {
            guard let text = element.stringValue, !text.isEmpty, text.utf8.count <= 1024 else {
                throw Invalid("\"\(key)\" must be a list of non-empty strings")
            }
            if !result.contains(text) { result.append(text) }
        }
        guard result.count <= 10_000 else { throw Invalid("\"\(key)\" names more than 10,000 entries") }
        return result
    }

    /// 32 random bytes, `whsec_` and their base64url text.
    static func makeSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return "whsec_" + ByteText.base64URL((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// A new id: `wh_` and 16 hexadecimal digits.
    static func makeID() -> String {
        var generator = SystemRandomNumberGenerator()
        return "wh_" + ByteText.hex((0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// Whether it is about the subscription named `names` on plan `planId`.
    func covers(names: [String], planId: String?) -> Bool {
        if !subscriptions.isEmpty && !names.contains(where: subscriptions.contains) { return false }
        if !plans.isEmpty && !(planId.map(plans.contains) ?? false) { return false }
        return true
    }

    /// Whether it wants `notification` (a body as the outbox keeps it).
    func wants(_ notification: JSONObject) -> Bool {
        guard let type = notification["type"]?.stringValue.flatMap(NotificationType.init(rawValue:)), events.contains(type) else {
            return false
        }
        let subscription = notification["subscription"]
        let names = [subscription?["resourceId"]?.stringValue, subscription?["resourceUri"]?.stringValue].compactMap { $0 }
        guard covers(names: names, planId: notification["planId"]?.stringValue) else { return false }
        guard type == .usageThreshold else { return true }
        if !meters.isEmpty && !(notification["meterName"]?.stringValue.map(meters.contains) ?? false) { return false }
        guard let mark = ThresholdMark(json: notification["threshold"]) else { return false }
        return thresholds.contains(mark)
    }

    /// The subscriber as the file keeps it (`withSecret`) or as `list` shows it.
    func json(withSecret: Bool) -> JSONValue {
        var members: [JSONObject.Member] = [.init("id", .string(id)), .init("url", .string(url))]
        if withSecret { members.append(.init("secret", .string(secret))) }
        members += [
            .init("events", .array(events.map { .string($0.rawValue) })),
            .init("subscriptions", .array(subscriptions.map { .string($0) })),
            .init("plans", .array(plans.map { .string($0) })),
            .init("meters", .array(meters.map { .string($0) })),
            .init("thresholds", .array(thresholds.map { .string($0.description) })),
            .init("created", .string(created.iso8601)),
        ]
        return .object(JSONObject(members))
    }
}

/// The thresholds the fold watches: every mark some subscriber wants, with the subscriptions and
/// meters it wants it for. A value, handed to each fold step, so a registration changes what the
/// following records are checked for and nothing else.
struct ThresholdRules: Sendable {
    private var watchers: [(subscriber: Subscriber, marks: [ThresholdMark])] = []

    /// The rules of `subscribers`.
    init(_ subscribers: [Subscriber]) {
        watchers = subscribers.filter { $0.events.contains(.usageThreshold) && !$0.thresholds.isEmpty }.map { ($0, $0.thresholds) }
    }

    /// Whether any subscriber wants thresholds at all (if not, usage costs the fold nothing more).
    var isEmpty: Bool { watchers.isEmpty }

    /// The marks wanted for meter `meterName` of the subscription named `names` on plan `planId`.
    func marks(names: [String], planId: String, meterName: String) -> [ThresholdMark] {
        var marks: [ThresholdMark] = []
        for (subscriber, wanted) in watchers where subscriber.covers(names: names, planId: planId) {
            if !subscriber.meters.isEmpty && !subscriber.meters.contains(meterName) { continue }
            for mark in wanted where !marks.contains(mark) { marks.append(mark) }
        }
        return marks
    }
}
