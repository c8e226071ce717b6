public import Daemon
public import Foundation
import Wire

/// Where the marketplace's metering service is and how to get a token for it: the settings the
/// submitter and `meterctl reconcile` share (`METERING_MARKETPLACE_URL`, `METERING_TOKEN_URL`,
/// `AZURE_METERING_MARKETPLACE_TENANT_ID`, `_CLIENT_ID`, `_CLIENT_SECRET`).
public struct MarketplaceAccess: Sendable {
    /// How a bearer token is obtained.
    public enum Credentials: Sendable, CustomStringConvertible {
        /// A service principal (SaaS): client credentials against Microsoft Entra ID.
        case servicePrincipal(tenant: String, clientId: String, secret: String, tokenURL: URL)
        /// The managed identity of the host (managed applications): IMDS, or App Service's
        /// `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`.
        case managedIdentity

        /// Never shows the secret.
        public var description: String {
            switch self {
            case .servicePrincipal(let tenant, let clientId, _, let tokenURL):
                return "service principal \(clientId) of tenant \(tenant) via \(tokenURL.absoluteString)"
            case .managedIdentity: return "managed identity"
            }
        }
    }

    /// The metering service's resource (application) id, asked for in every token request.
    public static let resource = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"

    public var baseURL: URL
    public var credentials: Credentials

    public init(baseURL: URL, credentials: Credentials) {
        self.baseURL = baseURL
        self.credentials = credentials
    }

    /// Reads the settings; the error names the one at fault.
    public init(settings: inout Settings) throws(SettingsError) {
        let base = settings.string("marketplace-url", "METERING_MARKETPLACE_URL", default: "https://marketplaceapi.microsoft.com")
        guard let url = URL(string: base), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw SettingsError(
                "invalid METERING_MARKETPLACE_URL=\"\(base)\": expected an http(s) URL such as https://marketplaceapi.microsoft.com")
        }
        baseURL = url
        let tenant = settings.optionalString("tenant-id", "AZURE_METERING_MARKETPLACE_TENANT_ID")
        let clientId = settings.optionalString("client-id", "AZURE_METERING_MARKETPLACE_CLIENT_ID")
        let secret = settings.optionalString("client-secret", "AZURE_METERING_MARKETPLACE_CLIENT_SECRET")
        switch (tenant, clientId, secret) {
        case (let tenant?, let clientId?, let secret?):
            let defaultTokenURL = "https://login.microsoftonline.com/\(tenant)/oauth2/token"
            let text = settings.string("token-url", "METERING_TOKEN_URL", default: defaultTokenURL)
            guard let tokenURL = URL(string: text), tokenURL.scheme != nil, tokenURL.host != nil else {
                throw SettingsError("invalid METERING_TOKEN_URL=\"\(text)\": expected an http(s) URL")
            }
            credentials = .servicePrincipal(tenant: tenant, clientId: clientId, secret: secret, tokenURL: tokenURL)
        case (nil, nil, nil):
            _ = settings.optionalString("token-url", "METERING_TOKEN_URL")
            credentials = .managedIdentity
        default:
            let given = [
                ("AZURE_METERING_MARKETPLACE_TENANT_ID", tenant), ("AZURE_METERING_MARKETPLACE_CLIENT_ID", clientId),
                ("AZURE_METERING_MARKETPLACE_CLIENT_SECRET", secret),
            ].filter { $0.1 != nil }.map(\.0)
            throw SettingsError(
                "a service principal needs all of AZURE_METERING_MARKETPLACE_TENANT_ID, _CLIENT_ID and _CLIENT_SECRET (only \(given.joined(separator: ", ")) given), or none of them for the managed identity"
            )
        }
    }
}
