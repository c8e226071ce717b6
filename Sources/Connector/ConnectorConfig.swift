import Wire

/// What `connector.json` says: the sources to read and, per source, the meters to count in them.
///
/// Pure: built from the file's text, checked strictly (unknown members are errors, so a typo never
/// silently counts nothing), every error naming the member at fault (`sources[0].meters[1].scale`).
struct ConnectorConfig: Sendable, Equatable {
    /// Seconds after an hour ends before it is emitted, unless a source says otherwise.
    var graceSeconds: Int
    /// How often sources are polled for new lines.
    var pollMilliseconds: Int
    var sources: [SourceConfig]

    /// A configuration mistake: the member's path and what is expected there.
    struct Failure: Error, Equatable, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { path.isEmpty ? reason : "\(path): \(reason)" }
    }

    /// Parses and checks the configuration file's text.
    static func parse(_ text: String) throws(Failure) -> ConnectorConfig {
        let json: JSONValue
        do {
            json = try JSONParser.parse(text)
        } catch {
            throw Failure(path: "", reason: "not valid JSON: \(error)")
        }
        return try ConnectorConfig(json: json)
    }

    init(graceSeconds: Int = 300, pollMilliseconds: Int = 1000, sources: [SourceConfig]) {
        self.graceSeconds = graceSeconds
        self.pollMilliseconds = pollMilliseconds
        self.sources = sources
    }

    init(json: JSONValue) throws(Failure) {
        let root = try Members(json, path: "", allowed: ["graceSeconds", "pollMilliseconds", "sources"])
        graceSeconds = try root.integer("graceSeconds", default: 300, range: 0...86_400)
        pollMilliseconds = try root.integer("pollMilliseconds", default: 1000, range: 10...60_000)
        let list = try root.array("sources")
        guard !list.isEmpty else { throw Failure(path: "sources", reason: "must name at least one source") }
        var sources: [SourceConfig] = []
        for (index, element) in list.enumerated() {
            let source = try SourceConfig(json: element, path: "sources[\(index)]", defaultGrace: graceSeconds)
            if sources.contains(where: { $0.name == source.name }) {
                throw Failure(
                    path: "sources[\(index)].name", reason: "\"\(source.name)\" names another source already; names must be unique")
            }
            sources.append(source)
        }
        self.sources = sources
    }

    /// Source and meter names end up in idempotency keys and file names: a small, safe alphabet.
    static func checkName(_ name: String, path: String) throws(Failure) {
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
        guard allowed, (1...40).contains(name.utf8.count), name.first != "." else {
            throw Failure(path: path, reason: "\"\(name)\" must be 1 to 40 letters, digits, '-', '_' or '.', not starting with '.'")
        }
    }
}

/// One source of records: a followed file, or a command run periodically.
struct SourceConfig: Sendable, Equatable {
    /// Where the lines come from.
    enum Input: Sendable, Equatable {
        /// A file that grows and rotates, followed by path; `startAtEnd` skips what it holds at the
        /// very first start (there is no watermark yet); a rotated-away file is left once it has
        /// been quiet for `rotateWaitSeconds` and the path names a new file.
        case file(path: String, startAtEnd: Bool, rotateWaitSeconds: Int)
        /// A program (no shell) run every `intervalSeconds`; each run's standard output is records.
        case command(arguments: [String], intervalSeconds: Int, timeoutSeconds: Int)
    }

    /// How a line becomes a record.
    enum Format: String, Sendable, Equatable, CaseIterable {
        /// One JSON object per line.
        case ndjson
        /// Comma-separated values (RFC 4180 quoting); the first line of each file or run is the header.
        case csv
    }

    var name: String
    var input: Input
    var format: Format
    var delimiter: UInt8
    var maxLineBytes: Int
    var graceSeconds: Int
    var meters: [MeterRule]

    init(
        name: String, input: Input, format: Format, delimiter: UInt8 = UInt8(ascii: ","), maxLineBytes: Int = 65536,
        graceSeconds: Int = 300, meters: [MeterRule]
    ) {
        self.name = name
        self.input = input
        self.format = format
        self.delimiter = delimiter
        self.maxLineBytes = maxLineBytes
        self.graceSeconds = graceSeconds
        self.meters = meters
    }

    typealias Failure = ConnectorConfig.Failure

    init(json: JSONValue, path: String, defaultGrace: Int) throws(Failure) {
        let object = try Members(
            json, path: path,
            allowed: [
                "name", "file", "startAt", "rotateWaitSeconds", "command", "intervalSeconds", "timeoutSeconds", "format", "delimiter",
                "maxLineBytes",
                "graceSeconds", "meters",
            ])
        name = try object.string("name")
        try ConnectorConfig.checkName(name, path: path + ".name")
        switch (object["file"], object["command"]) {
        case (_?, _?), (nil, nil):
            throw Failure(path: path, reason: "give either \"file\": a path to follow, or \"command\": a program and its arguments")
        case (_?, nil):
            let file = try object.string("file")
            guard file.hasPrefix("/") else { throw Failure(path: path + ".file", reason: "\"\(file)\" must be an absolute path") }
            let start = try object.string("startAt", default: "beginning")
            guard start == "beginning" || start == "end" else {
                throw Failure(path: path + ".startAt", reason: "\"\(start)\" is not \"beginning\" or \"end\"")
            }
            for key in ["intervalSeconds", "timeoutSeconds"] where object[key] != nil {
                throw Failure(path: path + "." + key, reason: "only a \"command\" source runs periodically")
            }
            let wait = try object.integer("rotateWaitSeconds", default: 5, range: 0...3600)
            input = .file(path: file, startAtEnd: start == "end", rotateWaitSeconds: wait)
        case (nil, let command?):
            guard let list = command.arrayValue, !list.isEmpty else {
                throw Failure(path: path + ".command", reason: "must be a non-empty array: the program, then its arguments")
            }
            var arguments: [String] = []
            for (index, element) in list.enumerated() {
                guard let text = element.stringValue, !text.isEmpty else {
                    throw Failure(path: path + ".command[\(index)]", reason: "must be a non-empty string, got \(element.typeName)")
                }
                arguments.append(text)
            }
            guard arguments[0].hasPrefix("/") else {
                throw Failure(path: path + ".command[0]", reason: "\"\(arguments[0])\" must be an absolute path to the program")
            }
            for key in ["startAt", "rotateWaitSeconds"] where object[key] != nil {
                throw Failure(path: path + "." + key, reason: "only a \"file\" source has this")
            }
            let interval = try object.integer("intervalSeconds", default: 60, range: 1...86_400)
            let timeout = try object.integer("timeoutSeconds", default: min(interval, 300), range: 1...3600)
            input = .command(arguments: arguments, intervalSeconds: interval, timeoutSeconds: timeout)
        }
        let formatName = try object.string("format")
        guard let format = Format(rawValue: formatName) else {
            throw Failure(path: path + ".format", reason: "\"\(formatName)\" is not \"ndjson\" or \"csv\"")
        }
        self.format = format
        let delimiterText = try object.string("delimiter", default: ",")
        guard format == .csv || object["delimiter"] == nil else {
            throw Failure(path: path + ".delimiter", reason: "only a \"csv\" source has a delimiter")
        }
        guard delimiterText.utf8.count == 1, let byte = delimiterText.utf8.first, byte == 0x09 || (byte >= 0x20 && byte < 0x7F),
            byte != UInt8(ascii: "\"")
        else {
            throw Failure(
                path: path + ".delimiter", reason: "\"\(delimiterText)\" must be a tab or one printable ASCII character other than '\"'")
        }
        delimiter = byte
        maxLineBytes = try object.integer("maxLineBytes", default: 65536, range: 256...16 << 20)
        graceSeconds = try object.integer("graceSeconds", default: defaultGrace, range: 0...86_400)
        let list = try object.array("meters")
        guard !list.isEmpty else { throw Failure(path: path + ".meters", reason: "must define at least one meter") }
        var meters: [MeterRule] = []
        for (index, element) in list.enumerated() {
            let meter = try MeterRule(json: element, path: path + ".meters[\(index)]")
            if meters.contains(where: { $0.name == meter.name }) {
                throw Failure(
                    path: path + ".meters[\(index)].name",
                    reason: "\"\(meter.name)\" names another meter of this source; names must be unique")
            }
            meters.append(meter)
        }
        self.meters = meters
    }
}

/// Reads an object's members for the configuration, refusing the ones it does not know.
struct Members {
    let object: JSONObject
    let path: String

    init(_ json: JSONValue, path: String, allowed: Set<String>) throws(ConnectorConfig.Failure) {
        guard let object = json.objectValue else {
            throw ConnectorConfig.Failure(path: path, reason: "must be an object, got \(json.typeName)")
        }
        for key in object.keys where !allowed.contains(key) {
            let known = allowed.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
            throw ConnectorConfig.Failure(path: Self.join(path, key), reason: "unknown member; expected one of \(known)")
        }
        self.object = object
        self.path = path
    }

    subscript(key: String) -> JSONValue? { object[key] }

    func child(_ key: String) -> String { Self.join(path, key) }

    static func join(_ base: String, _ key: String) -> String { base.isEmpty ? key : base + "." + key }

    func string(_ key: String) throws(ConnectorConfig.Failure) -> String {
        guard let value = object[key] else { throw ConnectorConfig.Failure(path: child(key), reason: "missing") }
        guard let text = value.stringValue, !text.isEmpty else {
            throw ConnectorConfig.Failure(path: child(key), reason: "must be a non-empty string, got \(value.typeName)")
        }
        return text
    }

    func string(_ key: String, default value: String) throws(ConnectorConfig.Failure) -> String {
        object[key] == nil ? value : try string(key)
    }

    func integer(_ key: String, default value: Int, range: ClosedRange<Int>) throws(ConnectorConfig.Failure) -> Int {
        guard let json = object[key] else { return value }
        guard let number = json.intValue, range.contains(number) else {
            throw ConnectorConfig.Failure(
                path: child(key), reason: "must be a whole number from \(range.lowerBound) to \(range.upperBound), got \(Self.show(json))")
        }
        return number
    }

    func array(_ key: String) throws(ConnectorConfig.Failure) -> [JSONValue] {
        guard let value = object[key] else { throw ConnectorConfig.Failure(path: child(key), reason: "missing") }
        guard let list = value.arrayValue else {
            throw ConnectorConfig.Failure(path: child(key), reason: "must be an array, got \(value.typeName)")
        }
        return list
    }

    /// A value as it appears in the file, for messages.
    static func show(_ value: JSONValue) -> String { JSONWriter.string(value) }
}
