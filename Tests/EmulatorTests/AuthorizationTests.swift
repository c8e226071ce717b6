import Foundation
import HTTP
import StackTestSupport
import Testing
import Wire

/// Bearer tokens: issued by the emulator's token endpoints, required by the metering API.
@Suite("The marketplace emulator's tokens and authorization")
struct AuthorizationTests {
    static let form = "grant_type=client_credentials&client_id=test-client&client_secret=s3cret"
    static let resource = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"

    static func postForm(_ emulator: Emulator, _ path: String, _ form: String) throws -> TestHTTPClient.Response {
        try emulator.connect().request(
            "POST", path, headers: ["Content-Type": "application/x-www-form-urlencoded"], body: Array(form.utf8))
    }

    @Test("without a bearer token, with a wrong one, or another scheme, the metering API answers 401 and records nothing")
    func unauthorized() throws {
        let emulator = try Emulator()
        try emulator.setClock("2024-01-31T10:00:00Z")
        let token = try emulator.token()
        for headers in [[:], ["Authorization": "Bearer not-a-token"], ["Authorization": "Basic \(token)"], ["Authorization": token]] {
            let response = try emulator.call(
                "POST", "/api/batchUsageEvent?api-version=2018-08-31", headers: headers, json: ["request": [usageItem()]])
            #expect(response.status == 401, "\(headers)")
            #expect(response.headers["www-authenticate"] == "Bearer")
            let single = try emulator.call("POST", "/api/usageEvent?api-version=2018-08-31", headers: headers, json: usageItem())
            #expect(single.status == 401)
        }
        #expect(try emulator.ledger().isEmpty)
        #expect(try emulator.batch([usageItem()], token: token).status == 200)
        #expect(try emulator.call("GET", "/emulator/stats").json?["unauthorized"] == 8)
    }

    @Test("started with --no-auth (or METERING_EMULATOR_NO_AUTH=1) the metering API needs no token")
    func noAuth() throws {
        for emulator in [
            try Emulator(arguments: ["--clock", "manual", "--no-auth"]),
            try Emulator(arguments: ["--no-auth", "--clock", "manual"]),
            try Emulator(environment: ["METERING_EMULATOR_NO_AUTH": "1"]),
        ] {
            try emulator.setClock("2024-01-31T10:00:00Z")
            let response = try emulator.batch([usageItem()], token: nil)
            #expect(response.status == 200)
            #expect(response.json?["result"]?.arrayValue?.first?["status"] == "Accepted")
        }
    }

    @Test("the v1 and v2 token endpoints issue bearer tokens for the marketplace's resource, and refuse other requests")
    func tokenEndpoints() throws {
        let emulator = try Emulator()
        let v1 = try Self.postForm(emulator, "/tenant-a/oauth2/token", Self.form + "&resource=\(Self.resource)")
        #expect(v1.status == 200)
        #expect(v1.json?["token_type"] == "Bearer")
        #expect(v1.json?["expires_in"] == 3599)
        let v2 = try Self.postForm(emulator, "/tenant-a/oauth2/v2.0/token", Self.form + "&scope=\(Self.resource)%2F.default")
        #expect(v2.status == 200)
        let first = v1.json?["access_token"]?.stringValue ?? ""
        let second = v2.json?["access_token"]?.stringValue ?? ""
        #expect(!first.isEmpty && !second.isEmpty && first != second)
        try emulator.setClock("2024-01-31T10:00:00Z")
        #expect(try emulator.batch([usageItem()], token: second).status == 200)

        let refused: [(String, Int, String)] = [
            (Self.form + "&resource=https://management.azure.com/", 400, "invalid_resource"),
            (Self.form, 400, "invalid_request"),
            ("grant_type=password&client_id=a&client_secret=b&resource=\(Self.resource)", 400, "unsupported_grant_type"),
            ("grant_type=client_credentials&client_id=a&resource=\(Self.resource)", 401, "invalid_client"),
            ("grant_type=client_credentials&client_secret=%zz", 400, "invalid_request"),
        ]
        for (form, status, error) in refused {
            let response = try Self.postForm(emulator, "/tenant-a/oauth2/token", form)
            #expect(response.status == status, "\(form)")
            #expect(response.json?["error"] == .string(error), "\(form)")
            #expect(response.json?["access_token"] == nil)
        }
        #expect(try emulator.call("GET", "/tenant-a/oauth2/token").status == 405)
    }

    @Test("with a client secret configured, a wrong secret gets 401 invalid_client, and no secret or token is ever logged")
    func clientSecret() throws {
        let emulator = try Emulator(environment: ["METERING_EMULATOR_CLIENT_SECRET": "s3cret"])
        let wrong = try Self.postForm(
            emulator, "/t/oauth2/token", "grant_type=client_credentials&client_id=c&client_secret=wrong&resource=\(Self.resource)")
        #expect(wrong.status == 401)
        #expect(wrong.json?["error"] == "invalid_client")
        let right = try Self.postForm(emulator, "/t/oauth2/token", Self.form + "&resource=\(Self.resource)")
        #expect(right.status == 200)
        let token = right.json?["access_token"]?.stringValue ?? "?"
        emulator.stop()
        #expect(!emulator.log.contains("s3cret"))
        #expect(!emulator.log.contains(token))
        #expect(!emulator.log.contains("wrong"))
    }

    @Test("a managed identity gets a token from the IMDS-shaped endpoint with the Metadata header")
    func managedIdentity() throws {
        let emulator = try Emulator()
        let path = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(Self.resource)"
        let response = try emulator.call("GET", path, headers: ["Metadata": "true"])
        #expect(response.status == 200)
        #expect(response.json?["expires_in"] == "3599")
        let token = response.json?["access_token"]?.stringValue
        try emulator.setClock("2024-01-31T10:00:00Z")
        #expect(try emulator.batch([usageItem()], token: token).status == 200)
        #expect(try emulator.call("GET", path).status == 400)
        #expect(try emulator.call("GET", "/metadata/identity/oauth2/token?resource=other", headers: ["Metadata": "true"]).status == 400)
    }
}
