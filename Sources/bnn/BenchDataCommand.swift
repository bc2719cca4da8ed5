import ArgumentParser
import BNN
import Foundation

/// `bnn bench data`: how fast the data pipeline prepares training (or evaluation) batches, without a network.
struct BenchDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Measure images/s of the data pipeline alone (decoding and transforms) on --data.",
        discussion: """
            Builds --batches batches of the training split (shuffled, random transforms) one after another on the \
            calling thread, each decoded and transformed by --data-threads threads, after one untimed batch; \
            --evaluation measures the evaluation split and transform instead. Reading the files is included (from the \
            page cache after the first pass). --synthetic DIR first writes a folder of photo-sized JPEGs (500×375, \
            quality 90, 4 classes of 32 training and 8 validation images) into DIR and measures on it; `bnn bench \
            train --data DIR` and `bnn train --data DIR` can use the same folder.
            """
    )

    @OptionGroup var dataOptions: DataOptions

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per batch.")
    var batchSize: Int = 64

    @Option(parsing: .unconditional, help: "Timed batches (they wrap to the next epoch).")
    var batches: Int = 10

    @Flag(help: "Measure the evaluation split and transform.")
    var evaluation = false

    @Option(help: "Write a generated folder of 500×375 JPEGs into this directory first, and measure on it.")
    var synthetic: String?

    @Option(name: .customLong("synthetic-images"), parsing: .unconditional,
            help: "With --synthetic: training images per class (4 classes; validation: a quarter as many).")
    var syntheticImages: Int = 32

    func validate() throws {
        try checkOption("--synthetic-images", syntheticImages, 4...100_000)
        if synthetic != nil && dataOptions.data != nil {
            throw ValidationError("--synthetic writes the data to measure: give it or --data, not both.")
        }
        try checkOption("--batch-size", batchSize, 1...Limits.batchSize)
        try checkOption("--batches", batches, 1...Limits.benchmarkSteps)
    }

    func run() throws {
        var dataOptions = self.dataOptions
        if let synthetic {
            let directory = URL(fileURLWithPath: synthetic)
            let layout = SyntheticImageFolder.Layout(
                trainingImagesPerClass: syntheticImages, validationImagesPerClass: max(1, syntheticImages / 4))
            let started = TrainingProgress.monotonicSeconds()
            let files = try SyntheticImageFolder.write(layout, to: directory)
            printError(String(format: "wrote %d JPEGs of %d×%d into %@ in %.1f s", files, layout.width, layout.height,
                              directory.path, TrainingProgress.monotonicSeconds() - started))
            dataOptions.data = directory.path
        }
        let split: any ImageSplit
        let description: String
        if evaluation {
            (split, description) = try dataOptions.evaluationData()
        } else {
            let data = try dataOptions.trainingData()
            (split, description) = (data.train, data.description)
        }
        let plan = try split.batchPlan(batchSize: min(batchSize, split.count), seed: 1, training: !evaluation)
        var epoch = plan.epochBatches(0)
        _ = try epoch.batch(at: 0)
        var images = 0
        let start = TrainingProgress.monotonicSeconds()
        for step in 1...batches {
            let index = step % plan.batchesPerEpoch
            if index == 0 { epoch = plan.epochBatches(step / plan.batchesPerEpoch) }
            images += try epoch.batch(at: index).count
        }
        let seconds = TrainingProgress.monotonicSeconds() - start
        print("""
            \(description)
            \(evaluation ? "evaluation" : "training") batches of \(split.imageShape): \(images) images in \
            \(String(format: "%.2f", seconds)) s, \(String(format: "%.1f", Double(images) / seconds)) images/s; \
            CPU \(Kernels.cpuDescription)
            """)
    }
}
