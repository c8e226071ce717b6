import Foundation
import Testing

/// A generic type whose inlinable members other modules call must be declared `public` (its
/// members may stay `package`): Swift 6.3 does not specialize the inlinable members of a `package`
/// type in another module, and the read model ran every lookup of its table unspecialized, looking
/// up generic metadata at run time, for that reason (docs/BENCHMARKS.md, "The read model's lookups
/// specialized"). A source check, file by file: a file declaring a generic `package` type may not
/// hold `@inlinable` members.
@Suite("Generic types shared between modules")
struct SharedGenericTypesTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources")

    /// The generic `package` types declared in `text` when it also holds inlinable members.
    static func packageGenericTypesWithInlinableMembers(in text: String) -> [String] {
        guard text.contains("@inlinable") else { return [] }
        var names: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var words = line.split(separator: " ")[...]
            guard words.first == "package" else { continue }
            words = words.dropFirst()
            if words.first == "final" { words = words.dropFirst() }
            guard let kind = words.first, ["struct", "class", "enum"].contains(kind), let name = words.dropFirst().first,
                let angle = name.firstIndex(of: "<")
            else { continue }
            names.append(String(name[..<angle]))
        }
        return names
    }

    /// Every Swift file under `Sources`, by path relative to it.
    static func sourceFiles() throws -> [String] {
        let enumerator = try #require(FileManager.default.enumerator(atPath: sources.path))
        return enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.sorted()
    }

    @Test("the check finds a generic package type with inlinable members, and only such a type")
    func checkFindsOffenders() {
        let offending = """
            package struct Table<Key: Hashable, Value> {
                @inlinable package func lookup(_ key: Key) -> Value? { nil }
            }
            package final class Box<Value> {}
            """
        #expect(Self.packageGenericTypesWithInlinableMembers(in: offending) == ["Table", "Box"])
        let publicType = """
            public struct Table<Key: Hashable, Value> {
                @inlinable package func lookup(_ key: Key) -> Value? { nil }
            }
            """
        #expect(Self.packageGenericTypesWithInlinableMembers(in: publicType).isEmpty)
        let notInlinable = "package struct Reader<Element> {\n    package func next() -> Element? { nil }\n}"
        #expect(Self.packageGenericTypesWithInlinableMembers(in: notInlinable).isEmpty)
    }

    @Test("no generic package type in the sources has inlinable members, so other modules specialize them")
    func noPackageGenericTypeHasInlinableMembers() throws {
        let files = try Self.sourceFiles()
        // The check reads the real sources, the table's among them.
        #expect(files.contains("Billing/DenseTable.swift"))
        var offenders: [String] = []
        for file in files {
            let text = try String(contentsOfFile: Self.sources.appendingPathComponent(file).path, encoding: .utf8)
            offenders += Self.packageGenericTypesWithInlinableMembers(in: text).map { "\(file): \($0)" }
        }
        #expect(offenders.isEmpty, "declare these public (members may stay package): \(offenders)")
    }
}
