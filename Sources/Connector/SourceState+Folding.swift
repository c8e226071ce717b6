import Wire

/// What happens to a source's state as lines arrive, hours close and ingest answers: pure, so
/// every rule here unit-tests with strings.
extension SourceState {
    /// Folds one line into the open hours and the counters. `header` is the CSV header of the file
    /// or run the line belongs to: the first line sets it. `at` says where the line is, for examples.
    mutating func fold(
        line: ArraySlice<UInt8>, config: SourceConfig, header: inout CSVHeader?, at: @autoclosure () -> String
    ) {
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        let record: Record
        switch config.format {
        case .ndjson:
            switch RecordParser.ndjson(line) {
            case .failure(let error): return malformed(line, error.reason, at: at())
            case .success(let parsed): record = parsed
            }
        case .csv:
            guard let header else {
                switch CSVHeader.parse(line, delimiter: config.delimiter) {
                case .success(let parsed): header = parsed
                case .failure(let error):
                    // Every row of this file is then malformed (no column has a name), and says so.
                    header = CSVHeader.unusable
                    counters.read += 1
                    counters.malformed += 1
                    counters.noteMalformed(MalformedExample(at: at(), reason: error.reason, text: Self.excerpt(line)))
                }
                return
            }
            switch RecordParser.csv(line, header: header, delimiter: config.delimiter) {
            case .failure(let error): return malformed(line, error.reason, at: at())
            case .success(let parsed): record = parsed
            }
        }
        counters.read += 1
        var counted = false
        var late = false
        var problem: String?
        for rule in config.meters {
            var meter = counters.meters[rule.name] ?? MeterCounters()
            switch rule.evaluate(record) {
            case .skipped: meter.skipped += 1
            case .malformed(let reason):
                meter.malformed += 1
                problem = problem ?? "meter \(rule.name): \(reason)"
            case .counted(let subscription, let time, let amount):
                switch accumulator.add(meter: rule.name, subscription: subscription, time: time, amount: amount) {
                case .onTime:
                    meter.counted += 1
                    counted = true
                case .late:
                    meter.counted += 1
                    meter.late += 1
                    counted = true
                    late = true
                case .overflow:
                    meter.malformed += 1
                    problem = problem ?? "meter \(rule.name): the hour's total would be out of range"
                }
            }
            counters.meters[rule.name] = meter
        }
        if late { counters.late += 1 }
        if let problem {
            counters.malformed += 1
            counters.noteMalformed(MalformedExample(at: at(), reason: problem, text: Self.excerpt(line)))
        } else if counted {
            counters.counted += 1
        } else {
            counters.skipped += 1
        }
    }

    /// A line longer than the source's limit: counted as malformed, with its first bytes.
    mutating func foldTooLong(_ prefix: ArraySlice<UInt8>, limit: Int, at: @autoclosure () -> String) {
        counters.read += 1
        malformedCounted(prefix, "longer than \(limit) bytes (maxLineBytes); skipped", at: at())
    }

    private mutating func malformed(_ line: ArraySlice<UInt8>, _ reason: String, at: String) {
        counters.read += 1
        malformedCounted(line, reason, at: at)
    }

    private mutating func malformedCounted(_ line: ArraySlice<UInt8>, _ reason: String, at: String) {
        counters.malformed += 1
        counters.noteMalformed(MalformedExample(at: at, reason: reason, text: Self.excerpt(line)))
    }

    /// The first bytes of a line, as text, for an example.
    static func excerpt(_ line: ArraySlice<UInt8>) -> String {
        let limit = 160
        let text = String(decoding: line.prefix(limit), as: UTF8.self)
        return line.count > limit ? text + "…" : text
    }

    /// Closes the hours before `boundary` (see `HourlyAccumulator.boundary`) and puts their events
    /// in the outbox. Returns how many events were added. Zero totals make no event.
    mutating func close(before boundary: Timestamp, config: SourceConfig) -> Int {
        var added = 0
        for (key, bucket) in accumulator.close(before: boundary) where bucket.total > .zero {
            guard let rule = config.meters.first(where: { $0.name == key.meter }),
                let event = UsageEvent.message(source: source, rule: rule, key: key, bucket: bucket)
            else {
                counters.rejected += 1
                counters.noteProblem(
                    "\(key.meter) for \(key.subscription) at \(key.hour.iso8601): the scaled quantity of \(bucket.total) is out of range; not emitted"
                )
                continue
            }
            outbox.append(event)
            added += 1
        }
        return added
    }

    /// Applies ingest's per-event answers to the first `results.count` events of the outbox.
    /// `accepted` and `duplicate` (an earlier try got through) settle an event; `unavailable`
    /// keeps it for the next try; any other refusal is final: counted, kept as a problem, dropped.
    mutating func acknowledge(_ results: [JSONValue]) {
        let sent = Array(outbox.prefix(results.count))
        var kept: [JSONValue] = []
        for (event, result) in zip(sent, results) {
            let status = result["status"]?.stringValue ?? ""
            let code = result["error"]?["code"]?.stringValue ?? ""
            if status == "rejected" && code == ErrorCode.unavailable.rawValue || status.isEmpty {
                kept.append(event)
                continue
            }
            if status == "accepted" || status == "duplicate" {
                if status == "accepted" { counters.accepted += 1 } else { counters.duplicates += 1 }
                let meterName = event["value"]?["properties"]?["meter"]?.stringValue ?? "?"
                var meter = counters.meters[meterName] ?? MeterCounters()
                meter.events += 1
                if case .number(let text)? = event["value"]?["quantity"], let quantity = Quantity(exactly: text) {
                    let (sum, overflow) = meter.quantity.units.addingReportingOverflow(quantity.units)
                    meter.quantity = Quantity(units: overflow ? .max : sum)
                }
                counters.meters[meterName] = meter
                continue
            }
            counters.rejected += 1
            let message = result["error"]?["message"]?.stringValue ?? JSONWriter.string(result)
            counters.noteProblem("ingest refused \(event["id"]?.stringValue ?? "?"): \(code): \(message)")
        }
        outbox = kept + outbox.dropFirst(results.count)
    }
}
