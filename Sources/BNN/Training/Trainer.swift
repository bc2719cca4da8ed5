import Foundation

/// Trains a network (any `Module` mapping NHWC images to logits) on the batches of an `ImageSplit` (CIFAR-10's binary
/// files or an image folder) epoch by epoch, as the paper does, and keeps the run directory up to
/// date: `log.jsonl` (one line per epoch), `checkpoint.safetensors` (after each epoch, atomically) and
/// `curves.svg`.
///
/// Per epoch e (0-based) of E: the learning rate of the schedule, the estimators moved to epoch e, training
/// mode, then for each batch forward → cross-entropy → backward → optimizer step → indicators; then evaluation
/// on the validation split (evaluation mode, no gradients), the log line, the checkpoint and the curves.
///
/// A run stops early in three ways. A NaN or infinite loss throws `TrainingError.nonFiniteLoss` before the
/// step updates anything, and the checkpoint on disk stays the last good one. `shouldStop` is checked after
/// every step (`bnn train` wires it to Ctrl-C through `Interrupt`; the library reads no process-wide signal
/// state by itself): the state is saved with the epoch's running sums and `run()` returns `.interrupted`;
/// resuming continues at the next step. A checkpoint is never written with non-finite
/// parameters. Resuming (same seed, same thread count) reproduces the uninterrupted run bit for bit: batches,
/// augmentation, learning rate and estimator schedule are functions of (seed, epoch, step) only.
public final class Trainer {
    /// How a call to `run()` ended.
    public enum Outcome: Sendable, Equatable {
        /// Every epoch of the configuration is done.
        case finished
        /// Stopped by `shouldStop` after `step` steps of epoch `epoch` (1-based; step 0: before the epoch
        /// started); the state is saved.
        case interrupted(epoch: Int, step: Int)
        /// Stopped as asked by `run(untilEpoch:)` after that many epochs, before the configured end.
        case paused(afterEpoch: Int)
    }

    /// The recipe.
    public let configuration: TrainingConfiguration
    /// Where the log, checkpoint and curves go.
    public let runDirectory: URL
    /// The network being trained.
    public let model: Module
    /// Its optimizer.
    public let optimizer: any Optimizer
    /// The learning rate per epoch.
    public let schedule: LearningRateSchedule
    /// The training batches (shuffled and augmented per epoch from the seed).
    public let trainingBatches: any BatchPlan
    /// Images evaluated after each epoch; nil to skip evaluation.
    public let validation: (any ImageSplit)?
    /// Classes of the training split (the network's logits per image), recorded in the checkpoint.
    public let classes: Int
    /// One training image, `[H, W, C]`, recorded in the checkpoint.
    public let inputShape: [Int]
    /// Batch size of the evaluation (results do not depend on it).
    public var evaluationBatchSize = Evaluation.defaultBatchSize
    /// Where progress is shown.
    public var progress = TrainingProgress(style: .silent, write: { _ in })
    /// Checked after every step; true stops the run with its state saved. Never by default; for Ctrl-C, call
    /// `Interrupt.install()` and set this to `{ Interrupt.isRequested }`.
    public var shouldStop: () -> Bool = { false }
    /// Called after every step with the 1-based epoch and step (tests use it to inject failures).
    var afterStep: ((_ epoch: Int, _ step: Int) throws -> Void)?

    /// Epochs completed so far.
    public private(set) var completedEpochs: Int
    /// The epoch cut short by an interruption, continued by the next `run()`.
    private var partialEpoch: PartialEpoch?
    /// Steps already done in the next epoch (after an interruption); 0 at an epoch boundary.
    public var stepsDoneInNextEpoch: Int { partialEpoch?.steps ?? 0 }
    /// The records of the completed epochs.
    public var records: [EpochRecord] { log?.records ?? replicaRecords }

    /// The log file (rank 0 or a single process only).
    private let log: TrainingLog?
    /// The run directory's lock, held for the trainer's lifetime (rank 0 or a single process only).
    private let lock: RunDirectoryLock?
    /// This process's part in data-parallel training; nil for a single process.
    public let dataParallel: DataParallel?
    /// Whether this process writes the run's files: a single process, or rank 0 of several.
    public var isWriter: Bool { dataParallel.map { $0.collective.rank == 0 } ?? true }
    /// Epoch records of a rank other than 0, which keeps no log file.
    private var replicaRecords: [EpochRecord] = []
    /// Temporary files of an earlier writer killed mid-write (`.checkpoint.safetensors.tmp-PID-RANDOM` and the
    /// like), removed when this trainer took the directory; the caller may tell the user.
    public let removedTemporaryFiles: [String]
    /// Whether `checkpointURL` holds a checkpoint of this run (for error messages).
    private var checkpointWritten: Bool

    /// `RUN_DIR/checkpoint.safetensors`.
    public var checkpointURL: URL { runDirectory.appendingPathComponent(Checkpoint.fileName) }
    /// `RUN_DIR/log.jsonl`.
    public var logURL: URL { runDirectory.appendingPathComponent("log.jsonl") }
    /// `RUN_DIR/curves.svg`.
    public var curvesURL: URL { runDirectory.appendingPathComponent("curves.svg") }

    /// Prepares a run in `runDirectory` (created if needed). Without `resume` the directory must not hold a
    /// checkpoint already (so a finished run is never overwritten by accident); with `resume` it must, written
    /// with the same configuration, and training continues where it stopped.
    ///
    /// The trainer locks the directory for its lifetime (`RunDirectoryLock`): while it exists, another trainer on
    /// the same directory, in this process or another, fails with `TrainingError.runDirectoryInUse`. Temporary
    /// files that a killed writer left in the directory are then removed (`removedTemporaryFiles`). A batch size
    /// whose activations cannot fit in this machine's memory is refused first (`MemoryEstimate`).
    ///
    /// The network is `model` when given (any module; `configuration.model` then only names it in the log and
    /// the checkpoint), otherwise the registered network `configuration.model` built with the configuration's
    /// variant, estimator, seed and ReLU rule, for the training split's image shape and number of classes.
    /// The validation split must have the training split's image shape and classes.
    public init(
        configuration: TrainingConfiguration, model: Module? = nil, training: any ImageSplit,
        validation: (any ImageSplit)?, runDirectory: URL, resume: Bool = false, dataParallel: DataParallel? = nil
    ) throws {
        try configuration.validate()
        guard training.count > 0 else { throw TrainingError.invalidConfiguration("the training split holds no image") }
        classes = training.classCount
        inputShape = training.imageShape
        if let validation, validation.imageShape != training.imageShape || validation.classCount != training.classCount {
            throw TrainingError.invalidConfiguration(
                "the validation split has \(validation.classCount) classes of \(validation.imageShape) images, the training "
                    + "split \(training.classCount) classes of \(training.imageShape) images; they must agree")
        }
        self.configuration = configuration
        self.runDirectory = runDirectory
        self.validation = validation
        schedule = LearningRateSchedule(
            baseLearningRate: configuration.learningRate, epochs: configuration.epochs,
            warmupEpochs: configuration.warmupEpochs)
        try schedule.validate()
        trainingBatches = try training.batchPlan(batchSize: configuration.batchSize, seed: configuration.seed, training: true)
        if let model {
            self.model = model
        } else {
            let estimator = try makeEstimator(named: configuration.estimator, oEnd: configuration.oEnd)
            let definition: NetworkDefinition
            do {
                definition = try NetworkRegistry.named(configuration.model)
            } catch {
                throw TrainingError.invalidConfiguration("\(error)")
            }
            self.model = try definition(NetworkOptions(
                variant: configuration.variant, estimator: estimator, classes: training.classCount,
                seed: configuration.seed, reluGradientAtZero: configuration.reluGradientAtZero,
                inputShape: training.imageShape))
        }
        let model = self.model
        // Before anything is allocated for the batches or written to the run directory: a batch that cannot fit
        // would otherwise end the process in the first step (a failed allocation aborts).
        try MemoryEstimate.requireFits(
            model, inputShape: training.imageShape,
            batchSize: min(configuration.batchSize, training.count), training: true,
            what: "\(configuration.summary) training")
        switch configuration.optimizer {
        case .sgd:
            optimizer = SGD(
                parameters: model.namedParameters(), learningRate: configuration.learningRate,
                momentum: configuration.momentum, weightDecay: configuration.weightDecay)
        case .adam:
            optimizer = Adam(
                parameters: model.namedParameters(), learningRate: configuration.learningRate,
                weightDecay: configuration.weightDecay)
        }

        self.dataParallel = dataParallel
        let checkpointPath = runDirectory.appendingPathComponent(Checkpoint.fileName)
        // Rank 0 (or the only process) owns the run directory; under data parallelism it tells the other ranks
        // whether the run can start, with its settings and, when resuming, the checkpoint's bytes, so that only
        // rank 0 needs to see the directory (the ranks may run on machines that do not share it).
        var checkpointBytes: Data?
        let isWriter = dataParallel.map { $0.collective.rank == 0 } ?? true
        if isWriter {
            var files: RunFiles?
            var failure: (any Error)?
            do {
                files = try Trainer.takeRunDirectory(runDirectory, resume: resume)
            } catch {
                failure = error
            }
            lock = files?.lock
            removedTemporaryFiles = files?.removedTemporaryFiles ?? []
            checkpointBytes = files?.checkpoint
            if let collective = dataParallel?.collective {
                try StartAgreement(configuration: configuration, classes: classes, inputShape: inputShape,
                                   images: [training.count, validation?.count ?? 0],
                                   checkpoint: checkpointBytes, failed: failure != nil).send(collective)
            }
            if let failure { throw failure }
        } else {
            lock = nil
            removedTemporaryFiles = []
            let collective = dataParallel!.collective
            let agreement = try StartAgreement.receive(collective)
            try agreement.requireSame(
                configuration: configuration, classes: classes, inputShape: inputShape,
                images: [training.count, validation?.count ?? 0], rank: collective.rank)
            checkpointBytes = agreement.checkpoint
        }
        if let checkpointBytes {
            let checkpoint = try Checkpoint.read(bytes: checkpointBytes, path: checkpointPath.path)
            if let difference = checkpoint.configuration.firstDifference(from: configuration) {
                throw TrainingError.checkpointMismatch(
                    path: checkpointPath.path, key: difference.key, checkpoint: difference.mine,
                    requested: difference.other)
            }
            // The same images: a different image size or class count would not reproduce the run (and the weights of
            // another class count would not load). Checkpoints from before these were recorded are not checked.
            if let recorded = checkpoint.inputShape, recorded != inputShape {
                throw TrainingError.checkpointMismatch(
                    path: checkpointPath.path, key: "input_shape", checkpoint: "\(recorded)", requested: "\(inputShape)")
            }
            if let recorded = checkpoint.classes, recorded != classes {
                throw TrainingError.checkpointMismatch(
                    path: checkpointPath.path, key: "classes", checkpoint: String(recorded), requested: String(classes))
            }
            // Training from NaN weights or momenta would only fail later with a NaN loss and no hint why.
            if let bad = ModelWeights.firstNonFiniteElement(in: checkpoint.model)
                ?? ModelWeights.firstNonFiniteElement(in: checkpoint.optimizer).map({ element in
                    NonFiniteElement(tensor: Checkpoint.optimizerPrefix + element.tensor, index: element.index,
                                     position: element.position, shape: element.shape, value: element.value)
                })
            {
                throw TrainingError.badCheckpoint(path: checkpointPath.path, reason: "\(bad); this library never saves such a state")
            }
            do {
                try model.loadStateDict(checkpoint.model)
                try optimizer.loadStateDict(checkpoint.optimizer)
            } catch {
                throw TrainingError.badCheckpoint(path: checkpointPath.path, reason: "\(error)")
            }
            completedEpochs = checkpoint.completedEpochs
            partialEpoch = checkpoint.partialEpoch
            if let partial = partialEpoch, partial.steps > trainingBatches.batchesPerEpoch {
                throw TrainingError.badCheckpoint(
                    path: checkpointPath.path,
                    reason: "it stopped after step \(partial.steps) of an epoch, but this data has only "
                        + "\(trainingBatches.batchesPerEpoch) steps per epoch (a different training set?)")
            }
        } else {
            completedEpochs = 0
            // Every rank built the network from the same seed; rank 0's values are copied anyway, so that a network
            // initialised in any other way starts equal everywhere too.
            if let collective = dataParallel?.collective {
                for (name, tensor) in model.namedParameters() where tensor.count > 0 {
                    try tensor.withUnsafeMutableBufferPointer { values in
                        try collective.broadcast(UnsafeMutableRawBufferPointer(values), root: 0, what: "the initial \(name)")
                    }
                }
                try Trainer.broadcastBuffers(of: model, from: collective, what: "the initial buffers")
            }
        }
        checkpointWritten = checkpointBytes != nil
        log = isWriter
            ? try TrainingLog(url: runDirectory.appendingPathComponent("log.jsonl"), completedEpochs: completedEpochs)
            : nil
    }

    /// What the run directory holds for a new trainer.
    private struct RunFiles {
        let lock: RunDirectoryLock
        let removedTemporaryFiles: [String]
        /// The checkpoint's bytes when resuming.
        let checkpoint: Data?
    }

    /// Creates and locks the run directory, removes temporary files of a killed writer, and reads the checkpoint
    /// to resume (which must exist with `resume` and must not without).
    private static func takeRunDirectory(_ runDirectory: URL, resume: Bool) throws -> RunFiles {
        do {
            try FileAccess.createDirectory(runDirectory.path)
        } catch {
            throw TrainingError.io(path: runDirectory.path, reason: "cannot create the run directory: \(error.reason)")
        }
        // The lock comes before anything in the directory is read or written: from here on this trainer is the
        // directory's only writer, so temporary files found in it belong to no live writer.
        let lock = try RunDirectoryLock(directory: runDirectory)
        let removed = FileAccess.removeTemporaryFiles(
            in: runDirectory.path, for: [Checkpoint.fileName, "log.jsonl", "curves.svg"])
        let checkpointPath = runDirectory.appendingPathComponent(Checkpoint.fileName)
        let exists = FileManager.default.fileExists(atPath: checkpointPath.path)
        if resume {
            guard exists else {
                throw TrainingError.badCheckpoint(
                    path: checkpointPath.path, reason: "not found, so there is nothing to resume (run without --resume)")
            }
            return RunFiles(lock: lock, removedTemporaryFiles: removed, checkpoint: try Checkpoint.fileBytes(checkpointPath))
        }
        guard !exists else {
            throw TrainingError.invalidConfiguration(
                "\(runDirectory.path) already holds a checkpoint: pass --resume to continue that run, or "
                    + "choose another output directory")
        }
        return RunFiles(lock: lock, removedTemporaryFiles: removed, checkpoint: nil)
    }

    /// Lets another trainer take the run directory now rather than when this one is destroyed. The trainer cannot
    /// run after this: `run()` would throw.
    public func releaseRunDirectory() { lock?.release() }

    /// The state that a checkpoint of this moment would hold.
    public func checkpoint() -> Checkpoint {
        Checkpoint(
            model: model.stateDict(), optimizer: optimizer.stateDict(), completedEpochs: completedEpochs,
            partialEpoch: partialEpoch, configuration: configuration, classes: classes, inputShape: inputShape)
    }

    /// Trains until every epoch is done, `shouldStop` says to stop, or (if given) `untilEpoch` epochs are
    /// complete. The schedules always span the configured epochs, so stopping at an epoch and resuming later
    /// gives the same run as going through.
    public func run(untilEpoch limit: Int? = nil) throws -> Outcome {
        guard lock?.isHeld ?? !isWriter else {
            throw TrainingError.invalidConfiguration(
                "this trainer released its run directory \(runDirectory.path) and cannot write to it any more; create a new "
                    + "Trainer (with resume: true) to continue")
        }
        let step = TrainingStep(
            model: model, optimizer: optimizer, indicatorWeights: model.binaryConvolutions.map(\.weight),
            indicatorPower: configuration.oEnd)
        let collective = dataParallel?.collective
        if let dataParallel, averager == nil {
            averager = GradientAverager(
                parameters: model.namedParameters().map(\.tensor).filter(\.requiresGrad),
                collective: dataParallel.collective, bucketBytes: dataParallel.bucketBytes)
        }
        let epochs = configuration.epochs
        while completedEpochs < epochs {
            if let limit, completedEpochs >= limit { return .paused(afterEpoch: completedEpochs) }
            let epoch = completedEpochs   // 0-based index of the epoch being trained
            let number = epoch + 1
            // A stop asked for during the evaluation of the previous epoch is honoured before the next one.
            if try stopAgreed(place: "before epoch \(number)") {
                try saveCheckpoint()
                return .interrupted(epoch: number, step: partialEpoch?.steps ?? 0)
            }
            let learningRate = schedule.learningRate(epoch: epoch)
            optimizer.learningRate = learningRate
            model.setEstimatorEpoch(epoch, of: epochs)
            let power = (model.binaryConvolutions.first?.estimator as? ReSTE).map { Self.decimal($0.o) }
            model.train()

            var sums = partialEpoch ?? PartialEpoch()
            partialEpoch = nil
            let batches = trainingBatches.epochBatches(epoch)
            progress.beginEpoch(number, of: epochs, steps: batches.count, images: trainingBatches.imageCount)
            let remaining = ThrowingEpochSlice(
                batches, from: sums.steps, shard: collective?.rank ?? 0, of: collective?.size ?? 1)
            var lapStart = TrainingProgress.monotonicSeconds()
            for prepared in PrefetchingSequence(remaining, prefetch: 2) {
                let batch: ImageBatch
                do {
                    batch = try prepared.get()
                } catch {
                    progress.endEpoch()
                    throw error
                }
                let stepNumber = sums.steps + 1
                // Images skipped as unreadable left the batch empty, or with one image where batch norm needs two:
                // the step happens, without an update. Under data parallelism every rank needs an image (each runs
                // the network on its part), and the ranks agree on the batch's size first.
                let planned = min(configuration.batchSize, trainingBatches.imageCount - sums.steps * configuration.batchSize)
                var replica: TrainingStep.Replica?
                if let collective, let averager, let dataParallel {
                    collective.setPlace("epoch \(number), step \(stepNumber)")
                    let counts = try collective.sum(
                        [Double(batch.count), batch.count == 0 ? 1 : 0], what: "the images of step \(stepNumber)")
                    let images = Int(counts[0])
                    guard counts[1] == 0, images > 1 || planned == 1 else {
                        sums.steps = stepNumber
                        continue
                    }
                    replica = TrainingStep.Replica(
                        averager: averager, batchImages: images, synchronizeBatchNorm: dataParallel.synchronizeBatchNorm)
                } else {
                    guard batch.count > 1 || (batch.count == 1 && planned == 1) else {
                        sums.steps = stepNumber
                        continue
                    }
                }
                let result = try step.run(batch, replica: replica) { loss in
                    guard loss.isFinite else {
                        progress.endEpoch()
                        throw TrainingError.nonFiniteLoss(
                            epoch: number, step: stepNumber, loss: loss,
                            checkpoint: checkpointWritten ? checkpointURL.path : nil)
                    }
                }
                sums.steps = stepNumber
                sums.images += result.images
                sums.lossSum += Double(result.loss)
                sums.correct += result.correct
                if let error = result.estimatingError, let stability = result.gradientStability {
                    sums.estimatingErrorSum += error
                    sums.gradientStabilitySum += stability
                    sums.lastEstimatingError = error
                    sums.lastGradientStability = stability
                }
                let now = TrainingProgress.monotonicSeconds()
                sums.seconds += now - lapStart
                lapStart = now
                progress.update(
                    step: sums.steps, images: sums.images, loss: sums.lossSum / Double(sums.steps),
                    accuracy: Double(sums.correct) / Double(sums.images))
                try afterStep?(number, stepNumber)
                if try stopAgreed(place: "after step \(stepNumber) of epoch \(number)") {
                    partialEpoch = sums
                    try requireFiniteParameters(epoch: number)
                    try saveCheckpoint()
                    progress.endEpoch()
                    return .interrupted(epoch: number, step: sums.steps)
                }
            }
            progress.endEpoch()
            // Gradients are not needed past the last step's indicators; free them before evaluating.
            optimizer.zeroGrad()

            // Without synchronised batch norm each rank's running statistics follow its own images; rank 0's are
            // the ones its checkpoint keeps, so every rank evaluates with them (and resuming changes nothing).
            if let collective { try Trainer.broadcastBuffers(of: model, from: collective, what: "the running statistics after epoch \(number)") }

            var validationResult: EvaluationResult?
            if let validation {
                collective?.setPlace("the evaluation after epoch \(number)")
                var result = try Evaluation.evaluate(
                    model, on: validation, batchSize: evaluationBatchSize, shard: collective?.rank ?? 0,
                    of: collective?.size ?? 1)
                if let collective {
                    result = try result.summed(over: collective)
                }
                guard result.loss.isFinite else {
                    throw TrainingError.nonFiniteValidation(
                        epoch: number, loss: result.loss, checkpoint: checkpointWritten ? checkpointURL.path : nil)
                }
                validationResult = result
            }
            try requireFiniteParameters(epoch: number)

            let steps = Double(max(sums.steps, 1))
            let hasIndicators = sums.lastEstimatingError != nil
            let record = EpochRecord(
                epoch: number, learningRate: Self.decimal(learningRate), o: power,
                trainLoss: sums.lossSum / steps,
                trainAccuracy: sums.images > 0 ? Double(sums.correct) / Double(sums.images) : 0,
                validationLoss: validationResult?.loss, validationAccuracy: validationResult?.top1,
                estimatingError: sums.lastEstimatingError, gradientStability: sums.lastGradientStability,
                estimatingErrorMean: hasIndicators ? sums.estimatingErrorSum / steps : nil,
                gradientStabilityMean: hasIndicators ? sums.gradientStabilitySum / steps : nil,
                seconds: sums.seconds, imagesPerSecond: sums.seconds > 0 ? Double(sums.images) / sums.seconds : 0,
                steps: sums.steps, images: sums.images)
            if let log {
                // The log line goes first: if the process dies before the checkpoint, resuming drops the line and
                // trains the epoch again, so the log never runs ahead of the checkpoint.
                try log.append(record)
                completedEpochs = number
                try saveCheckpoint()
                try Curves.write(log.records, to: curvesURL, title: "\(configuration.summary), seed \(configuration.seed)")
            } else {
                completedEpochs = number
                replicaRecords.append(record)
            }
            progress.message(Self.describe(record))
        }
        return .finished
    }

    /// Gradient averaging of a data-parallel run, made at its first `run()`.
    private var averager: GradientAverager?

    /// Seconds a data-parallel run waited for gradient sums that the backward pass did not hide, and the bytes
    /// summed per step (nil for a single process).
    public var gradientExchange: (exposedSeconds: Double, bytesPerStep: Int)? {
        averager.map { ($0.exposedSeconds, $0.bytesPerStep) }
    }

    /// `shouldStop()`, agreed by all ranks: one rank asked to stop (Ctrl-C reaches each rank on its own) stops all of
    /// them at the same step.
    private func stopAgreed(place: String) throws -> Bool {
        let local = shouldStop()
        guard let collective = dataParallel?.collective else { return local }
        return try collective.sum([local ? 1 : 0], what: "the decision to stop \(place)")[0] > 0
    }

    /// Copies rank 0's buffers (batch norm's running statistics) to every rank.
    private static func broadcastBuffers(of model: Module, from collective: any Collective, what: String) throws {
        for (name, tensor) in model.namedBuffers() where tensor.count > 0 {
            try tensor.withUnsafeMutableBufferPointer { values in
                try collective.broadcast(UnsafeMutableRawBufferPointer(values), root: 0, what: "\(what): \(name)")
            }
        }
    }

    /// Writes the checkpoint of this moment (rank 0 or a single process; the other ranks hold the same state).
    private func saveCheckpoint() throws {
        guard isWriter else { return }
        try checkpoint().write(to: checkpointURL)
        checkpointWritten = true
    }

    /// One line about an epoch, for the terminal.
    public static func describe(_ record: EpochRecord) -> String {
        var text = "epoch \(record.epoch): lr \(String(format: "%.4g", record.learningRate))"
        if let o = record.o { text += " o \(String(format: "%.3f", o))" }
        text += " train loss \(String(format: "%.4f", record.trainLoss)) acc \(String(format: "%.2f", 100 * record.trainAccuracy))%"
        if let loss = record.validationLoss, let accuracy = record.validationAccuracy {
            text += " | val loss \(String(format: "%.4f", loss)) acc \(String(format: "%.2f", 100 * accuracy))%"
        }
        text += " | \(String(format: "%.1f", record.seconds)) s, \(String(format: "%.0f", record.imagesPerSecond)) img/s"
        return text
    }

    /// The double nearest to the shortest decimal of `value`: the log shows 0.1 rather than 0.10000000149011612.
    static func decimal(_ value: Float) -> Double { Double(value.description) ?? Double(value) }

    /// Throws naming the first parameter or buffer that holds NaN or infinity.
    private func requireFiniteParameters(epoch: Int) throws {
        for (name, tensor) in model.namedParameters() + model.namedBuffers() {
            let finite = tensor.withUnsafeBufferPointer { values in values.allSatisfy(\.isFinite) }
            if !finite {
                throw TrainingError.nonFiniteParameter(
                    epoch: epoch, name: name, checkpoint: checkpointWritten ? checkpointURL.path : nil)
            }
        }
    }
}
