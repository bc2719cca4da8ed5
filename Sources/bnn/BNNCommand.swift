import ArgumentParser
import BNNBenchmarks

/// `bnn`: the command line of swift-bnn.
@main
struct BNNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bnn",
        abstract: "Binary neural networks: training with ReSTE, bit-packed kernels and their measurement.",
        subcommands: [
            TrainCommand.self, EvalCommand.self, ExportCommand.self, InferCommand.self, SummaryCommand.self,
            BenchCommand.self,
        ]
    )
}

/// `bnn bench`: groups the benchmarks.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure kernels, training and inference on this machine.",
        subcommands: [KernelsCommand.self, BenchTrainCommand.self, BenchInferCommand.self, BenchDataCommand.self]
    )
}
