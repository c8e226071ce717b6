import Foundation
public import Wire

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A blocking JSON-over-HTTP call for tests (the emulator's control endpoints).
public enum TestHTTP {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends `method` to `url` with an optional JSON body; returns the status and the parsed body.
    public static func call(
        _ method: String, _ url: String, body: JSONValue? = nil, form: String? = nil, headers: [String: String] = [:]
    ) throws -> (status: Int, json: JSONValue?) {
        guard let target = URL(string: url) else { throw Failure(description: "bad URL \(url)") }
        var request = URLRequest(url: target)
        request.httpMethod = method
        request.timeoutInterval = 20
        if let body {
            request.httpBody = Data(JSONWriter.bytes(body))
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let form {
            request.httpBody = Data(form.utf8)
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        final class Box: @unchecked Sendable {
            var value: Result<(Int, Data), Failure> = .failure(Failure(description: "no answer"))
        }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error {
                box.value = .failure(Failure(description: error.localizedDescription))
            } else {
                box.value = .success(((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()))
            }
            done.signal()
        }.resume()
        done.wait()
        let (status, data) = try box.value.get()
        return (status, try? JSONParser.parse(Array(data)))
    }
}
