import Foundation
import Wire

/// The reference implementation's sample files, read from `../shared/samples/mba` beside the
/// repository (never copied into it).
enum Samples {
    static let directory: String = {
        if let override = ProcessInfo.processInfo.environment["METERING_SAMPLES"] { return override }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.deletingLastPathComponent().appendingPathComponent("shared/samples/mba").path
    }()

    static func files(_ folder: String) -> [String] {
        let path = directory + "/" + folder
        return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
            .map { path + "/" + $0 }
    }

    static func json(_ path: String) throws -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path) else { throw SampleError(path: path) }
        return try JSONParser.parse(Array(data))
    }

    /// Every message in a file (a file holds one message or an array of them).
    static func messages(_ path: String) throws -> [JSONValue] {
        let json = try json(path)
        return json.arrayValue ?? [json]
    }

    struct SampleError: Error { var path: String }
}
