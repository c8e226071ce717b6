import Foundation
import Wire

/// What `--help`, `meterctl help` and `meterctl completion bash` print, made from the commands'
/// declarations (the parser reads the same ones).
enum Help {
    /// One command's help: what it does, its usage line, its options with their variables and
    /// defaults, its subcommands and examples.
    static func text(_ command: Command, path: String) -> String {
        var out = "\(path): \(command.summary)\n\n"
        var usage = "Usage: \(path)"
        if !command.subcommands.isEmpty { usage += command.run == nil ? " COMMAND" : " [COMMAND]" }
        if !command.options.isEmpty { usage += " [options]" }
        for argument in command.arguments { usage += argument.optional ? " [\(argument.name)]" : " \(argument.name)" }
        out += usage + "\n"
        if !command.details.isEmpty { out += "\n" + command.details + "\n" }
        if !command.arguments.isEmpty {
            out += "\nArguments:\n" + rows(command.arguments.map { ("  " + $0.name, [$0.summary]) })
        }
        if !command.subcommands.isEmpty {
            out += "\nCommands:\n" + rows(command.subcommands.map { ("  " + $0.name, [$0.summary]) })
            out += "\n'\(path) COMMAND --help' shows a command's options.\n"
        }
        var options = command.options.map { option -> (String, [String]) in
            var left = "  --\(option.name)"
            if let placeholder = option.placeholder { left += " \(placeholder)" }
            var lines = [option.summary + (option.kind == .repeated(option.placeholder ?? "") ? " (repeatable)" : "")]
            if !option.choices.isEmpty { lines.append("one of: " + option.choices.joined(separator: ", ")) }
            var source: [String] = []
            if let variable = option.environment { source.append("env \(variable)") }
            switch option.fallback {
            case .none: break
            case .value(let value): source.append("default: \(value)")
            case .inHome(let relative): source.append("default: $METERING_HOME/\(relative)")
            case .computed(let how): source.append("default: \(how)")
            }
            if !source.isEmpty { lines.append(source.joined(separator: "; ")) }
            return (left, lines)
        }
        options.append(("  -h, --help", ["show this help"]))
        out += "\nOptions:\n" + rows(options)
        if !command.examples.isEmpty {
            out += "\n" + (command.examples.count == 1 ? "Example:" : "Examples:") + "\n"
            out += command.examples.map { "  " + $0 + "\n" }.joined()
        }
        return out
    }

    /// `meterctl --help`: every command with its summary, the topics, the environment.
    static func overview(_ root: Command) -> String {
        var out = "meterctl: the command line of the metering stack (\(Version.line("meterctl"))).\n\n"
        out += "Usage: meterctl COMMAND [options]\n\nCommands:\n"
        var entries: [(String, [String])] = []
        for command in root.subcommands {
            if command.run != nil || command.subcommands.isEmpty { entries.append(("  " + command.name, [command.summary])) }
            for sub in command.subcommands { entries.append(("  \(command.name) \(sub.name)", [sub.summary])) }
        }
        out += rows(entries)
        out += """

            'meterctl COMMAND --help' (or -h, or 'meterctl help COMMAND') shows a command's options,
            their environment variables and defaults, and an example.

            Help topics ('meterctl help TOPIC'):
            \(rows(topics.map { ("  " + $0.name, [$0.summary]) }))
            Environment:
              METERING_HOME        the stack's directory (default ./.metering): every socket, data and
                                   log path defaults to a place under it; --home overrides it
              METERING_CLOCK       system (default) or manual, for 'meterctl up' and the servers: with
                                   manual, time moves only by 'meterctl advance-clock'
              METERING_LOG_LEVEL   the servers' log level: debug, info (default), notice, warning, error;
                                   their logs are in $METERING_HOME/log/ when 'meterctl up' runs them
              METERING_*           each server's own settings: meter-ingest --help, meter-query --help, ...

            'meterctl --version' prints the version and the log format version;
            'meterctl completion bash' prints bash completion ('source <(meterctl completion bash)').

            """
        return out
    }

    /// Left column, then the first line of text beside it and the rest under it.
    static func rows(_ rows: [(String, [String])]) -> String {
        let width = min(30, (rows.map(\.0.count).max() ?? 0) + 2)
        var out = ""
        for (left, lines) in rows {
            var first = true
            for line in lines {
                if first {
                    out +=
                        left.count + 2 > width
                        ? left + "\n" + String(repeating: " ", count: width) : left.padding(toLength: width, withPad: " ", startingAt: 0)
                    first = false
                } else {
                    out += String(repeating: " ", count: width)
                }
                out += line + "\n"
            }
        }
        return out
    }

    /// A help topic: `meterctl help plans`.
    struct Topic {
        let name: String
        let summary: String
        let text: String
    }

    static let topics = [
        Topic(
            name: "plans",
            summary: "the plan format (--plan-file, plans add): dimensions, included quantities, tiers, the catalog, prices",
            text: plansTopic),
        Topic(name: "messages", summary: "the messages ingest accepts (send --file): envelope, quantities, times", text: messagesTopic),
    ]

    static let plansTopic = """
        Plans: what a subscription was bought with.

        A purchase carries its plan inline, in the metered-billing-accelerator's format:

          {"planId": "pro",
           "billingDimensions": {
             "email":  {"type": "simple", "dimension": "emails", "included": 1000},
             "cpu":    {"type": "simple", "dimension": "cpu_hours", "included": "Infinite"},
             "seats":  {"type": "simple", "dimension": "seats", "included": 25, "aggregation": "max"},
             "egress": {"type": "waterfall", "tiers": [
                          {"dimension": "egress_tier_1", "threshold": 100},
                          {"dimension": "egress_tier_2", "threshold": 400}]}}}

        - The keys of billingDimensions ("email", ...) are the meter names the application reports
          usage under (send usage --meter email); "dimension" is the marketplace's dimension id that
          overage is reported on.
        - simple: "included" is a quantity per billing period, or "Infinite" (counted, never
          billed); absent or 0 bills everything. Usage takes the included quantity first, the rest
          is overage of the hour it arrived in, reported once the hour has closed.
        - "aggregation" (optional, simple only): "sum" (default), or "max"/"last" for seat- or
          capacity-like meters: the period's highest (or latest) value minus the included quantity,
          reported once after the period ends.
        - waterfall: thresholds are band sizes. The first band (the first tier's threshold) is
          free; each tier's dimension bills the next band (as large as the next tier's threshold),
          the last tier's everything beyond. With the tiers above: 100 free, egress_tier_1 billed
          from 100 to 500, egress_tier_2 beyond 500.
        - Periods run from the subscription's start date (Monthly, Annually, 2-years or 3-years),
          clamped at month ends: bought on Jan 31, renewed on Feb 29, Mar 31, Apr 30, ...

        'meterctl send purchase --plan-file FILE' takes such a plan, or a whole purchase message;
        '--plan-id P --dimension METER=DIMENSION[:INCLUDED]...' builds a simple one from flags.

        The plan catalog: define a plan once, then buy it by its id.

          meterctl plans add gold.json          the file: a plan as above, or an array of them
          meterctl send purchase --resource-id sub-1 --plan-id gold
          meterctl plans list; meterctl plans show gold

        - Ingest keeps the catalog in its log and stores a purchase (or plan change) of "gold" with
          the catalog's plan whole, so nothing downstream changes. In a message, a plan that gives
          only its planId ({"planId": "gold"}) names the catalog's plan; an unknown id is refused.
        - A different plan under an id is its next version: later purchases get it, earlier ones
          keep theirs. The same plan again changes nothing.
        - Optional display prices, per marketplace dimension of the plan, for people only (the
          run-rate page and 'meterctl runrate' show money; billing never uses them):

            "prices": {"currency": "USD", "perUnit": {"emails": 0.002, "egress_tier_1": 0.05}}

        docs/PROTOCOL.md §6 has every rule; docs/BILLING.md how the quantities are billed and
        "The plan catalog".
        """

    static let messagesTopic = """
        Messages: what ingest accepts ('meterctl send --file FILE' sends one, or an array).

        Every message is {"type": T, "value": {...}, "id": "<optional idempotency key>"}.
        A repeated id is answered "duplicate" and never counted twice (for 7 days of log time).

          SubscriptionPurchased  {"subscription": {"resourceId" and/or "resourceUri",
                                  "subscriptionStart": TIME, "renewalInterval": "Monthly",
                                  "plan": PLAN}}                      (see 'meterctl help plans')
          UsageReported          {"resourceId" and/or "resourceUri", "timestamp": TIME,
                                  "meterName": "email", "quantity": 25,
                                  "properties": {"campaign": "spring"}}   (properties optional)
          SubscriptionDeleted    {"resourceId" and/or "resourceUri"}
          PlanChanged            {"resourceId" and/or "resourceUri", "plan": PLAN}
                                 a new plan from now; the period goes on (docs/BILLING.md)
          UsageVoided            {"ids": ["usage-1", ...], "reason": "sent twice"}
                                 usage sent with those ids taken out of the accounting:
                                 unreported, it leaves its hour; accepted, it becomes a credit
          PlanDefined            {"plan": PLAN}   a plan of the catalog: purchases and plan
                                 changes may then give {"planId": "gold"} alone as their plan

        Internal messages, accepted on the admin socket only (send --admin):
          UsageSubmittedToAPI        a marketplace outcome, {"result": {..., "status": "Accepted"}}
          RemoveUnprocessedMessages  {"partitionId": "0", "beforeIncluding": N | "exactly": N | "all": "all"}
          Ping                       {"partitionId": "0", "reason": "..."}

        Quantities: JSON numbers or numeric strings, exact to 18 decimal places, never negative;
        "Infinite" only as an included quantity.
        Times: ISO 8601 UTC, "2024-03-01T10:00:00Z", with or without a fraction or the Z.
        The sender's timestamp is recorded only: billing goes by the time ingest appended the
        message (its enqueued time), the stack's only business clock; unless meter-ingest runs
        with METERING_ATTRIBUTION=event, when a usage's timestamp decides its hour while that
        hour is open (its end plus METERING_LATE_GRACE), and one more than 5 minutes ahead of
        ingest's clock is refused.

        Usage that names an unknown subscription or meter is kept as unprocessable, with its
        reason ('meterctl send' reports it; 'meterctl aggregator-status' counts it).
        docs/PROTOCOL.md §6 has every field and rule.
        """

    /// A bash completion script: completes command paths, each command's options, the values of
    /// options with choices, and paths for FILE, PATH and DIR options.
    static func bashCompletion(_ root: Command) -> String {
        var words: [(String, [String])] = []
        var pathOptions: Set<String> = []
        var choices: [String: [String]] = [:]
        func visit(_ command: Command, _ path: String) {
            var list = command.subcommands.map(\.name) + command.arguments.flatMap(\.choices)
            list += command.options.map { "--" + $0.name } + ["--help"]
            if path == "help" { list = root.subcommands.map(\.name) + topics.map(\.name).filter { root.subcommand($0) == nil } }
            words.append((path, list))
            for option in command.options {
                if option.takesPath { pathOptions.insert("--" + option.name) }
                if !option.choices.isEmpty { choices["--" + option.name] = option.choices }
            }
            for sub in command.subcommands { visit(sub, path.isEmpty ? sub.name : path + " " + sub.name) }
        }
        visit(root, "")
        var out = """
            # bash completion for meterctl (\(Version.line("meterctl"))), made by 'meterctl completion bash'.
            # Use: source <(meterctl completion bash)
            _meterctl_words() {
              case "$1" in

            """
        for (path, list) in words {
            out += "    \"\(path)\") echo \"\(list.joined(separator: " "))\" ;;\n"
        }
        out += "  esac\n}\n"
        out += """
            _meterctl() {
              local cur prev path word i
              cur="${COMP_WORDS[COMP_CWORD]}"
              prev="${COMP_WORDS[COMP_CWORD-1]}"
              case "$prev" in

            """
        if !pathOptions.isEmpty {
            out += "    \(pathOptions.sorted().joined(separator: "|"))) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
        }
        for (option, values) in choices.sorted(by: { $0.key < $1.key }) {
            out += "    \(option)) COMPREPLY=($(compgen -W \"\(values.joined(separator: " "))\" -- \"$cur\")); return ;;\n"
        }
        out += """
              esac
              path=""
              for ((i = 1; i < COMP_CWORD; i++)); do
                word="${COMP_WORDS[i]}"
                case "$word" in -*) break ;; esac
                case " $(_meterctl_words "$path") " in
                  *" $word "*) path="${path:+$path }$word" ;;
                  *) break ;;
                esac
              done
              COMPREPLY=($(compgen -W "$(_meterctl_words "$path")" -- "$cur"))
            }
            complete -F _meterctl meterctl

            """
        return out
    }
}
