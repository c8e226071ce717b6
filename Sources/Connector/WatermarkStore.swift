import Foundation
import SystemIO
import Wire

/// The watermark files: `<state directory>/<source>.watermark.json`, one JSON document each,
/// replaced atomically (temporary file, fsync, rename, directory fsync): after a crash a watermark
/// is the old one or the new one, never a mix.
struct WatermarkStore {
    let directory: String

    func path(_ source: String) -> String { directory + "/" + source + ".watermark.json" }

    /// A watermark that is there but unusable: refusing to start is the only safe answer (starting
    /// over would count everything again, skipping would lose it).
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The source's watermark, or nil when it has none yet.
    func load(_ source: String) throws(Failure) -> SourceState? {
        let file = path(source)
        guard FileManager.default.fileExists(atPath: file) else { return nil }
        guard let data = FileManager.default.contents(atPath: file) else { throw Failure(description: "cannot read \(file)") }
        let state: SourceState
        do {
            state = try SourceState(json: try JSONParser.parse(Array(data)))
        } catch {
            throw Failure(
                description:
                    "the watermark \(file) is damaged (\(error)); restore it from a backup, or move it aside to read the source again from its start"
            )
        }
        guard state.source == source else {
            throw Failure(description: "the watermark \(file) belongs to source \"\(state.source)\", not \"\(source)\"")
        }
        return state
    }

    func save(_ state: SourceState) throws(SystemError) {
        try FileIO.writeAtomically(JSONWriter.bytes(state.json) + [0x0A], to: path(state.source))
    }
}
