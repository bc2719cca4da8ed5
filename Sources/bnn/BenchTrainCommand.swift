import ArgumentParser
import BNN
import Foundation

/// `bnn bench train`: training images/s of a network in 1W1A (ReSTE) and of its full-precision twin, with the time
/// of each phase of a step.
struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Measure training speed of a network in 1W1A (ReSTE) and of its full-precision twin.",
        discussion: """
            Runs the trainer's own step (forward, cross-entropy, backward, SGD, indicators) on batches from the \
            background loader: warm-up steps first, then --steps timed steps. Phases are timed around the step's \
            parts; the estimators' separate passes are timed inside the backward (the activations' estimator, where \
            it runs inside the convolutions' input-gradient kernel, is in neither figure), and the convolutions' input and weight \
            gradients are replayed alone on the step's exact shapes to show their share. Data: synthetic images of the \
            network's own size (random pixels; the network costs the same) unless --data is given: CIFAR-10 binaries \
            or an image folder (with the options of `bnn train`; `bnn bench data --synthetic DIR` writes a folder of \
            photo-sized JPEGs), whose decoding then shows in the data phase. The steps wrap to further epochs of the \
            data; the resident memory at the end of each epoch and the peak are printed. Each model also gives the \
            share of the multiply-add roofline: the step's multiply-adds counted as float GEMM work (forward, input \
            and weight gradients of every convolution and linear layer; 1W1A popcounts count as float) per second, \
            over the in-register fused multiply-add rate of this CPU with the same threads, measured in the same \
            run. Figures move by 10–20 % from run to run on a shared machine.
            """
    )

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Print a JSON array, one object per model (keys model, estimator, batch, threads, images_per_second, phase shares).")
    var json = false

    @Option(parsing: .unconditional, help: "Timed steps per model.")
    var steps: Int = 8

    @Option(name: .customLong("warmup-steps"), parsing: .unconditional, help: "Untimed steps first (buffers, OpenBLAS start-up).")
    var warmupSteps: Int = 2

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per step.")
    var batchSize: Int = 256

    @OptionGroup var dataOptions: DataOptions

    @Option(help: "Network whose 1W1A and full-precision twin are measured (\(NetworkRegistry.names.joined(separator: ", "))).")
    var model: String?

    @Option(parsing: .upToNextOption, help: "Or the list to measure: NAME (1W1A, ReSTE), NAME-a32 or NAME-fp each.")
    var models: [String] = []

    /// What to measure: --models, else --model and its twin, else resnet20 and its twin.
    var measured: [String] {
        if !models.isEmpty { return models }
        let name = model ?? "resnet20"
        return [name, "\(name)-fp"]
    }

    func validate() throws {
        try checkOption("--steps", steps, 1...Limits.benchmarkSteps)
        try checkOption("--warmup-steps", warmupSteps, 0...Limits.benchmarkSteps)
        try checkOption("--batch-size", batchSize, 1...Limits.batchSize)
        guard model == nil || models.isEmpty else { throw ValidationError("give --model or --models, not both.") }
        for model in measured where Self.network(model) == nil {
            throw ValidationError(
                "unknown model `\(model)`; valid: NAME, NAME-a32 or NAME-fp with NAME one of "
                    + "\(NetworkRegistry.names.joined(separator: ", ")).")
        }
    }

    /// "vgg-small-a32" → ("vgg-small", 1W32A); nil for an unknown name.
    static func network(_ name: String) -> (name: String, variant: NetworkVariant)? {
        for (suffix, variant) in [("-a32", NetworkVariant.binaryWeights), ("-fp", .fullPrecision), ("", .binary)]
        where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if NetworkRegistry.names.contains(base) { return (base, variant) }
        }
        return nil
    }

    func run() throws {
        try threadOptions.apply()
        // Before the synthetic images (four batches of them) are made: a batch that cannot fit in memory is refused
        // with the estimate rather than allocated (`TrainingBenchmark.measure` checks again, for library callers).
        for name in measured {
            let (network, variant) = Self.network(name)!
            let definition = try NetworkRegistry.named(network)
            try MemoryEstimate.requireFits(
                try definition(NetworkOptions(variant: variant)), inputShape: definition.inputShape, batchSize: batchSize,
                training: true, what: "\(TrainingBenchmark.modelName(network, variant)) training")
        }
        var split: (any ImageSplit)?
        var source = "synthetic images"
        if dataOptions.data != nil {
            let data = try dataOptions.trainingData()
            (split, source) = (data.train, data.description)
        }
        let peak = try Kernels.fmaPeak(threads: Kernels.threads, seconds: 0.2)
        if !json {
            print("""
                Training step, batch \(batchSize), \(Kernels.threads) thread(s), kernels \(Kernels.isa.name), \
                OpenBLAS core \(Kernels.blasCore), CPU \(Kernels.cpuDescription)
                \(warmupSteps) warm-up + \(steps) timed steps per model on \(source); shares are of the wall time per step
                multiply-add roofline: peak \(String(format: "%.0f", peak / 1e9)) G float MAC/s with \(Kernels.threads) \
                thread(s)
                """)
        }
        var rows: [TrainingBenchmark.Row] = []
        for name in measured {
            let (network, variant) = Self.network(name)!
            let definition = try NetworkRegistry.named(network)
            // Synthetic images of the network's size: CIFAR-10's pipeline for 32×32 networks, plain tensors otherwise.
            let data = try split ?? (definition.inputShape == [32, 32, 3]
                ? TrainingBenchmark.syntheticData(images: 4 * batchSize)
                : TrainingBenchmark.syntheticImages(count: 4 * batchSize, shape: definition.inputShape, classes: definition.classes))
            let row = try TrainingBenchmark.measure(
                network: network, variant: variant, estimator: "reste", batchSize: batchSize, steps: steps,
                warmupSteps: warmupSteps, data: data)
            rows.append(row)
            if !json { print(Self.describe(row, peak: peak)) }
        }
        if json {
            print("[\n" + rows.map { "  " + Self.json($0, peak: peak) }.joined(separator: ",\n") + "\n]")
        } else if rows.count == 2, rows[0].model.hasSuffix("-1w1a"), rows[1].model.hasSuffix("-fp") {
            print(String(format: "1W1A / full precision: %.2fx images/s", rows[0].imagesPerSecond / rows[1].imagesPerSecond))
        }
    }

    /// A few lines per model: throughput, its share of the multiply-add roofline (`peak` MAC/s), then where the time
    /// goes.
    static func describe(_ row: TrainingBenchmark.Row, peak: Double) -> String {
        func share(_ seconds: Double) -> String { String(format: "%5.1f %%", 100 * seconds / row.secondsPerStep) }
        let phases = row.phases.map { "\($0.name) \(share($0.seconds).trimmingCharacters(in: .whitespaces))" }
        let backward = row.seconds("backward")
        let convolutionRate =
            row.backwardConvolutionSeconds > 0
            ? row.backwardConvolutionMultiplyAdds / row.backwardConvolutionSeconds / 1e9 : 0
        return """

            \(row.model)\(row.estimator.map { " (\($0))" } ?? ""): \(String(format: "%.1f", row.imagesPerSecond)) images/s, \
            \(String(format: "%.3f", row.secondsPerStep)) s/step
              multiply-add roofline: \(String(format: "%.1f", row.stepMultiplyAdds / 1e9)) G multiply-adds per step \
            (forward, dX, dW), \(String(format: "%.0f", row.stepMultiplyAdds / row.secondsPerStep / 1e9)) G MAC/s = \
            \(String(format: "%.1f", 100 * row.stepMultiplyAdds / row.secondsPerStep / peak)) % of the peak
              phases: \(phases.joined(separator: ", ")), other \(share(max(0, row.secondsPerStep - row.phases.map(\.seconds).reduce(0, +))).trimmingCharacters(in: .whitespaces))
              inside backward (\(String(format: "%.3f", backward)) s): conv dX and dW replayed alone \
            \(String(format: "%.3f", row.backwardConvolutionSeconds)) s = \
            \(String(format: "%.0f", 100 * row.backwardConvolutionSeconds / max(backward, 1e-12))) % of backward \
            (\(String(format: "%.1f", row.backwardConvolutionMultiplyAdds / 1e9)) G multiply-adds, \
            \(String(format: "%.0f", convolutionRate)) G MAC/s), separate estimator passes \(String(format: "%.3f", row.estimatorSeconds)) s = \
            \(String(format: "%.1f", 100 * row.estimatorSeconds / max(backward, 1e-12))) % of backward
              memory: resident \(row.residentBytes.map(mebibytes).joined(separator: ", ")) MiB at the end of each \
            epoch of the data (the last: at the end), peak \(mebibytes(row.peakResidentBytes)) MiB
            """
    }

    static func mebibytes(_ bytes: Int) -> String { String(format: "%.0f", Double(bytes) / 1_048_576) }

    /// One JSON object; shares are fractions of the wall time per step, `roofline_share` of the multiply-add peak.
    static func json(_ row: TrainingBenchmark.Row, peak: Double) -> String {
        func number(_ value: Double) -> String { value.isFinite ? String(format: "%.6g", value) : "null" }
        var fields: [(String, String)] = [
            ("model", "\"\(row.model)\""),
            ("estimator", row.estimator.map { "\"\($0)\"" } ?? "null"),
            ("batch", String(row.batch)),
            ("threads", String(row.threads)),
            ("images_per_second", number(row.imagesPerSecond)),
            ("seconds_per_step", number(row.secondsPerStep)),
            ("steps", String(row.steps)),
        ]
        for phase in row.phases { fields.append(("\(phase.name)_share", number(phase.seconds / row.secondsPerStep))) }
        fields.append(("backward_conv_share", number(row.backwardConvolutionSeconds / row.secondsPerStep)))
        fields.append(("estimator_share", number(row.estimatorSeconds / row.secondsPerStep)))
        fields.append(("backward_conv_multiply_adds", number(row.backwardConvolutionMultiplyAdds)))
        fields.append(("step_multiply_adds", number(row.stepMultiplyAdds)))
        fields.append(("roofline_share", number(row.stepMultiplyAdds / row.secondsPerStep / peak)))
        fields.append(("resident_bytes_per_epoch", "[" + row.residentBytes.map(String.init).joined(separator: ", ") + "]"))
        fields.append(("peak_resident_bytes", String(row.peakResidentBytes)))
        fields.append(("cpu", "\"\(Kernels.cpuDescription)\""))
        fields.append(("isa", "\"\(Kernels.isa.name)\""))
        fields.append(("openblas_core", "\"\(Kernels.blasCore)\""))
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }
}
