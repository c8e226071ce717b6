import Foundation
import HTTP
import Reconciliation
import Wire

/// The Azure Marketplace Metering Service's `batchUsageEvent`, with every way it can answer.
struct MarketplaceClient {
    static let maximumBatch = 25
    let baseURL: URL
    let http: HTTPClient
    let tokens: TokenProvider

    /// What one call produced.
    enum Outcome {
        /// The marketplace answered for every item (in order), with the request's ids.
        case results([JSONObject], requestId: String, correlationId: String)
        /// The whole request was refused as malformed (HTTP 400): no item was recorded.
        case badRequest(String)
        /// Nothing is known about the items: retry later (connection, timeout, 401/403, 429, 5xx,
        /// an unreadable reply). `retryAfter` is the server's hint, in seconds.
        case retry(String, retryAfter: Double?)
    }

    /// The request body of one item: the marketplace request shape.
    static func requestItem(_ item: JSONValue) -> JSONValue {
        var members: [JSONObject.Member] = []
        for key in ["resourceId", "resourceUri", "quantity", "dimension", "effectiveStartTime", "planId"] {
            if let value = item[key] { members.append(.init(key, value)) }
        }
        return .object(JSONObject(members))
    }

    func submit(_ items: [JSONValue]) -> Outcome {
        precondition(!items.isEmpty && items.count <= Self.maximumBatch)
        let token: String
        do {
            token = try tokens.token()
        } catch {
            return .retry("cannot get a token: \(error)", retryAfter: nil)
        }
        let requestId = UUID().uuidString.lowercased()
        let correlationId = UUID().uuidString.lowercased()
        let body = JSONWriter.bytes(.object(JSONObject(["request": .array(items.map(Self.requestItem))])))
        let url = baseURL.appendingPathComponent("api/batchUsageEvent")
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        components.queryItems = [URLQueryItem(name: "api-version", value: "2018-08-31")]
        let reply: HTTPClient.Reply
        do {
            reply = try http.send(
                "POST", components.url!,
                headers: [
                    "Authorization": "Bearer \(token)", "Content-Type": "application/json", "x-ms-requestid": requestId,
                    "x-ms-correlationid": correlationId,
                ], body: body)
        } catch {
            return .retry("the call failed: \(error)", retryAfter: nil)
        }
        let retryAfter = reply.headers["retry-after"].flatMap(Double.init)
        switch reply.status {
        case 200:
            guard let json = try? JSONParser.parse(reply.body), let results = json["result"]?.arrayValue,
                results.count == items.count, results.allSatisfy({ $0.objectValue != nil })
            else {
                return .retry("HTTP 200 with an unreadable or incomplete body (\(reply.body.count) bytes)", retryAfter: nil)
            }
            return .results(results.compactMap(\.objectValue), requestId: requestId, correlationId: correlationId)
        case 400:
            let message =
                (try? JSONParser.parse(reply.body))?["message"]?.stringValue ?? String(decoding: reply.body.prefix(300), as: UTF8.self)
            return .badRequest(message)
        case 401, 403:
            tokens.invalidate()
            return .retry("HTTP \(reply.status): the token was refused; a new one will be requested", retryAfter: nil)
        default:
            return .retry("HTTP \(reply.status)", retryAfter: retryAfter)
        }
    }
}
