import ArgumentParser
import BNN
import BNNDistributed
import Foundation

/// `bnn train`: trains a registered network on CIFAR-10 with a chosen sign estimator and keeps the run's files.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a network (resnet20, resnet20-bireal, resnet18, vgg-small; 1W1A, 1W32A or full precision) on CIFAR-10 or image folders.",
        discussion: """
            The paper's recipe: SGD (momentum 0.9, weight decay 1e-4), cosine learning rate to 0 with an optional \
            linear warm-up, random crop and flip, ReSTE's power o annealed to --o-end. After each epoch the test \
            split (CIFAR-10) or val/ (image folders) is evaluated (batch 128, evaluation mode). Image folders \
            (--data DIR with DIR/train/<class>/* and DIR/val/<class>/*, JPEG or PNG) get torchvision's ImageNet \
            transforms (RandomResizedCrop and flip; Resize and CenterCrop), or the CIFAR-10 ones when their first \
            image is 32×32; the network gets one output per class.

            RUN_DIR receives log.jsonl (one JSON object per epoch: epoch, lr, o, train_loss, train_acc, val_loss, \
            val_acc, estimating_error, gradient_stability, seconds, images_per_second, ...), \
            checkpoint.safetensors (weights under PyTorch's state_dict names, optimizer state under "optimizer.", \
            metadata epoch/seed/config; written atomically after each epoch) and curves.svg (loss, accuracy and the \
            two indicators per epoch). A run locks its directory (train.lock, holding its PID): a second `bnn train` \
            into the same directory fails naming the first one's PID. Temporary files of a run killed while writing \
            are removed when the next run starts.

            Ctrl-C saves a checkpoint after the current step and exits; --resume continues exactly where the run \
            stopped (the same losses as an uninterrupted run with the same seed and thread count). A NaN or \
            infinite loss stops the run and leaves the last good checkpoint untouched. Without --data the CIFAR-10 \
            sample bundled with the package (\(DataLocation.bundledSample)) is used.

            Under Open MPI's mpirun (mpirun -np N bnn train ...) the ranks train data-parallel: each takes its part \
            of every batch (--batch-size is the whole batch), gradients are averaged over the ranks during the \
            backward pass, --sync-bn normalises over the whole batch, and rank 0 alone writes the run directory. \
            mpirun turns Ctrl-C into SIGTERM and kills the ranks a second later; kill -USR1 <mpirun's PID> stops \
            them after the current step without that limit. A rank silent for --rank-timeout + 5 seconds is named \
            and the job ends.
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Backward of sign() in the binary convolutions.")
    var estimator: EstimatorName = .reste

    @OptionGroup var dataOptions: DataOptions

    @Option(parsing: .unconditional, help: "Epochs; the learning-rate and estimator schedules span them.")
    var epochs: Int = 10

    @Option(help: "Run directory for log.jsonl, checkpoint.safetensors and curves.svg (default: runs/<model>-<estimator>-seed<seed>).")
    var out: String?

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Training images per step.")
    var batchSize: Int = 256

    @Option(parsing: .unconditional, help: "Base learning rate (default 0.1 for SGD, 0.001 for Adam).")
    var lr: Float?

    @Option(name: .customLong("o-end"), parsing: .unconditional, help: "ReSTE's final power o_end (≥ 1).")
    var oEnd: Float = 3

    @Option(parsing: .unconditional, help: "Epochs of linear learning-rate warm-up before the cosine (the paper's option is 5).")
    var warmup: Int = 0

    @Option(parsing: .unconditional, help: "Seed of the initial weights, the shuffling and the augmentation.")
    var seed: UInt64 = 0

    @Option(
        name: .customLong("relu-grad-at-zero"), parsing: .unconditional,
        help: "Gradient of the blocks' ReLUs where a convolution's output is exactly 0, in [0, 1] (PyTorch's rule: 0).")
    var reluGradientAtZero: Float = TrainingConfiguration.defaultReLUGradientAtZero

    @Option(help: "Optimizer: sgd (the paper's) or adam.")
    var optimizer: TrainingConfiguration.OptimizerKind = .sgd

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Continue the run saved in --out (same settings).")
    var resume = false

    @Flag(help: "No progress display (epoch lines and the summary are still printed).")
    var quiet = false

    @Flag(name: .customLong("sync-bn"), help: "Under mpirun: batch norm over the whole batch of all ranks rather than each rank's part.")
    var syncBatchNorm = false

    @Option(
        name: .customLong("rank-timeout"), parsing: .unconditional,
        help: "Under mpirun: seconds a rank waits for the others before asking them where they are; a rank silent 5 s more ends the job, named.")
    var rankTimeout: Double = 20

    func validate() throws {
        try checkOption("--epochs", epochs, 1...Int.max)
        try checkOption("--batch-size", batchSize, 1...Limits.batchSize)
        if let lr, !(lr.isFinite && lr >= 0) { throw ValidationError("--lr must be a finite number ≥ 0, got \(lr).") }
        guard oEnd.isFinite, oEnd >= 1 else { throw ValidationError("--o-end must be a finite number ≥ 1, got \(oEnd).") }
        guard warmup >= 0, warmup < epochs else {
            throw ValidationError("--warmup must be between 0 and --epochs − 1 (\(epochs - 1)), got \(warmup).")
        }
        guard reluGradientAtZero >= 0, reluGradientAtZero <= 1 else {
            throw ValidationError("--relu-grad-at-zero must be in [0, 1], got \(reluGradientAtZero).")
        }
        guard rankTimeout.isFinite, rankTimeout >= 1, rankTimeout <= 86_400 else {
            throw ValidationError("--rank-timeout must be between 1 and 86400 seconds, got \(rankTimeout).")
        }
    }

    /// The configuration the options describe.
    func trainingConfiguration() throws -> TrainingConfiguration {
        let (definition, variant) = try modelOptions.resolve()
        var configuration = TrainingConfiguration(epochs: epochs)
        configuration.model = definition.name
        configuration.variant = variant
        configuration.estimator = estimator.rawValue
        configuration.oEnd = oEnd
        configuration.batchSize = batchSize
        configuration.optimizer = optimizer
        configuration.learningRate = lr ?? (optimizer == .adam ? 0.001 : 0.1)
        configuration.warmupEpochs = warmup
        configuration.seed = seed
        configuration.reluGradientAtZero = reluGradientAtZero
        return configuration
    }

    /// `--out`, else runs/<model>[-a32|-fp][-<estimator>]-seed<seed>.
    func runDirectory(_ configuration: TrainingConfiguration) -> URL {
        if let out { return URL(fileURLWithPath: out) }
        let name: String
        switch configuration.variant {
        case .fullPrecision: name = "\(configuration.model)-fp"
        case .binaryWeights: name = "\(configuration.model)-a32-\(estimator.rawValue)"
        case .binary: name = "\(configuration.model)-\(estimator.rawValue)"
        }
        return URL(fileURLWithPath: "runs").appendingPathComponent("\(name)-seed\(seed)")
    }

    func run() throws {
        guard MPICollective.isLaunchedByMPI else {
            if syncBatchNorm { printError("note: --sync-bn has no effect in a single process (start with mpirun -np N)") }
            return try train(collective: nil)
        }
        let collective = try MPICollective.join(timeout: rankTimeout)
        do {
            try train(collective: collective)
        } catch is RankZeroFailed {
            throw ExitCode(1)   // rank 0 printed why
        } catch let exit as ExitCode {
            throw exit
        } catch where collective.rank != 0 {
            printError("rank \(collective.rank): \(error)")
            throw ExitCode(1)
        }
        collective.finalize()
    }

    /// Trains in this process, as one rank of `collective` when given.
    private func train(collective: MPICollective?) throws {
        if let collective {
            // Ranks sharing a machine share its cores.
            try applyRankThreads(collective, requested: threadOptions.threads)
        } else {
            try threadOptions.apply()
        }
        let data = try dataOptions.trainingData()
        let configuration = try trainingConfiguration()
        let dataParallel = collective.map { DataParallel(collective: $0, synchronizeBatchNorm: syncBatchNorm) }
        let trainer = try Trainer(
            configuration: configuration, training: data.train, validation: data.validation,
            runDirectory: runDirectory(configuration), resume: resume, dataParallel: dataParallel)
        let speaks = trainer.isWriter
        if speaks { trainer.progress = TrainingProgress.standardError(quiet: quiet) }
        for path in trainer.removedTemporaryFiles {
            printError("note: removed \(path), a temporary file left by a run killed while writing it")
        }

        if speaks {
            let ranks = collective.map { c in
                "\nranks: \(c.size)\(syncBatchNorm ? ", batch norm synchronised" : ""), \(configuration.batchSize / c.size) "
                    + "images per rank per step, \(Kernels.threads) thread\(Kernels.threads == 1 ? "" : "s") per rank"
            } ?? ""
            printError("""
                \(configuration.summary), \(configuration.epochs) epoch\(configuration.epochs == 1 ? "" : "s"), batch \(configuration.batchSize), \
                \(configuration.optimizer.rawValue) lr \(configuration.learningRate)\
                \(configuration.warmupEpochs > 0 ? " (warm-up \(configuration.warmupEpochs))" : ""), seed \(configuration.seed)
                data: \(data.description)
                threads: \(Kernels.threads), kernels \(Kernels.isa.name), OpenBLAS core \(Kernels.blasCore)\(ranks)
                run directory: \(trainer.runDirectory.path)\
                \(resume ? "\n" + resumeDescription(trainer) : "")
                """)
        }

        Interrupt.install(terminate: collective != nil)
        defer { Interrupt.uninstall() }
        trainer.shouldStop = { Interrupt.isRequested }
        let started = TrainingProgress.monotonicSeconds()
        let outcome = try trainer.run()
        let elapsed = TrainingProgress.monotonicSeconds() - started

        switch outcome {
        case .interrupted(let epoch, let step):
            let place = step > 0 ? "epoch \(epoch), step \(step)" : "epoch \(epoch - 1)"
            if speaks {
                printError("""
                    Interrupted: the state after \(place) is saved in \(trainer.checkpointURL.path).
                    Continue with the same command plus --resume\(out == nil ? " (and the same --out)" : "").
                    """)
            }
            collective?.finalize()
            throw ExitCode(130)
        case .paused, .finished:
            if speaks { printSummary(trainer, elapsed: elapsed) }
        }
    }

    private func resumeDescription(_ trainer: Trainer) -> String {
        let epochs = trainer.configuration.epochs
        if trainer.completedEpochs >= epochs { return "the run is already complete (\(epochs) epochs)" }
        let steps = trainer.stepsDoneInNextEpoch
        if steps > 0 { return "resuming epoch \(trainer.completedEpochs + 1) of \(epochs) at step \(steps + 1)" }
        return "resuming after epoch \(trainer.completedEpochs) of \(epochs)"
    }

    private func printSummary(_ trainer: Trainer, elapsed: Double) {
        let records = trainer.records
        guard let last = records.last else { return }
        var lines = ["\(trainer.configuration.summary): \(records.count) epoch(s) in \(trainer.runDirectory.path)"]
        if let best = records.filter({ $0.validationAccuracy != nil }).max(by: { $0.validationAccuracy! < $1.validationAccuracy! }),
           let lastAccuracy = last.validationAccuracy
        {
            lines.append("  validation top-1: last \(percent(lastAccuracy)) (epoch \(last.epoch)), "
                         + "best \(percent(best.validationAccuracy!)) (epoch \(best.epoch))")
        }
        lines.append("  train loss \(String(format: "%.4f", last.trainLoss)), train accuracy \(percent(last.trainAccuracy)); "
                     + "\(String(format: "%.0f", last.imagesPerSecond)) images/s in the last epoch")
        if elapsed > 0 { lines.append("  wall time of this invocation: \(String(format: "%.1f", elapsed)) s") }
        lines.append("  log:        \(trainer.logURL.path)")
        lines.append("  checkpoint: \(trainer.checkpointURL.path)")
        lines.append("  curves:     \(trainer.curvesURL.path)")
        print(lines.joined(separator: "\n"))
    }
}

extension TrainingConfiguration.OptimizerKind: ExpressibleByArgument {}
