import Foundation
public import Wire

/// The repository's own sample messages, in the message format of Microsoft's
/// metered-billing-accelerator (`Tests/Fixtures/mba/`: client and internal messages, plans, the
/// marketplace's request and answer bodies, the value forms), so a clone alone tests everything;
/// and, where they happen to be present, the reference implementation's own sample files, for
/// the extra checks that run only there.
public enum Fixtures {
    /// `Tests/Fixtures/mba`, found from this file.
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("mba").path

    /// The reference's sample folder (`InternalMessages/`, `plans/`, ...): `METERING_REFERENCE_SAMPLES`,
    /// or a `shared/samples/mba` folder above the repository; nil when there is none.
    public static let referenceDirectory: String? = {
        let environment = ProcessInfo.processInfo.environment
        if let given = environment["METERING_REFERENCE_SAMPLES"] { return given.isEmpty ? nil : given }
        var url = URL(fileURLWithPath: directory)
        while url.path != "/" {
            url.deleteLastPathComponent()
            let candidate = url.appendingPathComponent("shared/samples/mba").path
            if FileManager.default.fileExists(atPath: candidate + "/InternalMessages") { return candidate }
        }
        return nil
    }()

    /// Why the reference checks are skipped, for the test report.
    public static let referenceMissing =
        "the reference implementation's samples are not beside this repository (shared/samples/mba above it, or METERING_REFERENCE_SAMPLES)"

    /// The path of `relative` under `directory` (ours by default).
    public static func path(_ relative: String, in directory: String = Fixtures.directory) -> String { directory + "/" + relative }

    /// The `.json` files of `folder` under `directory` (ours by default), sorted by name.
    public static func files(_ folder: String, in directory: String = Fixtures.directory) -> [String] {
        let path = directory + "/" + folder
        return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
            .map { path + "/" + $0 }
    }

    /// The JSON in the file at `path` (a leading byte-order mark is fine, as in the reference's files).
    public static func json(_ path: String) throws -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path) else { throw Missing(path: path) }
        return try JSONParser.parse(Array(data))
    }

    /// Every message in the file at `path` (a file holds one message or an array of them).
    public static func messages(_ path: String) throws -> [JSONValue] {
        let json = try json(path)
        return json.arrayValue ?? [json]
    }

    /// Every message of every file in `InternalMessages/` under `directory`, with its file.
    public static func internalMessages(in directory: String = Fixtures.directory) throws -> [(file: String, message: JSONValue)] {
        var all: [(String, JSONValue)] = []
        for file in files("InternalMessages", in: directory) {
            for message in try messages(file) { all.append(((file as NSString).lastPathComponent, message)) }
        }
        return all
    }

    /// A fixture file that is not there.
    public struct Missing: Error, CustomStringConvertible {
        public var path: String
        public var description: String { "no fixture file at \(path)" }
    }
}
