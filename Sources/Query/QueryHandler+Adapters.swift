import Billing
import Foundation
import QueryModel
import QueryWeb
import Wire

/// The usage API's reads (docs/BILLING-ADAPTERS.md): the socket operations' answers, limited to
/// what the adapter's credential may read.
extension QueryHandler: AdapterBackend {
    func usage(from start: Int, size: Int, names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        try usagePage(from: start, size: size, names: names)
    }

    func subscriptions(after: String?, max: Int, names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        subscriptionPage(after: after, size: max, names: names)
    }

    func submissions(cursor: String?, size: Int, status: String?, names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        try submissionPage(cursor: cursor, size: size, status: status, names: names)
    }

    func events(_ name: ResourceName, from: Timestamp?, to: Timestamp?, after: Int?, max: Int) throws(AdapterProblem) -> JSONObject {
        var fields = JSONObject(name.members)
        if let from { fields["from"] = .string(from.iso8601) }
        if let to { fields["to"] = .string(to.iso8601) }
        if let after { fields["after"] = .number(String(after)) }
        fields["max"] = .number(String(max))
        do {
            return try events(Request(op: "events", fields: fields))
        } catch let error as WireError {
            throw AdapterProblem(error)
        } catch {
            throw AdapterProblem(WireError(.unavailable, "\(error)"))
        }
    }

    /// The plans the subscriptions were bought on, in the purchase message's form, each with how
    /// many subscriptions hold it now; a plan id bought with different dimensions is listed once
    /// per variant.
    func plans(names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        var counts: [[UInt8]: (plan: JSONObject, subscriptions: Int)] = [:]
        for worker in workers {
            let found = worker.read { view -> [JSONObject] in
                view.state.subscriptionKeys.compactMap { key -> JSONObject? in
                    guard let terms = view.state.terms(ofKey: key), !terms.deleted,
                        names.map({ $0.contains(key) || Self.resource(terms.resource, oneOf: $0) }) ?? true,
                        let rate = view.state.runRate(terms.resource)
                    else { return nil }
                    return Self.plan(rate)
                }
            }
            for plan in found {
                let bytes = JSONWriter.bytes(.object(plan))
                counts[bytes, default: (plan, 0)].subscriptions += 1
            }
        }
        let plans = counts.values.sorted {
            ($0.plan["planId"]?.stringValue ?? "", $0.subscriptions) < ($1.plan["planId"]?.stringValue ?? "", $1.subscriptions)
        }
        .map { entry -> JSONValue in
            var plan = entry.plan
            plan["subscriptions"] = .number(String(entry.subscriptions))
            return .object(plan)
        }
        return JSONObject([.init("plans", .array(plans))])
    }

    /// `{"planId", "billingDimensions": {meter: {"type":"simple", ...} | {"type":"waterfall", ...}}}`.
    static func plan(_ rate: RunRate) -> JSONObject {
        let dimensions = rate.meters.map { meter -> JSONObject.Member in
            var members: [JSONObject.Member]
            switch meter.kind {
            case .waterfall:
                members = [
                    .init("type", "waterfall"),
                    .init(
                        "tiers",
                        .array(
                            meter.tiers.map {
                                .object(JSONObject([.init("dimension", .string($0.dimension)), .init("threshold", $0.threshold.json)]))
                            })),
                ]
            case .sum, .max, .last:
                members = [.init("type", "simple"), .init("dimension", .string(meter.dimension)), .init("included", meter.included.json)]
                if meter.kind != .sum { members.append(.init("aggregation", .string(meter.kind.rawValue))) }
            }
            return .init(meter.meterName, .object(JSONObject(members)))
        }
        return JSONObject([.init("planId", .string(rate.planId)), .init("billingDimensions", .object(JSONObject(dimensions)))])
    }
}
