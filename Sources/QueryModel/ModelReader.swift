import Wire

/// A read model's stored JSON that does not read back: a damaged snapshot or journal line.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Strict readers for the read models' own JSON (snapshots, journal lines).
enum ModelReader {
    static func object(_ value: JSONValue?, _ what: String) throws(ModelError) -> JSONObject {
        guard let object = value?.objectValue else { throw ModelError("\(what): not an object") }
        return object
    }

    static func string(_ object: JSONObject, _ key: String) throws(ModelError) -> String {
        guard let text = object[key]?.stringValue else { throw ModelError("\"\(key)\" is missing or not a string") }
        return text
    }

    static func int(_ object: JSONObject, _ key: String) throws(ModelError) -> Int {
        guard let number = object[key]?.intValue, number >= 0 else { throw ModelError("\"\(key)\" is missing or not a whole number") }
        return number
    }

    static func timestamp(_ object: JSONObject, _ key: String) throws(ModelError) -> Timestamp {
        guard let time = Timestamp(iso8601: try string(object, key)) else { throw ModelError("\"\(key)\" is not a time") }
        return time
    }

    static func quantity(_ object: JSONObject, _ key: String) throws(ModelError) -> Quantity {
        try quantity(object[key], "\"\(key)\"")
    }

    /// `value` as an exact quantity ≥ 0; `what` names it in the error.
    static func quantity(_ value: JSONValue?, _ what: String) throws(ModelError) -> Quantity {
        switch value {
        case .number(let text)?, .string(let text)?:
            guard let quantity = Quantity(exactly: text), !quantity.isNegative else {
                throw ModelError("\(what) is not an exact quantity ≥ 0")
            }
            return quantity
        default: throw ModelError("\(what) is missing or not a quantity")
        }
    }

    static func resource(_ object: JSONObject) throws(ModelError) -> ResourceName {
        let name = ResourceName(resourceId: object["resourceId"]?.stringValue, resourceUri: object["resourceUri"]?.stringValue)
        guard name.resourceId != nil || name.resourceUri != nil else { throw ModelError("neither resourceId nor resourceUri") }
        return name
    }
}
