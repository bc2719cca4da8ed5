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
            page cache after the first pass).
            """
    )

    @OptionGroup var dataOptions: DataOptions

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per batch.")
    var batchSize: Int = 64

    @Option(parsing: .unconditional, help: "Timed batches (they wrap to the next epoch).")
    var batches: Int = 10

    @Flag(help: "Measure the evaluation split and transform.")
    var evaluation = false

    func validate() throws {
        try checkOption("--batch-size", batchSize, 1...Limits.batchSize)
        try checkOption("--batches", batches, 1...Limits.benchmarkSteps)
    }

    func run() throws {
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
