import ArgumentParser
import BNN
import Foundation

/// `bnn eval`: top-1 and top-5 accuracy of saved weights on CIFAR-10's test split.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate ResNet-20 weights from a safetensors file on test_batch.bin (top-1, top-5).",
        discussion: """
            Any safetensors file with the PyTorch state_dict names of the model works: a checkpoint of \
            `bnn train` (its "optimizer." entries are ignored) or a file saved from the paper's PyTorch model \
            (a "module." prefix from DataParallel is removed). Every key must be present with its shape; the \
            error names each missing, unexpected or mismatched key. A checkpoint of `bnn train` also records its \
            variant, which is used unless --model / --a32 say otherwise (a conflict is an error).
            """
    )

    @Option(help: "Network: resnet20 (binary block convolutions) or resnet20-fp (default: as recorded in the file, else resnet20).")
    var model: ModelName?

    @Option(help: "The safetensors file with the weights.")
    var weights: String

    @Option(help: "CIFAR-10 directory holding test_batch.bin. Default: the bundled sample.")
    var data: String?

    @Option(name: .customLong("batch-size"), help: "Images per evaluation batch (does not change the results).")
    var batchSize: Int = Evaluation.defaultBatchSize

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Print {\"top1\": …, \"top5\": …, \"images\": …} (fractions) instead of text.")
    var json = false

    @Flag(help: "1W32A weights: binary weights, real-valued activations.")
    var a32 = false

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize).") }
        if a32 && model == .resnet20FullPrecision {
            throw ValidationError("--a32 applies to the binary resnet20, not to resnet20-fp.")
        }
    }

    func run() throws {
        try threadOptions.apply()
        let weightsURL = URL(fileURLWithPath: weights)
        guard FileManager.default.fileExists(atPath: weightsURL.path) else {
            throw CommandError("--weights \(weightsURL.path) does not exist.")
        }
        let variant = try chooseVariant(weightsURL)
        let test = try readTestSplit(try DataLocation.resolve(data))
        // The estimator only matters for gradients; evaluation never computes any.
        let network = try ResNet20(variant: variant, estimator: ReSTE(), seed: 0)
        try ModelWeights.load(weightsURL, into: network)
        let result = try Evaluation.evaluate(network, on: test, batchSize: batchSize)
        if json {
            print(result.json)
        } else {
            print("""
                \(TrainingBenchmark.modelName(variant)) weights \(weightsURL.path)
                top-1 \(percent(result.top1)) (\(result.top1Correct)/\(result.images)), \
                top-5 \(percent(result.top5)) (\(result.top5Correct)/\(result.images)), \
                loss \(String(format: "%.4f", result.loss))
                """)
        }
    }

    /// The variant asked for on the command line, checked against the one a training checkpoint records.
    private func chooseVariant(_ url: URL) throws -> ResNet20.Variant {
        let requested = model.map { $0.variant(a32: a32) } ?? (a32 ? .binaryWeights : nil)
        var recorded: ResNet20.Variant?
        if let checkpoint = try? Checkpoint.read(from: url) { recorded = checkpoint.configuration.variant }
        switch (requested, recorded) {
        case let (requested?, recorded?) where requested != recorded:
            throw CommandError(
                "\(url.path) was trained as \(TrainingBenchmark.modelName(recorded)), but the options ask for "
                    + "\(TrainingBenchmark.modelName(requested)); drop --model/--a32 or make them match.")
        case let (requested?, _): return requested
        case let (nil, recorded?): return recorded
        case (nil, nil): return .binary
        }
    }
}
