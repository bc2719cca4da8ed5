// A binary network that is in no zoo, defined here from the library's modules: trained one epoch on the bundled
// sample, evaluated, packed to a .bnn file, reloaded and run by the packed engine, which must classify every
// validation image as the training graph does (exit status 1 otherwise).
// Run: cd Examples/CustomNetwork && swift run CustomNetwork [DATA_DIR]
import BNN
import Foundation

/// Real stem (3×3, 3 → 32) and a max-pool, one binary residual block (32 → 48, stride 2) with a real downsample
/// shortcut, global average pool, linear classifier. Only the two BinaryConv2d layers are 1-bit (1W1A).
func customNetwork(estimator: any SignEstimator, reluGradientAtZero: Float, seed: UInt64) throws -> Module {
    var generator = Xoshiro256StarStar(seed: seed)
    let binaryReLU = { try ReLU(gradientAtZero: reluGradientAtZero) }   // after the binary convolutions
    return try Sequential(
        Conv2d(inputChannels: 3, outputChannels: 32, kernelSize: 3, padding: 1, bias: false, generator: &generator),
        ReLU(), BatchNorm2d(channels: 32),
        MaxPool2d(kernelSize: 2),
        Residual(
            Sequential(
                BinaryConv2d(inputChannels: 32, outputChannels: 48, kernelSize: 3, stride: 2, padding: 1,
                             estimator: estimator, generator: &generator),
                binaryReLU(), BatchNorm2d(channels: 48),
                BinaryConv2d(inputChannels: 48, outputChannels: 48, kernelSize: 3, padding: 1,
                             estimator: estimator, generator: &generator),
                binaryReLU(), BatchNorm2d(channels: 48)),
            shortcut: Sequential(
                Conv2d(inputChannels: 32, outputChannels: 48, kernelSize: 1, stride: 2, bias: false,
                       generator: &generator),
                BatchNorm2d(channels: 48))),
        GlobalAvgPool2d(),
        Linear(inputFeatures: 48, outputFeatures: 10, generator: &generator))
}

/// `text` padded with spaces to `width` characters.
func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }

/// Trains, evaluates, packs and compares; true when the packed engine agrees with the training graph on every image.
func run(dataDirectory: URL, work: URL) throws -> Bool {
    var configuration = TrainingConfiguration(epochs: 1)   // SGD with momentum 0.9, ReSTE: the paper's recipe
    configuration.model = "custom-net"
    configuration.batchSize = 64
    configuration.learningRate = 0.05
    let model = try customNetwork(
        estimator: ReSTE(), reluGradientAtZero: configuration.reluGradientAtZero, seed: configuration.seed)
    let data = try CIFAR10(directory: dataDirectory)
    print("\(configuration.model): \(model.parameterCount) parameters; \(data.train.count) training, "
          + "\(data.test.count) validation images")

    let trainer = try Trainer(
        configuration: configuration, model: model, training: data.train, validation: data.test,
        runDirectory: work.appendingPathComponent("run"))
    _ = try trainer.run()
    print(Trainer.describe(trainer.records[0]))
    let evaluation = try Evaluation.evaluate(model, on: data.test)

    // Pack, write, reload, and show what the packer made of the network.
    let file = work.appendingPathComponent("custom-net.bnn")
    try PackedModel.pack(model, inputShape: [32, 32, 3], name: configuration.model).write(to: file)
    let packed = try PackedModel.load(contentsOf: file)
    let fileSize = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int ?? 0
    print("packed: \(packed.graph.layers.count) layers, \(fileSize) bytes (buffer 0: the image)")
    for (layer, bytes) in packed.layerBytes() {
        let reads = "buffer \(layer.input)" + (layer.residual.map { " + \($0)" } ?? "")
        let writes = [layer.output.map { "floats \($0)" }, layer.outputBits.map { "bits \($0)" }].compactMap { $0 }
        print("  \(pad(layer.name, 13)) \(pad(layer.op.rawValue, 14)) "
              + pad("\(layer.height)×\(layer.width)×\(layer.channels) → \(layer.outChannels)", 17)
              + " \(pad(reads, 14)) → \(pad(writes.joined(separator: ", "), 16)) \(bytes) B")
    }

    // The validation images, normalised as Evaluation does, through the packed engine and the training graph.
    let engine = try PackedEngine(model: packed)
    var packedPredictions = [Int](), graphPredictions = [Int](), labels = [Int]()
    model.eval()
    for batch in try CIFAR10Batches.evaluation(data.test, batchSize: 100).batches(epoch: 0) {
        let logits = try engine.logits(images: batch.images, count: batch.count)
        packedPredictions += PackedEngine.predictions(logits: logits, classes: engine.classes)
        let images = try Tensor(shape: [batch.count, batch.height, batch.width, batch.channels], data: batch.images)
        let graphLogits = try withNoGrad { try model(images) }
        graphPredictions += PackedEngine.predictions(logits: graphLogits.scalars, classes: engine.classes)
        labels += batch.labels
    }
    let packedCorrect = zip(packedPredictions, labels).filter { $0 == $1 }.count
    print(String(format: "top-1: eval %.2f %% (%d/%d), packed engine %.2f %% (%d/%d)", 100 * evaluation.top1,
                 evaluation.top1Correct, evaluation.images, 100 * Double(packedCorrect) / Double(labels.count),
                 packedCorrect, labels.count))
    let same = packedPredictions == graphPredictions && packedCorrect == evaluation.top1Correct
    print("packed predictions equal eval's: \(same ? "yes" : "NO")")
    return same
}

// Data: the first argument, or Examples/data/cifar10-sample beside this package (found from this file's path).
let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
let dataDirectory = CommandLine.arguments.count > 1
    ? URL(fileURLWithPath: CommandLine.arguments[1]) : examples.appendingPathComponent("data/cifar10-sample")
let work = FileManager.default.temporaryDirectory.appendingPathComponent("custom-net-\(UUID().uuidString)")
var ok = false
do {
    ok = try run(dataDirectory: dataDirectory, work: work)
} catch {
    print("error: \(error)")
}
try? FileManager.default.removeItem(at: work)
exit(ok ? 0 : 1)
