import Foundation
import Wire

/// `meterctl send`: purchases, usage and deletions from flags, or messages from a file.
enum Send {
    static func run(_ raw: [String]) throws {
        var arguments = try MeterCtl.Arguments(raw, switches: ["admin", "json"])
        let sockets = try arguments.sockets()
        let useAdmin = arguments.flag("admin")
        let json = arguments.flag("json")
        var events: [JSONValue]
        if let file = arguments.value("file") {
            events = try readFile(file)
        } else {
            guard let kind = arguments.words.first else {
                throw MeterCtl.Failure("send what? purchase, usage, delete, or --file FILE")
            }
            events = [try message(kind, &arguments)]
        }
        try arguments.rejectUnused()
        let client = try MeterCtl.connect(useAdmin ? sockets.admin : sockets.client)
        let response = try MeterCtl.call(client, Request(op: "append", fields: JSONObject(["events": .array(events)])))
        let results = response["results"]?.arrayValue ?? []
        if json {
            MeterCtl.printJSON(.array(results))
        }
        var rejected = 0
        for (index, result) in results.enumerated() {
            let status = result["status"]?.stringValue ?? "?"
            if status == "rejected" {
                rejected += 1
                let message = result["error"]?["message"]?.stringValue ?? ""
                FileHandle.standardError.write(Data("event \(index): rejected: \(message)\n".utf8))
            } else if !json {
                let partition = result["partition"]?.intValue.map(String.init) ?? "?"
                let sequence = result["sequence"]?.intValue.map(String.init) ?? "?"
                let time = result["enqueuedTime"]?.stringValue ?? "?"
                print("event \(index): \(status) partition \(partition) sequence \(sequence) at \(time)")
            }
        }
        if rejected > 0 { throw MeterCtl.Failure("\(rejected) of \(results.count) events rejected") }
    }

    /// One message or an array of them; a UTF-8 byte-order mark is fine.
    static func readFile(_ path: String) throws -> [JSONValue] {
        guard let data = FileManager.default.contents(atPath: path) else { throw MeterCtl.Failure("cannot read \(path)") }
        let json: JSONValue
        do {
            json = try JSONParser.parse(Array(data))
        } catch {
            throw MeterCtl.Failure("\(path) is not valid JSON: \(error)")
        }
        if let array = json.arrayValue { return array }
        return [json]
    }

    static func resource(_ arguments: inout MeterCtl.Arguments) throws -> [JSONObject.Member] {
        var members: [JSONObject.Member] = []
        if let id = arguments.value("resource-id") { members.append(.init("resourceId", .string(id))) }
        if let uri = arguments.value("resource-uri") { members.append(.init("resourceUri", .string(uri))) }
        guard !members.isEmpty else { throw MeterCtl.Failure("name the subscription with --resource-id and/or --resource-uri") }
        return members
    }

    static func now() -> String {
        Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601
    }

    static func envelope(_ type: String, _ value: [JSONObject.Member], id: String?) -> JSONValue {
        var members = [JSONObject.Member("type", .string(type)), JSONObject.Member("value", .object(JSONObject(value)))]
        if let id { members.append(.init("id", .string(id))) }
        return .object(JSONObject(members))
    }

    static func message(_ kind: String, _ arguments: inout MeterCtl.Arguments) throws -> JSONValue {
        let id = arguments.value("id")
        switch kind {
        case "usage":
            var value = try resource(&arguments)
            guard let meter = arguments.value("meter") else { throw MeterCtl.Failure("usage needs --meter NAME") }
            guard let quantity = arguments.value("quantity") else { throw MeterCtl.Failure("usage needs --quantity Q") }
            value.append(.init("timestamp", .string(arguments.value("timestamp") ?? now())))
            value.append(.init("meterName", .string(meter)))
            value.append(.init("quantity", Quantity(exactly: quantity).map { $0.json } ?? .string(quantity)))
            let properties = arguments.all("property")
            if !properties.isEmpty {
                var map = JSONObject()
                for property in properties {
                    guard let equals = property.firstIndex(of: "=") else {
                        throw MeterCtl.Failure("--property takes KEY=VALUE, got \"\(property)\"")
                    }
                    map[String(property[..<equals])] = .string(String(property[property.index(after: equals)...]))
                }
                value.append(.init("properties", .object(map)))
            }
            return envelope("UsageReported", value, id: id)
        case "delete":
            return envelope("SubscriptionDeleted", try resource(&arguments), id: id)
        case "purchase":
            var subscription = try resource(&arguments)
            subscription.append(.init("subscriptionStart", .string(arguments.value("start") ?? now())))
            subscription.append(.init("renewalInterval", .string(arguments.value("renewal") ?? "Monthly")))
            subscription.append(.init("plan", try plan(&arguments)))
            return envelope("SubscriptionPurchased", [.init("subscription", .object(JSONObject(subscription)))], id: id)
        default:
            throw MeterCtl.Failure("unknown message kind \"\(kind)\"; use purchase, usage or delete")
        }
    }

    /// A plan from `--plan-file` (a plan object, or a whole purchase message) or from flags.
    static func plan(_ arguments: inout MeterCtl.Arguments) throws -> JSONValue {
        if let file = arguments.value("plan-file") {
            guard let json = try readFile(file).first else { throw MeterCtl.Failure("\(file) is empty") }
            if let plan = json["value"]?["subscription"]?["plan"] { return plan }
            guard json["planId"] != nil else { throw MeterCtl.Failure("\(file) holds neither a plan nor a purchase message") }
            return json
        }
        guard let planId = arguments.value("plan-id") else { throw MeterCtl.Failure("purchase needs --plan-file FILE or --plan-id P") }
        var dimensions = JSONObject()
        for spec in arguments.all("dimension") {
            guard let equals = spec.firstIndex(of: "=") else {
                throw MeterCtl.Failure("--dimension takes METER=DIMENSION[:INCLUDED], got \"\(spec)\"")
            }
            let meter = String(spec[..<equals])
            let rest = spec[spec.index(after: equals)...].split(separator: ":", maxSplits: 1).map(String.init)
            var members = [JSONObject.Member("type", "simple"), JSONObject.Member("dimension", .string(rest[0]))]
            if rest.count == 2 {
                let included = rest[1]
                members.append(
                    .init("included", included == "Infinite" ? .string(included) : (Quantity(exactly: included)?.json ?? .string(included)))
                )
            }
            dimensions[meter] = .object(JSONObject(members))
        }
        guard !dimensions.members.isEmpty else {
            throw MeterCtl.Failure("--plan-id needs at least one --dimension METER=DIMENSION[:INCLUDED]")
        }
        return .object(JSONObject([.init("planId", .string(planId)), .init("billingDimensions", .object(dimensions))]))
    }
}
