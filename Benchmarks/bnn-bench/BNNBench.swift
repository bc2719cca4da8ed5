import ArgumentParser
import BNNBenchmarks

/// `bnn-bench`: the benchmarks of `bnn bench`, as a standalone executable.
@main
struct BNNBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bnn-bench",
        abstract: "Benchmarks of swift-bnn (the same as `bnn bench`).",
        subcommands: [KernelsCommand.self],
        defaultSubcommand: KernelsCommand.self
    )
}
