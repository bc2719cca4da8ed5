import ArgumentParser
import BNN
import Foundation

/// `bnn eval`: top-1 and top-5 accuracy of saved weights on CIFAR-10's test split.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a network's weights from a safetensors file on test_batch.bin or an image folder's val/ (top-1, top-5).",
        discussion: """
            Any safetensors file with the PyTorch state_dict names of the model works: a checkpoint of \
            `bnn train` (its "optimizer." entries are ignored) or a file saved from the paper's PyTorch model \
            (a "module." prefix from DataParallel is removed). Every key must be present with its shape; the \
            error names the first missing, unexpected or mismatched key. A checkpoint of `bnn train` also records \
            its network and variant, which are used unless --model / --variant / --a32 say otherwise (a conflict \
            is an error); other files are taken as resnet20 1W1A unless the options say otherwise.
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The safetensors file with the weights.")
    var weights: String

    @OptionGroup var dataOptions: DataOptions

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per evaluation batch (does not change the results).")
    var batchSize: Int = Evaluation.defaultBatchSize

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Print {\"top1\": …, \"top5\": …, \"images\": …} (fractions) instead of text.")
    var json = false

    func validate() throws {
        try checkOption("--batch-size", batchSize, 1...Limits.batchSize)
    }

    func run() throws {
        try threadOptions.apply()
        let weightsURL = URL(fileURLWithPath: weights)
        let (test, description) = try dataOptions.evaluationData()
        let (network, name, definition, variant, _) = try loadNetwork(
            weightsURL, options: modelOptions, classes: test.classCount, inputShape: test.imageShape)
        // Evaluation clamps the batch to the split; what is left must fit in memory.
        try MemoryEstimate.requireFits(
            network, inputShape: test.imageShape, batchSize: min(batchSize, max(test.count, 1)), training: false,
            what: "\(TrainingBenchmark.modelName(definition.name, variant)) evaluation")
        let result = try Evaluation.evaluate(network, on: test, batchSize: batchSize)
        if json {
            print(result.json)
        } else {
            print("""
                \(name) weights \(weightsURL.path) on \(description)
                top-1 \(percent(result.top1)) (\(result.top1Correct)/\(result.images)), \
                top-5 \(percent(result.top5)) (\(result.top5Correct)/\(result.images)), \
                loss \(String(format: "%.4f", result.loss))
                """)
        }
    }
}

/// Reads a weights file and builds the network it holds (the options, else the checkpoint's record, else resnet20
/// 1W1A) with those weights, for `classes` classes and images of `inputShape` (nil: what the checkpoint records,
/// else the network's own); returns it with its report name ("resnet20-1w1a") and the input shape it was built for.
/// Fails naming the first key that does not fit the network, or the first NaN or infinite weight.
func loadNetwork(_ url: URL, options: ModelOptions, classes: Int? = nil, inputShape: [Int]? = nil)
    throws -> (network: Module, name: String, definition: NetworkDefinition, variant: NetworkVariant, inputShape: [Int])
{
    let file: SafeTensorsFile
    do {
        file = try SafeTensors.read(url)
    } catch {
        // The reader's message names the file and what is wrong with it ("does not exist", "is a directory").
        throw CommandError("--weights: \(error)")
    }
    let (definition, variant) = try options.resolve(recorded: try recordedNetwork(file, path: url.path), file: url.path)
    let recorded: (classes: Int?, inputShape: [Int]?)
    do {
        recorded = try Checkpoint.recordedData(file.metadata, path: url.path)
    } catch {
        throw CommandError("\(error)")
    }
    let shape = inputShape ?? recorded.inputShape ?? definition.inputShape
    // The estimator only matters for gradients; evaluation and packing never compute any.
    let network = try definition(NetworkOptions(
        variant: variant, estimator: ReSTE(), classes: classes ?? recorded.classes, inputShape: shape))
    let tensors = ModelWeights.tensors(of: file)
    do {
        try network.loadStateDict(tensors)
    } catch {
        throw CommandError("\(url.path) does not hold \(definition.name) \(variant.label) weights: \(error)")
    }
    // NaN or infinite weights evaluate and pack without any error, into results that mean nothing.
    if let bad = ModelWeights.firstNonFiniteElement(in: tensors) {
        throw CommandError(
            "\(url.path): \(bad). Evaluated or exported, such weights give results that mean nothing, so they are "
                + "refused (did the run diverge? `bnn train` never saves them).")
    }
    return (network, TrainingBenchmark.modelName(definition.name, variant), definition, variant, shape)
}
