import ArgumentParser
import BNN
import Foundation

/// `bnn export`: a trained ResNet-20 1W1A as a packed model.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Pack a trained ResNet-20 1W1A for inference: sign(W) as bits, α and batch norm folded in.",
        discussion: """
            --weights is any safetensors file with the ResNet-20 state-dict names: a `bnn train` checkpoint \
            (optimizer state is ignored) or weights saved from the authors' PyTorch model. The packed file is \
            written atomically.
            """)

    @Option(help: "Network: resnet20 (the only one with binary activations).")
    var model: ModelName = .resnet20

    @Option(help: "The safetensors file with the trained weights.")
    var weights: String

    @Option(help: "The packed model to write (e.g. model.bnn).")
    var out: String

    @Flag(help: "The weights are 1W32A (refused: the packed engine needs binary activations).")
    var a32 = false

    func validate() throws {
        if model == .resnet20FullPrecision || a32 {
            throw ValidationError(
                "only ResNet-20 1W1A can be packed: a full-precision or 1W32A network has real-valued activations, "
                    + "which the binary kernels do not take.")
        }
    }

    func run() throws {
        let url = URL(fileURLWithPath: weights)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CommandError("--weights \(url.path) does not exist.")
        }
        if let checkpoint = try? Checkpoint.read(from: url), checkpoint.configuration.variant != .binary {
            throw CommandError(
                "\(url.path) was trained as \(TrainingBenchmark.modelName(checkpoint.configuration.variant)); only "
                    + "ResNet-20 1W1A has binary activations for the packed kernels.")
        }
        let file = try SafeTensors.read(url)
        let packed = try PackedModel.resNet20(stateDict: file.tensors)
        let outURL = URL(fileURLWithPath: out)
        try packed.write(to: outURL)
        let size = (try? FileManager.default.attributesOfItem(atPath: outURL.path)[.size] as? Int) ?? 0
        let floatBytes = file.tensors.filter { !$0.key.hasPrefix(Checkpoint.optimizerPrefix) }
            .values.reduce(0) { $0 + ($1.dtype == .f32 ? $1.bytes.count : $1.elementCount * 4) }
        print("""
            packed \(packed.graph.layers.count) layers of \(url.path)
            wrote \(outURL.path): \(size) bytes (the float32 weights take \(floatBytes) bytes, \
            \(String(format: "%.1f", Double(floatBytes) / Double(max(size, 1))))× more)
            """)
    }
}

/// `bnn summary --packed`: what a packed model holds.
struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary", abstract: "List the layers of a packed model with their bytes.")

    @Option(help: "The packed model (.bnn).")
    var packed: String

    func run() throws {
        let url = URL(fileURLWithPath: packed)
        let model = try PackedModel.load(contentsOf: url)
        let bytes = try Data(contentsOf: url)
        let header = 8 + bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        print("\(url.path): \(model.graph.model), input \(model.graph.input), \(model.graph.classes) classes")
        print("layer".padding(toLength: 22, withPad: " ", startingAt: 0) + "op".padding(toLength: 16, withPad: " ", startingAt: 0)
            + "in → out".padding(toLength: 26, withPad: " ", startingAt: 0) + "bytes")
        var total = 0
        for (layer, size) in model.layerBytes() {
            total += size
            let shape = "\(layer.height)×\(layer.width)×\(layer.channels) → \(layer.outChannels)"
            print(layer.name.padding(toLength: 22, withPad: " ", startingAt: 0)
                + layer.op.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)
                + shape.padding(toLength: 26, withPad: " ", startingAt: 0) + "\(size)")
        }
        print("total \(total) bytes = file size \(bytes.count) − header \(header) (\(bytes.count - header))")
    }
}

/// `bnn infer`: top-1 and speed of a packed model.
struct InferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer", abstract: "Classify test_batch.bin with a packed model: top-1 and images/s.")

    @Option(help: "The packed model (.bnn).")
    var packed: String

    @Option(help: "CIFAR-10 directory holding test_batch.bin. Default: the bundled sample.")
    var data: String?

    @Option(name: .customLong("batch-size"), help: "Images per batch.")
    var batchSize = 256

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Print {\"top1\", \"images\", \"images_per_second\", \"ms_per_image_batch1\"} instead of text.")
    var json = false

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize).") }
    }

    func run() throws {
        try threadOptions.apply()
        let engine = try PackedEngine(model: PackedModel.load(contentsOf: URL(fileURLWithPath: packed)))
        let test = try readTestSplit(try DataLocation.resolve(data))
        let batches = try CIFAR10Batches.evaluation(test, batchSize: batchSize)
        // Prepare the images first so the timing is the engine's alone.
        let prepared = (0..<batches.batchesPerEpoch).map { batches.batches(epoch: 0).batch(at: $0) }
        var correct = 0
        let start = Date()
        for batch in prepared {
            let logits = try engine.logits(images: batch.images, count: batch.count)
            let predicted = PackedEngine.predictions(logits: logits, classes: engine.classes)
            correct += zip(predicted, batch.labels).filter { $0 == $1 }.count
        }
        let seconds = Date().timeIntervalSince(start)
        // Batch 1: the median over up to 200 single images.
        var singles: [Double] = []
        for batch in prepared {
            for i in 0..<batch.count where singles.count < 200 {
                let image = Array(batch.images[(i * engine.inputSize)..<((i + 1) * engine.inputSize)])
                let t0 = Date()
                _ = try engine.logits(images: image, count: 1)
                singles.append(Date().timeIntervalSince(t0))
            }
        }
        singles.sort()
        let msBatch1 = 1000 * singles[singles.count / 2]
        let top1 = Double(correct) / Double(test.count)
        let rate = Double(test.count) / seconds
        if json {
            print(String(format: "{\"top1\": %.6f, \"images\": %d, \"images_per_second\": %.1f, \"ms_per_image_batch1\": %.4f}",
                         top1, test.count, rate, msBatch1))
        } else {
            print("""
                top-1 \(percent(top1)) (\(correct)/\(test.count)) with the packed engine
                \(String(format: "%.0f", rate)) images/s at batch \(batchSize), \
                \(String(format: "%.3f", msBatch1)) ms per image at batch 1 (median of \(singles.count)), \
                \(Kernels.threads) thread(s), kernels \(Kernels.isa.name)
                """)
        }
    }
}

/// `bnn bench infer`: the packed engine against the training graph's evaluation, same weights, same run.
struct BenchInferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Inference speed of ResNet-20 1W1A: packed engine vs the training graph in eval mode.")

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Print a JSON array of rows {engine, batch, images_per_second, ms_per_batch}.")
    var json = false

    func run() throws {
        try threadOptions.apply()
        // Weights: a fresh ResNet-20 1W1A after a few training-mode forwards, so batch-norm statistics are real.
        let model = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 1)
        var generator = Xoshiro256StarStar(seed: 2)
        let images = (0..<(256 * 3072)).map { _ in Float(generator.next(below: 2001)) / 1000 - 1 }
        model.train()
        for _ in 0..<2 { _ = try withNoGrad { try model(Tensor(shape: [64, 32, 32, 3], data: Array(images[0..<(64 * 3072)]))) } }
        model.eval()
        let engine = try PackedEngine(model: PackedModel.resNet20(stateDict: model.stateDict()))

        struct Row { let engine: String; let batch: Int; let seconds: Double }
        func time(_ body: () throws -> Void) rethrows -> Double {
            try body()  // warm-up
            var samples: [Double] = []
            let start = Date()
            while samples.count < 5 || (Date().timeIntervalSince(start) < 1 && samples.count < 200) {
                let t0 = Date()
                try body()
                samples.append(Date().timeIntervalSince(t0))
            }
            return samples.sorted()[samples.count / 2]
        }
        var rows: [Row] = []
        for batch in [1, 256] {
            let input = Array(images[0..<(batch * 3072)])
            let tensor = try Tensor(shape: [batch, 32, 32, 3], data: input)
            rows.append(Row(engine: "packed", batch: batch, seconds: try time { _ = try engine.logits(images: input, count: batch) }))
            rows.append(Row(engine: "training-graph", batch: batch,
                            seconds: try time { _ = try withNoGrad { try model(tensor) } }))
        }
        if json {
            let objects = rows.map {
                String(format: "{\"engine\": \"%@\", \"batch\": %d, \"images_per_second\": %.1f, \"ms_per_batch\": %.4f}",
                       $0.engine, $0.batch, Double($0.batch) / $0.seconds, 1000 * $0.seconds)
            }
            print("[" + objects.joined(separator: ", ") + "]")
            return
        }
        print("ResNet-20 1W1A inference, \(Kernels.threads) thread(s), kernels \(Kernels.isa.name), median times")
        for row in rows {
            print(row.engine.padding(toLength: 16, withPad: " ", startingAt: 0) + "batch \(row.batch)".padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(format: "%10.0f images/s %10.3f ms per batch", Double(row.batch) / row.seconds, 1000 * row.seconds))
        }
        for batch in [1, 256] {
            let packed = rows.first { $0.engine == "packed" && $0.batch == batch }!.seconds
            let graph = rows.first { $0.engine == "training-graph" && $0.batch == batch }!.seconds
            print(String(format: "batch %d: packed engine %.1f× the training graph", batch, graph / packed))
        }
    }
}
