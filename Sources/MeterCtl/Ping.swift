import Foundation
import Synchronization
import SystemIO
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `meterctl ping`: exits 0 when a process answers, non-zero otherwise; the health check of
/// every container (compose.yaml) and a quick probe for operators.
enum Ping {
    static let url = Option("url", .value("URL"), "probe this http:// or https:// URL instead (a 2xx answer passes)")
    static let timeout = Option("timeout", .value("SECONDS"), "how long to wait for the answer", fallback: .value("5"))

    static let command = Command(
        name: "ping", summary: "exit 0 when a server answers, 1 when not: the health check of every container",
        details: "Sends 'status' on the socket (by default ingest's client socket), or GETs --url.",
        options: [.ingestSocket, url, timeout, .home],
        examples: ["meterctl ping --socket \"$METERING_HOME/run/query.sock\" --timeout 2", "meterctl ping --url http://127.0.0.1:8090/"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let url = invocation.value(url)
        let timeout = try seconds(invocation.value(timeout), flag: "--timeout") ?? 5
        let socket = url == nil ? invocation.path(.ingestSocket) : nil
        // A backstop for what a receive timeout cannot bound (a connect that blocks on a full
        // backlog, a resolver that hangs): the default action of SIGALRM ends the process.
        alarm(UInt32(timeout.rounded(.up)) + 1)
        let started = Date()
        let answer = try url.map { try http($0, timeout: timeout) } ?? unix(socket!, timeout: timeout)
        let milliseconds = Date().timeIntervalSince(started) * 1000
        print("\(url ?? socket!) answers: \(answer) in \(String(format: "%.1f", milliseconds)) ms")
    }

    /// Parses a positive number of seconds (fractions allowed).
    static func seconds(_ text: String?, flag: String) throws -> Double? {
        guard let text else { return nil }
        guard let value = Double(text), value > 0, value.isFinite else {
            throw MeterCtl.Failure("\(flag) takes a positive number of seconds")
        }
        return value
    }

    /// Sends `status` and waits for one well-formed response frame. An error frame counts as an
    /// answer: the process is reading, parsing and replying, which is what a health check asks.
    static func unix(_ path: String, timeout: Double) throws -> String {
        let client: UnixClient
        do {
            client = try UnixClient(path: path)
        } catch {
            throw MeterCtl.Failure("\(path) does not answer: \(error)")
        }
        client.setReceiveTimeout(seconds: timeout)
        let reply: JSONValue
        do {
            try client.send(Request(op: "status", id: "ping"))
            reply = try client.receive()
        } catch let failure {
            if case .system(let error) = failure, error.errno == EAGAIN || error.errno == EWOULDBLOCK {
                throw MeterCtl.Failure("\(path) does not answer: no reply in \(timeout) s")
            }
            throw MeterCtl.Failure("\(path) does not answer: \(failure)")
        }
        guard case .object(let object) = reply else { throw MeterCtl.Failure("\(path) does not answer: the reply is not a JSON object") }
        switch Response.check(.object(object)) {
        case .success: return "status ok"
        case .failure(let error): return "status refused (\(error.code))"
        }
    }

    /// A GET that must end in a 2xx status.
    static func http(_ text: String, timeout: Double) throws -> String {
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw MeterCtl.Failure("--url takes an http:// or https:// URL, got \"\(text)\"")
        }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "GET"
        let box = ReplyBox()
        let task = URLSession.shared.dataTask(with: request) { _, response, error in
            if let error {
                box.set(.failure(MeterCtl.Failure("\(text) does not answer: \(error.localizedDescription)")))
            } else if let http = response as? HTTPURLResponse {
                box.set(.success(http.statusCode))
            } else {
                box.set(.failure(MeterCtl.Failure("\(text) does not answer: no HTTP response")))
            }
        }
        task.resume()
        let status = try box.wait().get()
        guard (200..<300).contains(status) else { throw MeterCtl.Failure("\(text) answers HTTP \(status), not 2xx") }
        return "HTTP \(status)"
    }

    /// Hands the completion handler's result to the waiting command.
    private final class ReplyBox: Sendable {
        private let done = DispatchSemaphore(value: 0)
        private let result = Mutex<Result<Int, MeterCtl.Failure>?>(nil)

        func set(_ value: Result<Int, MeterCtl.Failure>) {
            result.withLock { $0 = value }
            done.signal()
        }

        func wait() -> Result<Int, MeterCtl.Failure> {
            done.wait()
            return result.withLock { $0! }
        }
    }
}
