import ArgumentParser
import BNNBenchmarks

/// `bnn`: the command line of swift-bnn.
@main
struct BNNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bnn",
        abstract: "Binary neural networks: bit-packed kernels and their measurement.",
        subcommands: [BenchCommand.self]
    )
}

/// `bnn bench`: groups the benchmarks.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure kernels on this machine.",
        subcommands: [KernelsCommand.self]
    )
}
