/// `meterctl help [COMMAND...|TOPIC]` and `meterctl completion bash`.
enum HelpCommand {
    static let command = Command(
        name: "help", summary: "show the help of a command, or a topic: plans, messages",
        details: "Without an argument, the list of commands. 'meterctl help send usage' is 'meterctl send usage --help'.",
        arguments: [
            Argument(name: "COMMAND|TOPIC", summary: "a command (several words for a subcommand) or a topic", optional: true, many: true)
        ],
        examples: ["meterctl help send usage", "meterctl help plans"],
        run: { invocation in try show(invocation.words) })

    static let completion = Command(
        name: "completion", summary: "print a shell completion script made from these commands",
        arguments: [Argument(name: "SHELL", summary: "the shell: bash", choices: ["bash"])],
        examples: ["source <(meterctl completion bash)", "meterctl completion bash > /etc/bash_completion.d/meterctl"],
        run: { _ in print(Help.bashCompletion(MeterCtl.root), terminator: "") })

    static func show(_ words: [String]) throws {
        guard !words.isEmpty else {
            print(Help.overview(MeterCtl.root), terminator: "")
            return
        }
        if words.count == 1, let topic = Help.topics.first(where: { $0.name == words[0] }) {
            print(topic.text)
            // A topic named like a command ('plans'): the command's help follows the format.
            if let command = MeterCtl.root.subcommand(words[0]) {
                print("\n" + Help.text(command, path: "meterctl " + command.name), terminator: "")
            }
            return
        }
        let (command, path, rest) = MeterCtl.resolve(words)
        guard rest.isEmpty, command.name != MeterCtl.root.name else {
            let topics = Help.topics.map(\.name).joined(separator: ", ")
            throw UsageError("no command or topic \"\(words.joined(separator: " "))\"; the topics are \(topics); see meterctl --help")
        }
        print(Help.text(command, path: path), terminator: "")
    }
}
