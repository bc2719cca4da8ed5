import ArgumentParser
import BNN
import Foundation

/// `bnn bench infer`: 1W1A inference of a registered network, the packed engine against the training graph in
/// evaluation mode, on the same weights and images, in the same run.
struct BenchInferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Measure 1W1A inference: packed engine vs the training graph's evaluation, same weights.",
        discussion: """
            The weights are a freshly initialised 1W1A network (--model, default resnet20; its own image size and \
            classes, e.g. 224×224 and 1,000 for resnet18-imagenet) whose batch-norm statistics were moved by two \
            training-mode forward passes (speed does not depend on the values); the packed model is its export. \
            The training graph runs in evaluation mode without recording gradients. Images: synthetic values in \
            [-2, 2), the range of normalised pixels. Each row: warm-up calls, then the median of --samples timed \
            samples of enough calls to last about 50 ms each. Figures move by 10–20 % from run to run on a shared \
            machine; compare rows of the same run. Each packed row also gives the share of the popcount roofline: \
            the network's binary multiply-accumulates per image times images/s, over the in-register XNOR + popcount \
            + add rate of this CPU with the same threads, measured in the same run. --profile adds the packed \
            engine's time per step and per kind of step (float convolutions, binary convolutions, pools, ...) for \
            each batch size.
            """
    )

    @OptionGroup var threadOptions: ThreadOptions

    @Option(help: "Network: \(NetworkRegistry.names.joined(separator: ", ")) (1W1A).")
    var model: String = "resnet20"

    @Flag(help: "Print a JSON array of rows {engine, batch, images_per_second, ms_per_batch, threads}.")
    var json = false

    @Option(name: .customLong("batch-sizes"), parsing: .upToNextOption,
            help: "Batch sizes to measure (default: 1 and 256; 1 and 16 for images larger than 64×64).")
    var batchSizes: [Int] = []

    @Flag(help: "Print the packed engine's time per step and per kind of step after each batch size (stderr).")
    var profile = false

    @Option(parsing: .unconditional, help: "Timed samples per row (the median is reported).")
    var samples: Int = 7

    func validate() throws {
        for size in batchSizes { try checkOption("--batch-sizes", size, 1...4096) }
        try checkOption("--samples", samples, 1...Limits.benchmarkSamples)
        guard NetworkRegistry.names.contains(model) else {
            throw ValidationError("unknown --model `\(model)`; registered: \(NetworkRegistry.names.joined(separator: ", ")).")
        }
        guard Set(batchSizes).count == batchSizes.count else {
            throw ValidationError("--batch-sizes lists a size twice: \(batchSizes).")
        }
    }

    /// One measured configuration.
    struct Row {
        let engine: String
        let batch: Int
        let secondsPerBatch: Double
        var imagesPerSecond: Double { Double(batch) / secondsPerBatch }
    }

    func run() throws {
        try threadOptions.apply()
        let definition = try NetworkRegistry.named(self.model)
        let shape = definition.inputShape
        let imageSize = shape.reduce(1, *)
        let large = shape[0] * shape[1] > 64 * 64
        let batchSizes = self.batchSizes.isEmpty ? (large ? [1, 16] : [1, 256]) : self.batchSizes
        let largest = batchSizes.max()!
        // Two training-mode passes of `warmup` images move the batch-norm statistics.
        let warmup = large ? 8 : 64
        var generator = Xoshiro256StarStar(seed: 1)
        let images = (0..<(max(largest, 2 * warmup) * imageSize)).map { _ in Float(generator.next(below: 4096)) / 1024 - 2 }

        let model = try definition(NetworkOptions(variant: .binary, seed: 1))
        model.train()
        try withNoGrad {
            for start in [0, warmup] {
                _ = try model(Tensor(shape: [warmup] + shape, data: Array(images[(start * imageSize)..<((start + warmup) * imageSize)])))
            }
        }
        model.eval()
        let binaryMACs = Double(try NetworkSummary(model: model, inputShape: shape).totals.binaryMACs)
        let peak = try Kernels.popcountPeak(threads: Kernels.threads, seconds: 0.2)
        // The engine reads CK_PROFILE_STEPS when it is built and prints a profile whenever the batch size changes.
        if profile { setenv("CK_PROFILE_STEPS", "1", 1) }
        let engine = try PackedEngine(model: PackedModel.pack(model, inputShape: shape, name: definition.name))
        if profile { unsetenv("CK_PROFILE_STEPS") }

        // The packed engine first: OpenBLAS's threads keep spinning for a while after the training graph's
        // convolutions and would take the cores from the engine's OpenMP threads.
        var rows: [Row] = []
        for batch in batchSizes {
            let input = Array(images[0..<(batch * imageSize)])
            rows.append(Row(engine: "packed", batch: batch, secondsPerBatch: try Stopwatch.median(samples: samples) {
                _ = try engine.logits(images: input, count: batch)
            }))
        }
        // The last batch size's profile is printed now rather than when the engine goes away.
        if profile { _ = try engine.logits(images: Array(images[0..<imageSize]), count: 1) }
        for batch in batchSizes {
            let tensor = try Tensor(shape: [batch] + shape, data: Array(images[0..<(batch * imageSize)]))
            rows.append(Row(engine: "training-graph", batch: batch, secondsPerBatch: try Stopwatch.median(samples: samples) {
                _ = try withNoGrad { try model(tensor) }
            }))
        }
        // Both engines on the largest batch: the comparison is only meaningful if they compute the same network.
        let all = try Tensor(shape: [largest] + shape, data: Array(images[0..<(largest * imageSize)]))
        let reference = try withNoGrad { try model(all).scalars }
        let packedLogits = try engine.logits(images: Array(images[0..<(largest * imageSize)]), count: largest)
        let agreeing = zip(PackedEngine.predictions(logits: reference, classes: engine.classes),
                           PackedEngine.predictions(logits: packedLogits, classes: engine.classes)).filter { $0 == $1 }.count

        if !json {
            print("""
                \(definition.name) 1W1A inference on \(shape.map(String.init).joined(separator: "×")) images, \
                \(Kernels.threads) thread(s), kernels \(Kernels.isa.name), OpenBLAS core \(Kernels.blasCore), \
                CPU \(Kernels.cpuDescription); median of \(samples) samples per row
                popcount roofline: \(String(format: "%.0f", binaryMACs / 1e6)) M binary MACs per image, peak \
                \(String(format: "%.2f", peak / 1e12)) T binary MAC/s with \(Kernels.threads) thread(s) \
                (at most \(String(format: "%.0f", peak / binaryMACs)) images/s if nothing else took time)
                the two engines agree on \(agreeing) of \(largest) predictions
                """)
            for batch in batchSizes {
                let pair = rows.filter { $0.batch == batch }
                for row in pair { print(Self.describe(row)) }
                print(String(format: "  batch %d: packed engine at %.1f %% of the popcount roofline", batch,
                             100 * pair[0].imagesPerSecond * binaryMACs / peak))
                print(String(format: "  batch %d: packed engine %.1f× the training graph's images/s", batch,
                             pair[1].secondsPerBatch / pair[0].secondsPerBatch))
            }
        }
        if json {
            print("[\n" + rows.map { "  " + Self.json($0, rooflineShare: $0.imagesPerSecond * binaryMACs / peak) }
                .joined(separator: ",\n") + "\n]")
        }
    }

    static func describe(_ row: Row) -> String {
        row.engine.padding(toLength: 16, withPad: " ", startingAt: 0) + "batch " + String(row.batch).padding(toLength: 5, withPad: " ", startingAt: 0)
            + String(format: "%12.1f images/s %11.4f ms per batch", row.imagesPerSecond, 1000 * row.secondsPerBatch)
    }

    /// One row; `rooflineShare` (binary MACs per second over the popcount peak) is written for the packed rows.
    static func json(_ row: Row, rooflineShare: Double) -> String {
        "{\"engine\": \"\(row.engine)\", \"batch\": \(row.batch), \"images_per_second\": \(jsonNumber(row.imagesPerSecond)), "
            + "\"ms_per_batch\": \(jsonNumber(1000 * row.secondsPerBatch)), \"threads\": \(Kernels.threads)"
            + (row.engine == "packed" ? ", \"roofline_share\": \(jsonNumber(rooflineShare))" : "")
            + ", \"cpu\": \"\(Kernels.cpuDescription)\"}"
    }
}

/// A finite number as JSON (6 significant digits), else null.
func jsonNumber(_ value: Double) -> String { value.isFinite ? String(format: "%.6g", value) : "null" }

/// Wall-clock timing on the monotonic clock: warm-up, then the median of several samples.
enum Stopwatch {
    /// Median seconds per call of `body`: calls it for at least `warmupSeconds` (and twice) first, then takes
    /// `samples` samples of as many calls as fill about `sampleSeconds` (at least one) and returns the median of
    /// their per-call times.
    static func median(
        samples: Int, warmupSeconds: Double = 0.2, sampleSeconds: Double = 0.05, _ body: () throws -> Void
    ) rethrows -> Double {
        let now = TrainingProgress.monotonicSeconds
        var calls = 0
        var warmupStart = now()
        var lastCallSeconds = Double.infinity
        while calls < 2 || now() - warmupStart < warmupSeconds {
            let started = now()
            try body()
            lastCallSeconds = now() - started
            if calls == 0 { warmupStart = now() }  // the first call (allocations, page faults) does not count
            calls += 1
        }
        let perSample = max(1, Int((sampleSeconds / max(lastCallSeconds, 1e-9)).rounded(.up)))
        var times: [Double] = []
        for _ in 0..<samples {
            let started = now()
            for _ in 0..<perSample { try body() }
            times.append((now() - started) / Double(perSample))
        }
        times.sort()
        return times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
    }
}
