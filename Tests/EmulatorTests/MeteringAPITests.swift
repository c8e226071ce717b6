import Foundation
import StackTestSupport
import Testing
import Wire

/// The metering API's rules, against the real executable on a manual clock at 2024-01-31T10:00Z.
@Suite("The marketplace emulator's metering API")
struct MeteringAPITests {
    static let now = "2024-01-31T10:00:00Z"

    /// An emulator at `now` and a token for it.
    static func start(_ arguments: [String] = []) throws -> (Emulator, String) {
        let emulator = try Emulator(arguments: ["--clock", "manual"] + arguments)
        try emulator.setClock(now)
        return (emulator, try emulator.token())
    }

    @Test("a token from the token endpoint lets a batch through, and each item is Accepted with an id and a message time")
    func tokenThenBatch() throws {
        let (emulator, token) = try Self.start()
        let response = try emulator.batch(
            [
                usageItem("res-1", hour: "2024-01-31T09:00:00Z", quantity: "5"),
                usageItem("res-2", hour: "2024-01-31T10:00:00", quantity: "9.0"),
            ],
            token: token)
        #expect(response.status == 200)
        #expect(response.json?["count"] == .number("2"))
        let results = response.json?["result"]?.arrayValue ?? []
        #expect(results.count == 2)
        for (result, resource) in zip(results, ["res-1", "res-2"]) {
            #expect(result["status"] == "Accepted")
            #expect(result["resourceId"] == .string(resource))
            #expect(result["planId"] == "plan-1")
            #expect(result["dimension"] == "emails")
            #expect(UUID(uuidString: result["usageEventId"]?.stringValue ?? "") != nil)
            #expect(result["messageTime"] == .string(Self.now))
            #expect(result["error"] == nil)
        }
        // Echoed as sent: the quantity's literal and the time's spelling.
        #expect(results.last?["quantity"] == .number("9.0"))
        #expect(results.last?["effectiveStartTime"] == "2024-01-31T10:00:00")
    }

    @Test("the first write wins: a later report of the same resource, dimension and hour is Duplicate with the accepted message")
    func firstWriteWins() throws {
        let (emulator, token) = try Self.start()
        let first = try emulator.batch([usageItem("res-1", hour: "2024-01-31T08:00:00Z", quantity: "5")], token: token)
        let acceptedId = first.json?["result"]?.arrayValue?.first?["usageEventId"]
        // The same slot again, in another batch and twice in one: the quantity does not matter.
        let second = try emulator.batch(
            [
                usageItem("RES-1", hour: "2024-01-31T08:00:00", quantity: "9"),
                usageItem("res-1", dimension: "other", hour: "2024-01-31T08:00:00Z", quantity: "1"),
                usageItem("res-1", dimension: "other", hour: "2024-01-31T08:00:00Z", quantity: "2"),
            ], token: token)
        #expect(second.status == 200)
        let results = second.json?["result"]?.arrayValue ?? []
        #expect(results.map { $0["status"]?.stringValue ?? "?" } == ["Duplicate", "Accepted", "Duplicate"])
        let duplicate = results[0]
        #expect(duplicate["quantity"] == .number("9"))
        #expect(duplicate["usageEventId"] == nil)
        #expect(duplicate["error"]?["code"] == "Conflict")
        #expect(duplicate["error"]?["message"] == "This usage event already exist.")
        let accepted = duplicate["error"]?["additionalInfo"]?["acceptedMessage"]
        #expect(accepted?["quantity"] == .number("5"))
        #expect(accepted?["status"] == "Duplicate")
        #expect(accepted?["usageEventId"] == acceptedId)
        #expect(accepted?["resourceId"] == "res-1")
        #expect(accepted?["effectiveStartTime"] == "2024-01-31T08:00:00Z")
        #expect(accepted?["messageTime"] == .string(Self.now))
        #expect(results[2]["error"]?["additionalInfo"]?["acceptedMessage"]?["quantity"] == .number("1"))
        #expect(try emulator.ledger().count == 2)
    }

    @Test("a batch of 26 items, of none, or not shaped as {request:[...]} is refused whole with 400 and records nothing")
    func batchSize() throws {
        let (emulator, token) = try Self.start()
        let items = (0..<26).map { usageItem("res-\($0)") }
        let tooMany = try emulator.batch(items, token: token)
        #expect(tooMany.status == 400)
        #expect(tooMany.json?["code"] == "BadArgument")
        #expect(tooMany.json?["message"]?.stringValue?.contains("26") == true)
        #expect(try emulator.batch([], token: token).status == 400)
        let headers = ["Authorization": "Bearer \(token)"]
        for body in [#"{"items":[]}"#, #"[1,2]"#, #"{"request":[1,"#, "\u{FF}"] {
            let response = try emulator.connect().request(
                "POST", "/api/batchUsageEvent?api-version=2018-08-31", headers: headers, body: Array(body.utf8))
            #expect(response.status == 400, "\(body)")
            #expect(response.json?["message"]?.stringValue != nil)
        }
        #expect(try emulator.batch(Array(items.prefix(25)), token: token).status == 200)
        #expect(try emulator.ledger().count == 25)
    }

    @Test("the api-version must be 2018-08-31")
    func apiVersion() throws {
        let (emulator, token) = try Self.start()
        for target in ["/api/batchUsageEvent", "/api/batchUsageEvent?api-version=2023-01-01"] {
            let response = try emulator.call(
                "POST", target, headers: ["Authorization": "Bearer \(token)"], json: ["request": [usageItem()]])
            #expect(response.status == 400)
            #expect(response.json?["target"] == "api-version")
        }
        #expect(try emulator.ledger().isEmpty)
    }

    @Test("an effective start time that is not the start of an hour, or not a time, is a BadArgument")
    func hourAlignment() throws {
        let (emulator, token) = try Self.start()
        let response = try emulator.batch(
            [
                usageItem(hour: "2024-01-31T09:30:00Z"), usageItem(hour: "2024-01-31T09:00:01Z"),
                usageItem(hour: "2024-01-31T09:00:00.5Z"), usageItem(hour: "yesterday"),
            ], token: token)
        let results = response.json?["result"]?.arrayValue ?? []
        #expect(results.count == 4)
        for result in results {
            #expect(result["status"] == "BadArgument")
            #expect(result["error"]?["details"]?.arrayValue?.first?["target"] == "effectiveStartTime")
        }
        #expect(try emulator.ledger().isEmpty)
    }

    @Test("usage more than 24 hours behind the emulator's clock, or in its future, is Expired; the window's edges are accepted")
    func window() throws {
        let (emulator, token) = try Self.start()
        let response = try emulator.batch(
            [
                usageItem(hour: "2024-01-30T09:00:00Z"), usageItem(hour: "2024-01-31T11:00:00Z"),
                usageItem(hour: "2024-01-30T10:00:00Z"), usageItem(hour: "2024-01-31T10:00:00Z"),
            ], token: token)
        let results = response.json?["result"]?.arrayValue ?? []
        #expect(results.map { $0["status"]?.stringValue ?? "?" } == ["Expired", "Expired", "Accepted", "Accepted"])
        let error = results[0]["error"]
        #expect(error?["code"] == "BadArgument")
        #expect(error?["target"] == "usageEventRequest")
        #expect(error?["details"]?.arrayValue?.first?["message"] == "The effective time provided is has expired or is in future.")
        // The clock moves on: the hour that was in the future is now inside the window.
        try emulator.setClock("2024-01-31T11:00:00Z")
        let later = try emulator.batch([usageItem(hour: "2024-01-31T11:00:00Z")], token: token)
        #expect(later.json?["result"]?.arrayValue?.first?["status"] == "Accepted")
    }

    @Test("configured unknown resources are ResourceNotFound and unknown dimensions InvalidDimension; everything else is known")
    func unknownResourcesAndDimensions() throws {
        let (emulator, token) = try Self.start([
            "--unknown-resources", "gone-1,/subscriptions/s/providers/x/gone-2", "--unknown-dimensions", "not-exist",
        ])
        let uriItem: JSONValue = [
            "resourceUri": "/subscriptions/s/providers/x/GONE-2", "effectiveStartTime": "2024-01-31T09:00:00Z", "planId": "p",
            "dimension": "emails", "quantity": 1,
        ]
        let response = try emulator.batch(
            [usageItem("gone-1"), uriItem, usageItem("res-1", dimension: "not-exist"), usageItem("anything", dimension: "anything")],
            token: token)
        let results = response.json?["result"]?.arrayValue ?? []
        #expect(
            results.map { $0["status"]?.stringValue ?? "?" } == ["ResourceNotFound", "ResourceNotFound", "InvalidDimension", "Accepted"])
        #expect(results[0]["error"]?["details"]?.arrayValue?.first?["target"] == "resourceId")
        #expect(results[1]["error"]?["details"]?.arrayValue?.first?["target"] == "resourceUri")
        #expect(results[2]["error"]?["details"]?.arrayValue?.first?["message"] == "The payload dimension is invalid.")
        #expect(try emulator.ledger().count == 1)
    }

    @Test("quantities are exact decimals: kept to the last digit, and zero, negative, too precise or non-numbers are InvalidQuantity")
    func exactQuantities() throws {
        let (emulator, token) = try Self.start()
        var stringQuantity = usageItem("res-s")
        if case .object(var object) = stringQuantity {
            object["quantity"] = "5"
            stringQuantity = .object(object)
        }
        let response = try emulator.batch(
            [
                usageItem("res-a", quantity: "9.1234567890123461"), usageItem("res-b", quantity: "0.000000000000000001"),
                usageItem("res-c", quantity: "1e-19"), usageItem("res-d", quantity: "0"), usageItem("res-e", quantity: "-1"),
                stringQuantity, usageItem("res-f", quantity: "12345678901234567890.5"),
            ], token: token)
        let results = response.json?["result"]?.arrayValue ?? []
        #expect(
            results.map { $0["status"]?.stringValue ?? "?" } == [
                "Accepted", "Accepted", "InvalidQuantity", "InvalidQuantity", "InvalidQuantity", "InvalidQuantity", "Accepted",
            ])
        #expect(results[0]["quantity"] == .number("9.1234567890123461"))
        let ledger = try emulator.ledger()
        #expect(
            ledger.map { $0["quantity"] } == [
                .number("9.1234567890123461"), .number("0.000000000000000001"), .number("12345678901234567890.5"),
            ])
    }

    @Test("missing or mistyped fields are BadArgument naming the field; resourceUri alone names a resource")
    func shape() throws {
        let (emulator, token) = try Self.start()
        let items: [JSONValue] = [
            ["effectiveStartTime": "2024-01-31T09:00:00Z", "planId": "p", "dimension": "d", "quantity": 1],
            ["resourceId": "r", "effectiveStartTime": "2024-01-31T09:00:00Z", "dimension": "d", "quantity": 1],
            ["resourceId": "r", "effectiveStartTime": "2024-01-31T09:00:00Z", "planId": "p", "dimension": 7, "quantity": 1],
            "not an object",
            [
                "resourceUri": "/subscriptions/s/x/app", "effectiveStartTime": "2024-01-31T09:00:00Z", "planId": "p", "dimension": "d",
                "quantity": 1,
            ],
        ]
        let results = try emulator.batch(items, token: token).json?["result"]?.arrayValue ?? []
        #expect(
            results.map { $0["status"]?.stringValue ?? "?" } == ["BadArgument", "BadArgument", "BadArgument", "BadArgument", "Accepted"])
        #expect(
            results.prefix(3).map { $0["error"]?["details"]?.arrayValue?.first?["target"]?.stringValue ?? "?" } == [
                "resourceId", "planId", "dimension",
            ])
        #expect(try emulator.ledger().first?["resourceUri"] == "/subscriptions/s/x/app")
    }

    @Test("the single usageEvent call answers 200 Accepted, 409 with the accepted message, and 400 with the error for Expired")
    func singleEvent() throws {
        let (emulator, token) = try Self.start()
        let headers = ["Authorization": "Bearer \(token)"]
        let target = "/api/usageEvent?api-version=2018-08-31"
        let accepted = try emulator.call("POST", target, headers: headers, json: usageItem(quantity: "7.5"))
        #expect(accepted.status == 200)
        #expect(accepted.json?["status"] == "Accepted")
        #expect(accepted.json?["usageEventId"]?.stringValue != nil)
        let duplicate = try emulator.call("POST", target, headers: headers, json: usageItem(quantity: "8"))
        #expect(duplicate.status == 409)
        #expect(duplicate.json?["status"] == "Duplicate")
        #expect(duplicate.json?["error"]?["additionalInfo"]?["acceptedMessage"]?["quantity"] == .number("7.5"))
        let expired = try emulator.call("POST", target, headers: headers, json: usageItem(hour: "2024-01-29T10:00:00Z"))
        #expect(expired.status == 400)
        #expect(expired.json?["code"] == "BadArgument")
        #expect(expired.json?["details"]?.arrayValue?.first?["target"] == "effectiveStartTime")
        let bad = try emulator.call("POST", target, headers: headers, json: usageItem(quantity: "0"))
        #expect(bad.status == 400)
        #expect(bad.json?["details"]?.arrayValue?.first?["target"] == "quantity")
    }

    @Test(
        "the ledger holds exactly the accepted events in acceptance order; usageEvents sums them per day, resource and dimension, as submitted and processed"
    )
    func ledgerAndUsageEvents() throws {
        let (emulator, token) = try Self.start()
        _ = try emulator.batch(
            [
                usageItem("res-1", hour: "2024-01-31T09:00:00Z", quantity: "1"), usageItem("res-1", hour: "2024-01-30T09:00:00Z"),
                usageItem("res-2", hour: "2024-01-30T23:00:00", quantity: "2.50"),
            ], token: token)
        _ = try emulator.batch(
            [
                usageItem("res-1", hour: "2024-01-31T09:00:00Z", quantity: "3"),
                usageItem("res-3", hour: "2024-01-31T00:00:00Z", quantity: "4"),
            ],
            token: token)
        let ledger = try emulator.ledger()
        #expect(
            ledger.map {
                "\($0["resourceId"]?.stringValue ?? "?") \($0["effectiveStartTime"]?.stringValue ?? "?") \($0["quantity"].map(JSONWriter.string) ?? "?")"
            } == [
                "res-1 2024-01-31T09:00:00Z 1", "res-2 2024-01-30T23:00:00Z 2.5", "res-3 2024-01-31T00:00:00Z 4",
            ])
        for entry in ledger {
            #expect(entry["planId"] == "plan-1")
            #expect(entry["dimension"] == "emails")
            #expect(entry["usageEventId"]?.stringValue != nil)
            #expect(entry["messageTime"] == .string(Self.now))
        }
        let headers = ["Authorization": "Bearer \(token)"]
        func rows(_ query: String) throws -> [String] {
            let answer = try emulator.call("GET", "/api/usageEvents?" + query, headers: headers)
            #expect(answer.status == 200, "\(query): \(answer.json.map(JSONWriter.string) ?? "")")
            return (answer.json?.arrayValue ?? []).map { row in
                [
                    "usageDate", "usageResourceId", "dimension", "planId", "reconStatus", "submittedQuantity", "processedQuantity",
                    "submittedCount",
                ]
                .map { row[$0].map { $0.stringValue ?? JSONWriter.string($0) } ?? "?" }.joined(separator: " ")
            }
        }
        // The clock is on the 31st: that day is submitted, not processed yet; the 30th is processed.
        #expect(
            try rows("usageStartDate=2024-01-31&usageEndDate=2024-01-31") == [
                "2024-01-31T00:00:00Z res-1 emails plan-1 Submitted 1 0 1", "2024-01-31T00:00:00Z res-3 emails plan-1 Submitted 4 0 1",
            ])
        #expect(
            try rows("usageStartDate=2024-01-30T15:00") == [
                "2024-01-30T00:00:00Z res-2 emails plan-1 Accepted 2.5 2.5 1", "2024-01-31T00:00:00Z res-1 emails plan-1 Submitted 1 0 1",
                "2024-01-31T00:00:00Z res-3 emails plan-1 Submitted 4 0 1",
            ])
        #expect(
            try rows("usageStartDate=2024-01-30&reconStatus=Accepted") == ["2024-01-30T00:00:00Z res-2 emails plan-1 Accepted 2.5 2.5 1"])
        #expect(try rows("usageStartDate=2024-01-30&dimension=texts").isEmpty)
        #expect(try rows("usageStartDate=2024-01-30&planId=plan-1&offerId=metering-emulator-offer").count == 3)
        #expect(try rows("usageStartDate=2024-01-30&azureSubscriptionId=00000000-0000-0000-0000-000000000000").count == 3)
        let first = try emulator.call("GET", "/api/usageEvents?usageStartDate=2024-01-30", headers: headers).json?.arrayValue?.first
        #expect(first?["offerId"] == "metering-emulator-offer")
        #expect(first?["offerType"] == "SaaS")
        #expect(first?["planName"] == "plan-1")

        // Planted differences: the marketplace processed less than it accepted, and holds an
        // event nobody here sent.
        let mismatch = try emulator.call(
            "POST", "/emulator/reconciliation",
            json: [
                "resourceId": "res-2", "dimension": "emails", "usageDate": "2024-01-30", "processedQuantity": 2, "reconStatus": "Mismatch",
            ])
        #expect(mismatch.status == 200)
        _ = try emulator.call(
            "POST", "/emulator/reconciliation",
            json: ["resourceId": "res-9", "dimension": "emails", "usageDate": "2024-01-30", "submittedQuantity": 7])
        #expect(
            try rows("usageStartDate=2024-01-30&usageEndDate=2024-01-30") == [
                "2024-01-30T00:00:00Z res-2 emails plan-1 Mismatch 2.5 2 1", "2024-01-30T00:00:00Z res-9 emails  Accepted 7 7 1",
            ])
        #expect(try emulator.call("GET", "/emulator/reconciliation").json?.arrayValue?.count == 2)
        #expect(try emulator.call("POST", "/emulator/reconciliation", json: ["resourceId": "res-2", "dimension": "emails"]).status == 400)

        #expect(try emulator.call("GET", "/api/usageEvents", headers: headers).status == 400, "usageStartDate is required")
        #expect(try emulator.call("GET", "/api/usageEvents?usageStartDate=soon", headers: headers).status == 400)
        #expect(try emulator.call("GET", "/api/usageEvents?usageStartDate=2024-01-30&reconStatus=Fine", headers: headers).status == 400)
        #expect(try emulator.call("GET", "/api/usageEvents?usageStartDate=2024-01-30").status == 401)
    }

    @Test("the stats count items by status, calls and requests")
    func stats() throws {
        let (emulator, token) = try Self.start()
        _ = try emulator.batch([usageItem(), usageItem(), usageItem(hour: "2020-01-01T00:00:00Z")], token: token)
        _ = try emulator.batch([usageItem()], token: nil)
        let stats = try emulator.call("GET", "/emulator/stats").json
        #expect(stats?["statuses"]?["Accepted"] == 1)
        #expect(stats?["statuses"]?["Duplicate"] == 1)
        #expect(stats?["statuses"]?["Expired"] == 1)
        #expect(stats?["accepted"] == 1)
        #expect(stats?["unauthorized"] == 1)
        #expect(stats?["calls"]?["batchUsageEvent"] == 2)
        #expect(stats?["calls"]?["token"] == 1)
        #expect(stats?["time"] == .string(Self.now))
        #expect(stats?["clock"] == "manual")
    }

    @Test("the manual clock starts in 1970 and never moves backwards")
    func manualClock() throws {
        let emulator = try Emulator()
        #expect(try emulator.call("GET", "/emulator/clock").json?["time"] == "1970-01-01T00:00:00Z")
        try emulator.setClock("2024-01-31T10:00:00Z")
        let backwards = try emulator.call("POST", "/emulator/clock", json: ["time": "2024-01-31T09:59:59Z"])
        #expect(backwards.status == 409)
        #expect(try emulator.call("POST", "/emulator/clock", json: ["time": "noon"]).status == 400)
        #expect(try emulator.call("GET", "/emulator/clock").json?["time"] == "2024-01-31T10:00:00Z")
        let system = try Emulator(arguments: [])
        #expect(try system.call("POST", "/emulator/clock", json: ["time": "2030-01-01T00:00:00Z"]).status == 409)
    }
}
