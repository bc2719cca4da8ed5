import ArgumentParser
import BNN
import BNNDistributed
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

    @Option(
        parsing: .upToNextOption,
        help: "Data-parallel scaling: images/s with each number of ranks (1: this process with all its threads; N > 1: mpirun -np N, cores shared out), gradient bytes per step, the sums' time alone and what the backward pass hid of it.")
    var ranks: [Int] = []

    @Flag(name: .customLong("sync-bn"), help: "With --ranks: batch norm synchronised over the ranks, as `bnn train --sync-bn`.")
    var syncBatchNorm = false

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
        for count in ranks { try checkOption("--ranks", count, 1...Limits.threads) }
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
        if MPICollective.isLaunchedByMPI { return try runAsRank() }
        if !ranks.isEmpty { return try runScaling() }
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
            let data = try split ?? TrainingBenchmark.syntheticSplit(for: definition, images: 4 * batchSize)
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

// MARK: Data-parallel scaling (--ranks)

extension BenchTrainCommand {
    /// Marks the line rank 0 prints for the process that started mpirun.
    static let rowPrefix = "bnn-bench-ranks-row "

    /// The models measured with --ranks: --models, else --model, else resnet20 (1W1A).
    var scalingModels: [String] { models.isEmpty ? [model ?? "resnet20"] : models }

    /// One rank of `mpirun -np N bnn bench train --ranks N`: measures, and rank 0 prints a row per model.
    func runAsRank() throws {
        let collective = try MPICollective.join()
        try applyRankThreads(collective, requested: threadOptions.threads)
        for name in scalingModels {
            let (network, variant) = Self.network(name)!
            let definition = try NetworkRegistry.named(network)
            let data = try TrainingBenchmark.syntheticSplit(for: definition, images: 4 * batchSize)
            let row = try TrainingBenchmark.measureDataParallel(
                network: network, variant: variant, batchSize: batchSize, steps: steps, warmupSteps: warmupSteps, data: data,
                collective: collective, synchronizeBatchNorm: syncBatchNorm)
            if collective.rank == 0 { FileHandle.standardOutput.write(Data((Self.rowPrefix + row.json + "\n").utf8)) }
        }
        collective.finalize()
    }

    /// Images/s with each count of --ranks on this machine, in one run.
    func runScaling() throws {
        try threadOptions.apply()
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let names = scalingModels
        var results: [Int: [ScalingRow]] = [:]
        for count in ranks {
            if count == 1 {
                try Kernels.setThreads(threadOptions.threads ?? cores)
                try Kernels.setBLASThreads(threadOptions.threads ?? cores)
                results[1] = try names.map { name in
                    let (network, variant) = Self.network(name)!
                    let definition = try NetworkRegistry.named(network)
                    let data = try TrainingBenchmark.syntheticSplit(for: definition, images: 4 * batchSize)
                    let row = try TrainingBenchmark.measure(
                        network: network, variant: variant, estimator: "reste", batchSize: batchSize, steps: steps,
                        warmupSteps: warmupSteps, data: data)
                    return ScalingRow(
                        model: row.model, ranks: 1, threadsPerRank: row.threads, imagesPerSecond: row.imagesPerSecond,
                        bytesPerStep: 0, buckets: 0, exposed: 0, alone: 0, hidden: 0)
                }
            } else {
                results[count] = try launchRanks(count)
            }
        }
        print("""
            Data-parallel training, batch \(batchSize) over all ranks, \(warmupSteps) warm-up + \(steps) timed steps, \
            synthetic images\(syncBatchNorm ? ", batch norm synchronised" : ""); CPU \(Kernels.cpuDescription), \(cores) cores
            (sums alone: every gradient bucket summed with nothing else running; wait: after the backward pass, for \
            the sums and the slower rank; during backward: the gradient bytes already summed when the backward pass ended)
            """)
        for name in names {
            let model = Self.network(name).map { TrainingBenchmark.modelName($0.name, $0.variant) } ?? name
            print("\n\(model)")
            print("  ranks  threads/rank    images/s  vs 1 rank   gradient MB/step  buckets  sums alone ms     wait ms  during backward")
            let baseline = results[1]?.first { $0.model == model }?.imagesPerSecond
            for count in ranks.sorted() {
                guard let row = results[count]?.first(where: { $0.model == model }) else { continue }
                let ratio = baseline.map { String(format: "%.2fx", row.imagesPerSecond / $0) } ?? "-"
                let exchange = count == 1 ? "                -        -              -           -                -"
                    : String(format: "%17.2f  %7d  %13.2f  %10.2f  %13.0f %%", Double(row.bytesPerStep) / 1e6, row.buckets,
                             row.alone * 1e3, row.exposed * 1e3, 100 * row.hidden)
                print(String(format: "  %5d  %12d  %10.1f  %9@", count, row.threadsPerRank, row.imagesPerSecond, ratio) + exchange)
            }
        }
    }

    struct ScalingRow: Decodable {
        var model: String
        var ranks: Int
        var threadsPerRank: Int
        var imagesPerSecond: Double
        var bytesPerStep: Int
        var buckets: Int
        var exposed: Double
        var alone: Double
        var hidden: Double

        enum CodingKeys: String, CodingKey {
            case model, ranks, buckets
            case threadsPerRank = "threads_per_rank", imagesPerSecond = "images_per_second"
            case bytesPerStep = "gradient_bytes_per_step", exposed = "exposed_seconds_per_step"
            case alone = "allreduce_seconds_per_step", hidden = "summed_during_backward"
        }

        init(model: String, ranks: Int, threadsPerRank: Int, imagesPerSecond: Double, bytesPerStep: Int, buckets: Int,
             exposed: Double, alone: Double, hidden: Double) {
            (self.model, self.ranks, self.threadsPerRank, self.imagesPerSecond) = (model, ranks, threadsPerRank, imagesPerSecond)
            (self.bytesPerStep, self.buckets, self.exposed, self.alone, self.hidden) = (bytesPerStep, buckets, exposed, alone, hidden)
        }
    }

    /// Runs `mpirun -np count` of this executable in rank mode and reads rank 0's rows.
    func launchRanks(_ count: Int) throws -> [ScalingRow] {
        guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: FileManager.default.isExecutableFile) else {
            throw CommandError("--ranks \(count) needs Open MPI's mpirun (Debian: apt-get install openmpi-bin)")
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var arguments = ["--oversubscribe", "-np", String(count)]
        if getuid() == 0 { arguments.insert("--allow-run-as-root", at: 0) }
        arguments += [executable, "bench", "train", "--ranks", String(count), "--batch-size", String(batchSize),
                      "--steps", String(steps), "--warmup-steps", String(warmupSteps), "--models"] + scalingModels
        if syncBatchNorm { arguments.append("--sync-bn") }
        if let threads = threadOptions.threads { arguments += ["--threads", String(threads)] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CommandError("mpirun -np \(count) \(executable) bench train ... failed (exit \(process.terminationStatus)):\n\(output)")
        }
        return try output.split(separator: "\n").filter { $0.hasPrefix(Self.rowPrefix) }.map { line in
            try JSONDecoder().decode(ScalingRow.self, from: Data(line.dropFirst(Self.rowPrefix.count).utf8))
        }
    }
}

/// Threads per rank under mpirun: --threads, else this machine's cores shared out among the ranks on it.
func applyRankThreads(_ collective: MPICollective, requested: Int?) throws {
    let threads = requested ?? max(1, ProcessInfo.processInfo.activeProcessorCount / max(collective.localSize ?? 1, 1))
    try Kernels.setThreads(threads)
    try Kernels.setBLASThreads(threads)
}
