import ArgumentParser
import BNN
import Foundation

/// `bnn infer`: top-1 accuracy and speed of a packed model on CIFAR-10's test split.
struct InferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Classify test_batch.bin with a packed model (.bnn): top-1, images/s, ms per image at batch 1.",
        discussion: """
            The images are decoded and normalised once, before any timing; the times are the packed engine's. \
            images/s: the median of 5 passes over the whole split in batches of --batch-size, after one untimed \
            pass (which gives the top-1). ms per image at batch 1: the first (up to) 100 images one at a time, \
            median of 7 samples of about 50 ms each, after a warm-up. Without --data the CIFAR-10 sample bundled \
            with the package (\(DataLocation.bundledSample)) is used.
            """
    )

    @Option(help: "The packed model (.bnn) written by `bnn export`.")
    var packed: String

    @OptionGroup var dataOptions: DataOptions

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per batch for the accuracy and images/s.")
    var batchSize: Int = 256

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Print {\"top1\": …, \"images\": …, \"images_per_second\": …, \"ms_per_image_batch1\": …} (top1 a fraction).")
    var json = false

    func validate() throws {
        try checkOption("--batch-size", batchSize, 1...Limits.batchSize)
    }

    func run() throws {
        try threadOptions.apply()
        let url = URL(fileURLWithPath: packed)
        let model = try PackedModel.load(contentsOf: url)
        let engine: PackedEngine
        do {
            engine = try PackedEngine(model: model)
        } catch let error as BNNError {
            throw CommandError("\(url.path): \(error.message)")
        }
        let (test, description) = try dataOptions.evaluationData()
        guard model.graph.input == test.imageShape else {
            throw CommandError(
                "\(url.path) takes \(model.graph.input) images (height, width, channels); the data's are \(test.imageShape).")
        }
        let epoch = try test.batchPlan(batchSize: min(batchSize, max(test.count, 1)), seed: 0, training: false).epochBatches(0)
        let batches = try (0..<epoch.count).map { try epoch.batch(at: $0) }
        let imageSize = test.imageShape.reduce(1, *)
        let imageCount = batches.reduce(0) { $0 + $1.count }

        var correct = 0
        for batch in batches {
            let logits = try engine.logits(images: batch.images, count: batch.count)
            correct += zip(PackedEngine.predictions(logits: logits, classes: engine.classes), batch.labels).filter { $0 == $1 }.count
        }
        let pass = try Stopwatch.median(samples: 5, warmupSeconds: 0, sampleSeconds: 0) {
            for batch in batches { _ = try engine.logits(images: batch.images, count: batch.count) }
        }
        let singles = batches.flatMap { batch in
            (0..<batch.count).map { Array(batch.images[($0 * imageSize)..<(($0 + 1) * imageSize)]) }
        }.prefix(100)
        var next = singles.startIndex
        let single = try Stopwatch.median(samples: 7) {
            _ = try engine.logits(images: singles[next], count: 1)
            next = next + 1 == singles.endIndex ? singles.startIndex : next + 1
        }

        let top1 = Double(correct) / Double(max(imageCount, 1))
        let imagesPerSecond = Double(imageCount) / pass
        if json {
            print("{\"top1\": \(jsonNumber(top1)), \"images\": \(imageCount), \"images_per_second\": \(jsonNumber(imagesPerSecond)), "
                + "\"ms_per_image_batch1\": \(jsonNumber(1000 * single)), \"batch_size\": \(batchSize), \"threads\": \(Kernels.threads)}")
        } else {
            print("""
                \(url.path) (\(model.graph.model)) on \(description)
                top-1 \(percent(top1)) (\(correct)/\(imageCount))
                \(String(format: "%.0f", imagesPerSecond)) images/s at batch \(batchSize) (median of 5 passes over the \
                \(imageCount) images), \(String(format: "%.4f", 1000 * single)) ms per image at batch 1 (\(singles.count) \
                images in turn, median of 7 samples)
                \(Kernels.threads) thread(s), kernels \(Kernels.isa.name)
                """)
        }
    }
}
