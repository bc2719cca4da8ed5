import Foundation
import Testing
@testable import BNN

/// Small random CIFAR-shaped data, so that a whole run takes seconds.
enum TrainingFixtures {
    static func split(count: Int, seed: UInt64) -> CIFAR10Split {
        var generator = Xoshiro256StarStar(seed: seed)
        let images = (0..<(count * CIFAR10.imageSize)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let labels = (0..<count).map { _ in UInt8(generator.next() % 10) }
        return CIFAR10Split(images: images, labels: labels)!
    }

    static let training = split(count: 64, seed: 11)
    static let validation = split(count: 24, seed: 12)

    static func configuration(epochs: Int = 2, estimator: String = "reste") -> TrainingConfiguration {
        var configuration = TrainingConfiguration(epochs: epochs)
        configuration.batchSize = 32
        configuration.estimator = estimator
        configuration.seed = 7
        return configuration
    }

    static func trainer(
        _ directory: URL, _ configuration: TrainingConfiguration = configuration(), resume: Bool = false
    ) throws -> Trainer {
        let trainer = try Trainer(
            configuration: configuration, training: training, validation: validation, runDirectory: directory,
            resume: resume)
        trainer.evaluationBatchSize = 16
        trainer.shouldStop = { false }
        return trainer
    }
}

/// Runs `body` with one thread for the kernels and OpenBLAS (the setting under which resuming is exact),
/// then restores the previous kernel thread count. `Kernels.withSettings` also keeps the tests that go
/// through every kernel path and thread count from changing the settings in the middle of `body`.
private func withOneThread<R>(_ body: () throws -> R) throws -> R {
    let previous = Kernels.threads
    return try Kernels.withSettings(threads: 1) {
        try Kernels.setBLASThreads(1)
        defer { try? Kernels.setBLASThreads(previous) }
        return try body()
    }
}

/// Every figure of the records that does not depend on timing, as bit patterns.
private func trajectory(_ records: [EpochRecord]) -> [[UInt64?]] {
    records.map { record in
        [UInt64(record.epoch), record.learningRate.bitPattern, record.o?.bitPattern, record.trainLoss.bitPattern,
         record.trainAccuracy.bitPattern, record.validationLoss?.bitPattern, record.validationAccuracy?.bitPattern,
         record.estimatingError?.bitPattern, record.gradientStability?.bitPattern,
         record.estimatingErrorMean?.bitPattern, record.gradientStabilityMean?.bitPattern, UInt64(record.steps),
         UInt64(record.images)]
    }
}

@Suite("Training: trainer, checkpoints, resume", .serialized)
struct TrainingTrainerTests {
    @Test("resuming after an epoch, or after Ctrl-C inside an epoch, reproduces the uninterrupted run bit for bit")
    func resumeIsExact() throws {
        let root = try makeTrainingScratchDirectory("resume")
        defer { try? FileManager.default.removeItem(at: root) }
        try withOneThread {
            let straight = try TrainingFixtures.trainer(root.appendingPathComponent("straight"))
            #expect(try straight.run() == .finished)
            let reference = try TrainingLog.read(url: straight.logURL)
            #expect(reference.count == 2)
            #expect(reference.allSatisfy { $0.trainLoss.isFinite && $0.steps == 2 && $0.images == 64 })
            let referenceState = try Checkpoint.read(from: straight.checkpointURL)

            // 1 epoch, a new process (a new Trainer), then the rest.
            let pausedDirectory = root.appendingPathComponent("paused")
            let first = try TrainingFixtures.trainer(pausedDirectory)
            #expect(try first.run(untilEpoch: 1) == .paused(afterEpoch: 1))
            first.releaseRunDirectory()  // as the process ending would: the directory has one writer at a time
            let second = try TrainingFixtures.trainer(pausedDirectory, resume: true)
            #expect(second.completedEpochs == 1)
            #expect(try second.run() == .finished)
            #expect(trajectory(try TrainingLog.read(url: second.logURL)) == trajectory(reference))
            let pausedState = try Checkpoint.read(from: second.checkpointURL)
            #expect(pausedState.model == referenceState.model)
            #expect(pausedState.optimizer == referenceState.optimizer)

            // Ctrl-C after step 1 of epoch 2, then resume: the epoch continues at step 2.
            let interruptedDirectory = root.appendingPathComponent("interrupted")
            let third = try TrainingFixtures.trainer(interruptedDirectory)
            var stop = false
            third.afterStep = { epoch, step in stop = epoch == 2 && step == 1 }
            third.shouldStop = { stop }
            #expect(try third.run() == .interrupted(epoch: 2, step: 1))
            let saved = try Checkpoint.read(from: third.checkpointURL)
            #expect(saved.completedEpochs == 1 && saved.partialEpoch?.steps == 1)
            #expect(try TrainingLog.read(url: third.logURL).count == 1)
            third.releaseRunDirectory()
            let fourth = try TrainingFixtures.trainer(interruptedDirectory, resume: true)
            #expect(try fourth.run() == .finished)
            #expect(trajectory(try TrainingLog.read(url: fourth.logURL)) == trajectory(reference))
            let interruptedState = try Checkpoint.read(from: fourth.checkpointURL)
            #expect(interruptedState.model == referenceState.model)
            #expect(interruptedState.optimizer == referenceState.optimizer)
            #expect(interruptedState.partialEpoch == nil && interruptedState.completedEpochs == 2)
        }
    }

    @Test("the checkpoint holds PyTorch names and shapes, the optimizer state and the metadata, and round-trips")
    func checkpointRoundTrip() throws {
        let directory = try makeTrainingScratchDirectory("checkpoint")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trainer = try TrainingFixtures.trainer(directory)
        #expect(try trainer.run(untilEpoch: 1) == .paused(afterEpoch: 1))

        let file = try SafeTensors.read(trainer.checkpointURL)
        let conv = try #require(file.tensors["conv1.weight"])
        #expect(conv.dtype == .f32 && conv.shape == [16, 3, 3, 3])
        #expect(file.tensors["layer2.0.conv1.weight"]?.shape == [32, 16, 3, 3])
        #expect(file.tensors["linear.weight"]?.shape == [10, 64])
        let counter = try #require(file.tensors["layer1.0.bn1.num_batches_tracked"])
        #expect(counter.dtype == .i64 && counter.shape == [])
        #expect(try counter.int64s() == [2])
        #expect(file.tensors["optimizer.conv1.weight.momentum_buffer"]?.shape == [16, 3, 3, 3])
        // Without the optimizer's entries, exactly the model's state dict (what PyTorch's load_state_dict wants).
        let modelKeys = Set(file.tensors.keys.filter { !$0.hasPrefix("optimizer.") })
        #expect(modelKeys == Set(trainer.model.stateDictKeys()))
        #expect(file.metadata["epoch"] == "1" && file.metadata["seed"] == "7" && file.metadata["step"] == "0")
        #expect(file.metadata["format_version"] == "1")
        #expect(file.metadata["classes"] == "10" && file.metadata["input_shape"] == "[32, 32, 3]")
        let config = try #require(
            try JSONSerialization.jsonObject(with: Data(file.metadata["config"]!.utf8)) as? [String: Any])
        for key in ["model", "estimator", "o_end", "epochs", "batch_size", "lr", "warmup", "a32", "seed", "relu_grad_at_zero"] {
            #expect(config[key] != nil, "config lacks \(key)")
        }
        #expect(config["batch_size"] as? Int == 32 && config["estimator"] as? String == "reste")

        let checkpoint = try Checkpoint.read(from: trainer.checkpointURL)
        #expect(checkpoint.model == trainer.model.stateDict())
        #expect(checkpoint.optimizer == trainer.optimizer.stateDict())
        #expect(checkpoint.configuration == trainer.configuration)
        #expect(checkpoint.completedEpochs == 1 && checkpoint.partialEpoch == nil)
        #expect(!checkpoint.optimizer.isEmpty)

        // Loading into a differently initialised model and a fresh optimizer gives back the same state.
        let other = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 999)
        #expect(other.stateDict() != checkpoint.model)
        try other.loadStateDict(checkpoint.model)
        #expect(other.stateDict() == checkpoint.model)
        let optimizer = SGD(parameters: other.namedParameters(), learningRate: 0.1)
        try optimizer.loadStateDict(checkpoint.optimizer)
        #expect(optimizer.stateDict() == checkpoint.optimizer)

        // Rewriting the same checkpoint gives the same bytes.
        let copy = directory.appendingPathComponent("copy.safetensors")
        try checkpoint.write(to: copy)
        #expect(try Data(contentsOf: copy) == Data(contentsOf: trainer.checkpointURL))

        // A partial epoch survives the round trip exactly.
        var partial = PartialEpoch()
        partial.steps = 3
        partial.images = 70
        partial.lossSum = 0.1 + 0.2
        partial.correct = 9
        partial.estimatingErrorSum = 1.0 / 3
        partial.gradientStabilitySum = 1e-300
        partial.lastEstimatingError = 0.7
        partial.seconds = 2.5
        var interrupted = checkpoint
        interrupted.partialEpoch = partial
        try interrupted.write(to: copy)
        #expect(try Checkpoint.read(from: copy) == interrupted)
    }

    @Test("resume refuses a missing checkpoint and a different configuration; a new run refuses to overwrite one")
    func resumeChecks() throws {
        let directory = try makeTrainingScratchDirectory("resumechecks")
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect {
            _ = try TrainingFixtures.trainer(directory, resume: true)
        } throws: { "\($0)".contains("nothing to resume") }
        let trainer = try TrainingFixtures.trainer(directory, TrainingFixtures.configuration(epochs: 1))
        #expect(try trainer.run() == .finished)
        trainer.releaseRunDirectory()
        #expect {
            _ = try TrainingFixtures.trainer(directory, TrainingFixtures.configuration(epochs: 1))
        } throws: { "\($0)".contains("already holds a checkpoint") }
        var different = TrainingFixtures.configuration(epochs: 1)
        different.learningRate = 0.05
        #expect {
            _ = try TrainingFixtures.trainer(directory, different, resume: true)
        } throws: { error in
            guard case TrainingError.checkpointMismatch(_, let key, let old, let new) = error else { return false }
            return key == "lr" && old == "0.1" && new == "0.05"
        }
        // Resuming a finished run does nothing and says so through its outcome.
        let again = try TrainingFixtures.trainer(directory, TrainingFixtures.configuration(epochs: 1), resume: true)
        #expect(try again.run() == .finished)
        #expect(try TrainingLog.read(url: again.logURL).count == 1)
    }

    @Test("a NaN loss stops the run naming epoch and step, and the last good checkpoint stays as it was")
    func nanLoss() throws {
        let directory = try makeTrainingScratchDirectory("nan")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trainer = try TrainingFixtures.trainer(directory)
        // After step 1 of epoch 2, poison the classifier: step 2's loss is NaN.
        trainer.afterStep = { epoch, step in
            if epoch == 2 && step == 1 {
                (trainer.model as! ResNet20).linear.weight.withUnsafeMutableBufferPointer { $0[0] = .nan }
            }
        }
        var before = Data()
        var thrown: (any Error)?
        do {
            _ = try trainer.run(untilEpoch: 1)
            before = try Data(contentsOf: trainer.checkpointURL)
            _ = try trainer.run()
        } catch {
            thrown = error
        }
        let error = try #require(thrown)
        guard case TrainingError.nonFiniteLoss(let epoch, let step, let loss, let checkpoint) = error else {
            Issue.record("unexpected error \(error)")
            return
        }
        #expect(epoch == 2 && step == 2 && loss.isNaN && checkpoint == trainer.checkpointURL.path)
        let message = "\(error)"
        #expect(message.contains("epoch 2, step 2") && message.contains("last good checkpoint is kept"))
        #expect(try Data(contentsOf: trainer.checkpointURL) == before)
        #expect(try TrainingLog.read(url: trainer.logURL).map(\.epoch) == [1])

        // In the first epoch there is no checkpoint to keep, and the message says so.
        let fresh = try TrainingFixtures.trainer(directory.appendingPathComponent("first"))
        fresh.afterStep = { _, _ in (fresh.model as! ResNet20).linear.bias?.withUnsafeMutableBufferPointer { $0[0] = .infinity } }
        #expect {
            _ = try fresh.run()
        } throws: { "\($0)".contains("epoch 1, step 2") && "\($0)".contains("No checkpoint was written") }
        #expect(!FileManager.default.fileExists(atPath: fresh.checkpointURL.path))
    }

    @Test("log lines and curves after each epoch; indicators only for binary models; o only for ReSTE")
    func runFiles() throws {
        let directory = try makeTrainingScratchDirectory("files")
        defer { try? FileManager.default.removeItem(at: directory) }
        var fullPrecision = TrainingFixtures.configuration(epochs: 1, estimator: "ste")
        fullPrecision.variant = .fullPrecision
        let trainer = try TrainingFixtures.trainer(directory.appendingPathComponent("fp"), fullPrecision)
        #expect(try trainer.run() == .finished)
        let record = try #require(try TrainingLog.read(url: trainer.logURL).first)
        #expect(record.o == nil && record.estimatingError == nil && record.gradientStability == nil)
        #expect(record.validationAccuracy != nil && record.learningRate == 0.1)
        #expect(FileManager.default.fileExists(atPath: trainer.curvesURL.path))

        let ste = try TrainingFixtures.trainer(
            directory.appendingPathComponent("ste"), TrainingFixtures.configuration(epochs: 1, estimator: "ste"))
        #expect(try ste.run() == .finished)
        let steRecord = try #require(ste.records.first)
        #expect(steRecord.o == nil)
        let error = try #require(steRecord.estimatingError)
        let stability = try #require(steRecord.gradientStability)
        #expect(error > 0 && stability > 0)
        // The value after the last step is what the indicators give on the final weights.
        #expect(error == Indicators.estimatingError(weights: ste.model.binaryConvolutions.map(\.weight), o: 3))

        let reste = try TrainingFixtures.trainer(directory.appendingPathComponent("reste"))
        #expect(try reste.run() == .finished)
        #expect(reste.records.map(\.o) == [1, Double("\(ReSTE.power(epoch: 1, of: 2, oEnd: 3))")])
        #expect(reste.records.map(\.learningRate) == [0.1, 0.05])
        #expect(try String(contentsOf: reste.curvesURL, encoding: .utf8).contains("</svg>"))
    }
}

@Suite("Training: evaluation and weights files")
struct TrainingEvaluationTests {
    /// log-softmax cross-entropy and ranks in double precision, row by row.
    private func naive(_ logits: [Float], classes: Int, labels: [Int]) -> (loss: Double, top1: Int, top5: Int) {
        var loss = 0.0
        var top1 = 0
        var top5 = 0
        for (row, label) in labels.enumerated() {
            let values = logits[(row * classes)..<((row + 1) * classes)].map(Double.init)
            let maximum = values.max()!
            let logSum = log(values.map { exp($0 - maximum) }.reduce(0, +)) + maximum
            loss += logSum - values[label]
            let rank = values.enumerated().filter { $0.element > values[label] || ($0.element == values[label] && $0.offset < label) }.count
            if rank < 1 { top1 += 1 }
            if rank < 5 { top5 += 1 }
        }
        return (loss / Double(labels.count), top1, top5)
    }

    @Test("top-1, top-5 and loss equal a naive computation over the same logits, in evaluation mode")
    func evaluation() throws {
        let model = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 3)
        // Move the running statistics away from their initial values, so evaluation mode matters.
        let batch = try CIFAR10Batches.training(TrainingFixtures.training, batchSize: 64, seed: 1).batches(epoch: 0).batch(at: 0)
        _ = try model(batch.tensor())
        model.train()
        let result = try Evaluation.evaluate(model, on: TrainingFixtures.validation, batchSize: 10)
        #expect(model.isTraining)   // mode restored
        #expect(result.images == 24)

        model.eval()
        var logits: [Float] = []
        var labels: [Int] = []
        try withNoGrad {
            for batch in try CIFAR10Batches.evaluation(TrainingFixtures.validation, batchSize: 10).batches(epoch: 0) {
                logits += try model(batch.tensor()).scalars
                labels += batch.labels
            }
        }
        let expected = naive(logits, classes: 10, labels: labels)
        #expect(result.top1Correct == expected.top1 && result.top5Correct == expected.top5)
        #expect(abs(result.loss - expected.loss) <= 1e-5 * max(1, abs(expected.loss)))
        #expect(result.top5Correct >= result.top1Correct)

        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.json.utf8)) as? [String: Any])
        #expect(Set(json.keys).isSuperset(of: ["top1", "top5", "images"]))
        #expect((json["images"] as? Int) == 24)
        #expect((json["top1"] as? Double) == result.top1)
    }

    @Test("weights load from a checkpoint or a plain state dict; missing, unexpected and misshapen keys are named")
    func weights() throws {
        let directory = try makeTrainingScratchDirectory("weights")
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try ResNet20(variant: .binaryWeights, estimator: STE(), seed: 5)
        var state = source.stateDict()
        let checkpoint = Checkpoint(
            model: state, optimizer: ["linear.bias.momentum_buffer": state["linear.bias"]!], completedEpochs: 1,
            partialEpoch: nil, configuration: TrainingConfiguration())
        let checkpointURL = directory.appendingPathComponent("checkpoint.safetensors")
        try checkpoint.write(to: checkpointURL)
        let target = try ResNet20(variant: .binaryWeights, estimator: STE(), seed: 6)
        try ModelWeights.load(checkpointURL, into: target)
        #expect(target.stateDict() == state)

        // As saved from a DataParallel model: every key under "module.".
        let wrapped = directory.appendingPathComponent("wrapped.safetensors")
        try SafeTensors.write(Dictionary(uniqueKeysWithValues: state.map { ("module." + $0.key, $0.value) }), to: wrapped)
        let third = try ResNet20(variant: .binaryWeights, estimator: STE(), seed: 8)
        try ModelWeights.load(wrapped, into: third)
        #expect(third.stateDict() == state)

        let broken = directory.appendingPathComponent("broken.safetensors")
        state["linear.bias"] = nil
        state["layer3.2.conv2.weight"] = try SafeTensors.TensorData([Float](repeating: 0, count: 64 * 64), shape: [64, 64, 1, 1])
        state["fc.weight"] = state["linear.weight"]
        try SafeTensors.write(state, to: broken)
        #expect {
            try ModelWeights.load(broken, into: third)
        } throws: { error in
            let text = "\(error)"
            return text.contains(broken.path) && text.contains("linear.bias") && text.contains("fc.weight")
                && text.contains("layer3.2.conv2.weight") && text.contains("[64, 64, 3, 3]")
        }
        #expect(third.stateDict() == source.stateDict())   // a refused load changes nothing

        let missing = directory.appendingPathComponent("nothing.safetensors")
        #expect { try ModelWeights.load(missing, into: third) } throws: { "\($0)".contains("nothing.safetensors") }
    }
}

@Suite("Training: benchmark plumbing")
struct TrainingBenchmarkTests {
    @Test("a step's multiply-adds: forward, input and weight gradients of each convolution and linear layer, no dX of the stem")
    func stepMultiplyAdds() throws {
        var generator = Xoshiro256StarStar(seed: 1)
        let model = Sequential([
            try Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1, bias: false, generator: &generator),
            try BatchNorm2d(channels: 4),
            try BinaryConv2d(
                inputChannels: 4, outputChannels: 8, kernelSize: 3, stride: 2, padding: 1, estimator: ReSTE(),
                generator: &generator),
            try ReLU(),
            GlobalAvgPool2d(),
            try Linear(inputFeatures: 8, outputFeatures: 5, generator: &generator),
        ])
        // On 7×5 images: the stem gives 7×5 × 4 outputs of 3·3·3 products each (forward and dW only: the images need
        // no gradient); the binary convolution 4×3 × 8 outputs (rows (7 + 2 − 3)/2 + 1, columns (5 + 2 − 3)/2 + 1)
        // of 4·3·3; the classifier 5 outputs of 8. Batch norm, ReLU and the pool count none.
        let stem = 7 * 5 * 4 * 27, binary = 4 * 3 * 8 * 36, linear = 5 * 8
        #expect(stem == 3780 && binary == 3456 && linear == 40)
        let perImage = 2 * stem + 3 * (binary + linear)
        #expect(try TrainingBenchmark.stepMultiplyAdds(of: model, inputShape: [7, 5, 3], batch: 3) == Double(3 * perImage))
    }

    @Test("the replayed convolution gradients follow ResNet-20's convolutions; a tiny measurement yields consistent figures")
    func plumbing() throws {
        let model = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 1)
        let shapes = try TrainingBenchmark.convolutionShapes(of: model, inputShape: [32, 32, 3], batch: 4)
        #expect(shapes.count == 19)
        #expect(shapes[0].input == [4, 32, 32, 3] && !shapes[0].inputNeedsGradient && !shapes[0].binaryInput)
        #expect(shapes[1...].allSatisfy { $0.inputNeedsGradient && $0.binaryInput })
        #expect(shapes[7].input == [4, 32, 32, 16] && shapes[7].stride == 2 && shapes[7].weight == [32, 16, 3, 3])
        #expect(shapes[8].input == [4, 16, 16, 32])
        #expect(shapes[13].input == [4, 16, 16, 32] && shapes[13].stride == 2)
        #expect(shapes[18].input == [4, 8, 8, 64])
        // Multiply-adds: dW for every layer, dX for all but the stem; rows = output pixels.
        var expected = 0.0
        for shape in shapes {
            let out = (shape.input[1] + 2 * shape.padding - shape.weight[2]) / shape.stride + 1
            let product = Double(shape.input[0] * out * out) * Double(shape.weight[1] * 9) * Double(shape.weight[0])
            expected += product * (shape.inputNeedsGradient ? 2 : 1)
        }
        let replay = try BackwardConvolutionReplay(model: model, inputShape: [32, 32, 3], batch: 4)
        #expect(replay.multiplyAdds == expected)
        #expect(try replay.run() >= 0)

        let row = try TrainingBenchmark.measure(
            variant: .binary, estimator: "reste", batchSize: 8, steps: 2, warmupSteps: 1,
            data: TrainingBenchmark.syntheticData(images: 16))
        #expect(row.model == "resnet20-1w1a" && row.estimator == "reste" && row.batch == 8 && row.steps == 2)
        #expect(row.phases.map(\.name) == ["data", "forward", "backward", "optimizer", "indicators"])
        #expect(row.imagesPerSecond > 0 && row.secondsPerStep > 0)
        #expect(row.phases.map(\.seconds).reduce(0, +) <= row.secondsPerStep * 1.0001)
        #expect(row.estimatorSeconds > 0 && row.estimatorSeconds <= row.seconds("backward"))
        #expect(row.stepMultiplyAdds == (try TrainingBenchmark.stepMultiplyAdds(of: model, inputShape: [32, 32, 3], batch: 8)))
        // 16 images in batches of 8: the 3 steps end epoch 0 once, so two memory figures, none above the peak.
        #expect(row.residentBytes.count == 2 && row.residentBytes.allSatisfy { $0 > 0 && $0 <= row.peakResidentBytes }, "\(row.residentBytes), peak \(row.peakResidentBytes)")
    }

    @Test("a network of another input size and class count measures on synthetic images of its own size")
    func otherSizes() throws {
        let data = try TrainingBenchmark.syntheticImages(count: 6, shape: [24, 20, 3], classes: 7, seed: 2)
        #expect(data.count == 6 && data.imageShape == [24, 20, 3] && data.classCount == 7)
        let batch = try data.batchPlan(batchSize: 4, seed: 1, training: true).epochBatches(1).batch(at: 1)
        #expect(batch.count == 2 && batch.images.count == 2 * 24 * 20 * 3 && batch.labels.allSatisfy { (0..<7).contains($0) })
        #expect(batch.images.allSatisfy { $0 >= -2 && $0 < 2 })
        let row = try TrainingBenchmark.measure(
            network: "resnet18-imagenet", variant: .binary, estimator: "ste", batchSize: 3, steps: 2, warmupSteps: 1,
            data: TrainingBenchmark.syntheticImages(count: 6, shape: [40, 40, 3], classes: 5))
        #expect(row.model == "resnet18-imagenet-1w1a" && row.batch == 3 && row.imagesPerSecond > 0)
        #expect(throws: TrainingError.self) { try TrainingBenchmark.syntheticImages(count: 0, shape: [8, 8, 3], classes: 2) }
    }
}

@Suite("Training: stop between epochs")
struct TrainingStopBetweenEpochsTests {
    @Test("a stop asked for during evaluation ends the run before the next epoch, with the state saved")
    func stopAtBoundary() throws {
        let directory = try makeTrainingScratchDirectory("boundary")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trainer = try TrainingFixtures.trainer(directory)
        var stop = false
        trainer.shouldStop = { stop }
        #expect(try trainer.run(untilEpoch: 1) == .paused(afterEpoch: 1))
        // As if Ctrl-C came while epoch 1 was being evaluated: seen before epoch 2's first step.
        stop = true
        #expect(try trainer.run() == .interrupted(epoch: 2, step: 0))
        let saved = try Checkpoint.read(from: trainer.checkpointURL)
        #expect(saved.completedEpochs == 1 && saved.partialEpoch == nil)
        #expect(saved.model == trainer.model.stateDict())
        #expect(try TrainingLog.read(url: trainer.logURL).count == 1)
    }
}

@Suite("Training: resume on other data")
struct TrainingResumeDataTests {
    @Test("resuming on images of another size or another class count is refused, naming what differs")
    func otherData() throws {
        let directory = try makeTrainingScratchDirectory("resume-data")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = TrainingConfiguration(epochs: 2)
        configuration.batchSize = 4
        let first = try Trainer(
            configuration: configuration,
            training: TrainingBenchmark.syntheticImages(count: 4, shape: [16, 16, 3], classes: 3), validation: nil,
            runDirectory: directory)
        first.shouldStop = { false }
        #expect(try first.run(untilEpoch: 1) == .paused(afterEpoch: 1))
        first.releaseRunDirectory()
        for (shape, classes, fragment) in [
            ([12, 12, 3], 3, "input_shape = [16, 16, 3], but this run asks for [12, 12, 3]"),
            ([16, 16, 3], 5, "classes = 3, but this run asks for 5"),
        ] {
            #expect {
                try Trainer(
                    configuration: configuration,
                    training: TrainingBenchmark.syntheticImages(count: 4, shape: shape, classes: classes), validation: nil,
                    runDirectory: directory, resume: true)
            } throws: { "\($0)".contains(fragment) }
        }
        // The same data resumes.
        let resumed = try Trainer(
            configuration: configuration,
            training: TrainingBenchmark.syntheticImages(count: 4, shape: [16, 16, 3], classes: 3), validation: nil,
            runDirectory: directory, resume: true)
        #expect(resumed.completedEpochs == 1)
    }
}
