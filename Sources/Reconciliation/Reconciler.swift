import Foundation
import HTTP
import Transport
public import Wire

/// One reconciliation pass: our accepted ledger from `meter-query` (`accepted`) against the
/// marketplace's `GET /api/usageEvents`, per usage day, resource and dimension.
public struct Reconciler: Sendable {
    public let access: MarketplaceAccess
    public let querySocket: String
    let http: HTTPClient
    let tokens: TokenProvider

    /// Why a pass could not compare: a side could not be read.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    public init(access: MarketplaceAccess, querySocket: String, timeout: Double = 30) {
        self.access = access
        self.querySocket = querySocket
        http = HTTPClient(timeout: timeout)
        tokens = TokenProvider(credentials: access.credentials, http: http)
    }

    /// Compares the usage days `[from, to)` (midnights UTC).
    public func run(from: Timestamp, to: Timestamp) throws(Failure) -> ReconciliationReport {
        let (ours, asOf) = try accepted(from: from, to: to)
        let theirs = try usageEvents(from: from, to: to)
        let now = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))
        return ReconciliationReport.compare(ours: ours, theirs: theirs, from: from, to: to, ranAt: now, asOf: asOf)
    }

    /// The days of the query service's log time `asOf` that are complete: those ending at least
    /// `settleHours` before it (the marketplace takes an hour's usage up to 24 hours late).
    public static func settledDays(asOf: Timestamp, settleHours: Int, lookbackDays: Int) -> (from: Timestamp, to: Timestamp)? {
        let day = Timestamp.microsecondsPerDay
        let limit = asOf.microseconds - Int64(settleHours) * Timestamp.microsecondsPerHour
        let to = Timestamp(microseconds: (limit >= 0 ? limit / day : (limit - day + 1) / day) * day)
        let from = to.adding(microseconds: -Int64(lookbackDays) * day)
        return from < to ? (from, to) : nil
    }

    /// The query service's log time: the lowest partition clock it has folded to.
    public func queryTime() throws(Failure) -> Timestamp? {
        let status: JSONObject
        do {
            status = try UnixClient(path: querySocket).call("status")
        } catch {
            throw Failure("cannot read meter-query's status at \(querySocket): \(error)")
        }
        return (status["partitions"]?.arrayValue ?? []).compactMap { $0["time"]?.stringValue.flatMap(Timestamp.init(iso8601:)) }.min()
    }

    /// Our side: what the marketplace ledger of `meter-query` says was accepted.
    func accepted(from: Timestamp, to: Timestamp) throws(Failure) -> ([LedgerDay], Timestamp?) {
        let response: JSONObject
        do {
            let client = try UnixClient(path: querySocket)
            client.setReceiveTimeout(seconds: 120)
            response = try client.call(
                Request(op: "accepted", fields: JSONObject(["from": .string(from.iso8601), "to": .string(to.iso8601)])))
        } catch {
            throw Failure("cannot read the accepted ledger from meter-query at \(querySocket): \(error)")
        }
        var days: [LedgerDay] = []
        for entry in response["days"]?.arrayValue ?? [] {
            guard let date = entry["usageDate"]?.stringValue.flatMap({ Timestamp(iso8601: $0 + "T00:00:00Z") }),
                let dimension = entry["dimension"]?.stringValue, let quantity = Self.quantity(entry["quantity"])
            else { throw Failure("meter-query's accepted ledger has an entry without a date, dimension or quantity") }
            days.append(
                LedgerDay(
                    usageDate: date,
                    resource: ResourceName(resourceId: entry["resourceId"]?.stringValue, resourceUri: entry["resourceUri"]?.stringValue),
                    planId: entry["planId"]?.stringValue ?? "", dimension: dimension, quantity: quantity,
                    count: entry["count"]?.intValue ?? 0))
        }
        return (days, response["asOf"]?.stringValue.flatMap(Timestamp.init(iso8601:)))
    }

    /// The marketplace's side: `GET {base}/api/usageEvents?usageStartDate=&usageEndDate=` (the end day included).
    func usageEvents(from: Timestamp, to: Timestamp) throws(Failure) -> [LedgerDay] {
        let token: String
        do {
            token = try tokens.token()
        } catch {
            throw Failure("cannot get a token for the marketplace: \(error)")
        }
        var components = URLComponents(url: access.baseURL.appendingPathComponent("api/usageEvents"), resolvingAgainstBaseURL: false)!
        components.queryItems = [
            URLQueryItem(name: "api-version", value: "2018-08-31"),
            URLQueryItem(name: "usageStartDate", value: String(from.iso8601.prefix(10))),
            URLQueryItem(name: "usageEndDate", value: String(to.adding(microseconds: -Timestamp.microsecondsPerDay).iso8601.prefix(10))),
        ]
        let reply: HTTPClient.Reply
        do {
            reply = try http.send(
                "GET", components.url!,
                headers: [
                    "Authorization": "Bearer \(token)", "x-ms-requestid": UUID().uuidString.lowercased(),
                    "x-ms-correlationid": UUID().uuidString.lowercased(),
                ], body: nil)
        } catch {
            throw Failure("the marketplace's usageEvents call failed: \(error)")
        }
        if reply.status == 401 || reply.status == 403 { tokens.invalidate() }
        guard reply.status == 200, let rows = (try? JSONParser.parse(reply.body))?.arrayValue else {
            throw Failure("the marketplace's usageEvents answered HTTP \(reply.status) (\(reply.body.count) bytes)")
        }
        var days: [LedgerDay] = []
        for row in rows {
            guard let date = row["usageDate"]?.stringValue.flatMap(Timestamp.init(iso8601:)), let dimension = row["dimension"]?.stringValue,
                let name = row["usageResourceId"]?.stringValue, let submitted = Self.quantity(row["submittedQuantity"])
            else { throw Failure("a usageEvents row lacks usageDate, usageResourceId, dimension or submittedQuantity") }
            // A managed application's resource is its ARM id; a SaaS subscription's a GUID.
            let resource = name.hasPrefix("/") ? ResourceName(resourceUri: name) : ResourceName(resourceId: name)
            days.append(
                LedgerDay(
                    usageDate: date, resource: resource, planId: row["planId"]?.stringValue ?? "", dimension: dimension,
                    quantity: submitted,
                    count: row["submittedCount"]?.intValue ?? 0, processedQuantity: Self.quantity(row["processedQuantity"]),
                    reconStatus: row["reconStatus"]?.stringValue))
        }
        return days
    }

    static func quantity(_ value: JSONValue?) -> Quantity? {
        switch value {
        case .number(let text)?, .string(let text)?: return Quantity(exactly: text)
        default: return nil
        }
    }
}
