import Foundation
import Testing
@testable import BNN

// Hostile and careless input: numbers that overflow size arithmetic, paths that are not what they seem, two runs
// in one directory, files left by a killed run. Each test names the defect it guards against.

@Suite("Hardening: run directory lock and leftovers", .serialized)
struct RunDirectoryLockTests {
    @Test("a second trainer on a locked directory fails naming the holder's PID and the directory; after release it works")
    func secondTrainerRefused() throws {
        let directory = try makeTrainingScratchDirectory("lock")
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try TrainingFixtures.trainer(directory, TrainingFixtures.configuration(epochs: 1))
        let lockFile = directory.appendingPathComponent(RunDirectoryLock.fileName)
        #expect(try String(contentsOf: lockFile, encoding: .utf8) == "\(getpid())\n")
        // Same process, another trainer: flock excludes it too (a process-wide fcntl lock would not).
        #expect {
            _ = try TrainingFixtures.trainer(directory, TrainingFixtures.configuration(epochs: 1))
        } throws: { error in
            guard case TrainingError.runDirectoryInUse(let path, let pid) = error else { return false }
            let message = "\(error)"
            return path == directory.path && pid == getpid() && message.contains("process \(getpid())")
                && message.contains("run directory \(directory.path) is in use") && message.contains(lockFile.path)
        }
        // The refused trainer touched nothing: no log line, no checkpoint from it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == ["log.jsonl", "train.lock"])

        #expect(try first.run() == .finished)
        first.releaseRunDirectory()
        #expect { _ = try first.run() } throws: { "\($0)".contains("released its run directory") }
        let second = try TrainingFixtures.trainer(directory, TrainingFixtures.configuration(epochs: 1), resume: true)
        #expect(second.completedEpochs == 1)
    }

    @Test("the lock goes with the trainer: destroying it frees the directory")
    func lockReleasedOnDeinit() throws {
        let directory = try makeTrainingScratchDirectory("lock-deinit")
        defer { try? FileManager.default.removeItem(at: directory) }
        var first: Trainer? = try TrainingFixtures.trainer(directory)
        #expect(first?.runDirectory == directory)
        first = nil
        _ = try TrainingFixtures.trainer(directory)
    }

    @Test("temporary files a killed writer left are removed at start and reported; other files are kept")
    func staleTemporaryFilesRemoved() throws {
        let directory = try makeTrainingScratchDirectory("leftovers")
        defer { try? FileManager.default.removeItem(at: directory) }
        let planted = [
            ".checkpoint.safetensors.tmp-4242-0123456789abcdef", ".log.jsonl.tmp-1-ff", ".curves.svg.tmp-77-a",
        ]
        // Not ours: another file's temporary name, a malformed suffix, a directory with a matching name.
        let kept = [".notes.txt.tmp-1-ff", ".checkpoint.safetensors.tmp-x-ff", "checkpoint.safetensors.tmp-1-ff"]
        for name in planted + kept {
            try Data(repeating: 7, count: 100).write(to: directory.appendingPathComponent(name))
        }
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent(".log.jsonl.tmp-5-5"), withIntermediateDirectories: false)

        let trainer = try TrainingFixtures.trainer(directory)
        #expect(trainer.removedTemporaryFiles == planted.sorted().map { directory.appendingPathComponent($0).path })
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
        #expect(left == Set(kept + [".log.jsonl.tmp-5-5", "log.jsonl", "train.lock"]))
        // The atomic writer's own names are the ones recognised.
        for name in [Checkpoint.fileName, "log.jsonl", "curves.svg"] {
            #expect(FileAccess.isTemporaryName(FileAccess.temporaryName(for: name), for: name))
            #expect(!FileAccess.isTemporaryName(FileAccess.temporaryName(for: name), for: "x" + name))
        }
    }

    @Test("a run directory under a regular file, or that is one, is named as such")
    func runDirectoryKinds() throws {
        let directory = try makeTrainingScratchDirectory("run-kinds")
        defer { try? FileManager.default.removeItem(at: directory) }
        let plain = directory.appendingPathComponent("plain")
        try Data([1]).write(to: plain)
        #expect {
            _ = try TrainingFixtures.trainer(plain.appendingPathComponent("run"))
        } throws: { "\($0)".contains("cannot create the run directory: a parent, \(plain.path), is a regular file, not a directory") }
        #expect {
            _ = try TrainingFixtures.trainer(plain)
        } throws: { "\($0)".contains("cannot create the run directory: exists and is a regular file, not a directory") }
        // Nested missing directories are created, as mkdir -p does.
        let nested = directory.appendingPathComponent("a/b/c")
        _ = try TrainingFixtures.trainer(nested)
        #expect(FileManager.default.fileExists(atPath: nested.appendingPathComponent("log.jsonl").path))
    }
}

@Suite("Hardening: limits and checked sizes")
struct LimitsTests {
    @Test("option messages say the range: ≥ the lower bound, ≤ the limit")
    func optionMessages() {
        #expect(Limits.violation(option: "--batch-size", value: -1, range: 1...Limits.batchSize) == "--batch-size must be ≥ 1, got -1.")
        #expect(Limits.violation(option: "--batch-size", value: Int.max, range: 1...Limits.batchSize)
            == "--batch-size must be ≤ 65536 (the limit), got 9223372036854775807.")
        #expect(Limits.violation(option: "--batch-size", value: 65_536, range: 1...Limits.batchSize) == nil)
        #expect(Limits.violation(option: "--warmup-steps", value: 0, range: 0...Limits.benchmarkSteps) == nil)
        #expect(Limits.violation(option: "--threads", value: Int.min, range: 1...Limits.threads) == "--threads must be ≥ 1, got \(Int.min).")
    }

    @Test("a batch size above the limit is refused by the pipeline and the configuration; batch counts never overflow")
    func batchSizeLimit() throws {
        let split = TrainingFixtures.split(count: 5, seed: 1)
        for size in [Limits.batchSize + 1, Int.max] {
            #expect(throws: CIFAR10Error.invalidArgument("batch size must be at most 65536 (the limit), found \(size)")) {
                _ = try CIFAR10Batches.evaluation(split, batchSize: size)
            }
            var configuration = TrainingConfiguration(epochs: 1)
            configuration.batchSize = size
            #expect(throws: TrainingError.invalidConfiguration("batch size must be at most 65536 (the limit), got \(size)")) {
                try configuration.validate()
            }
        }
        #expect(try CIFAR10Batches.evaluation(split, batchSize: Limits.batchSize).batchesPerEpoch == 1)
        #expect(try CIFAR10Batches.evaluation(split, batchSize: 2).batchesPerEpoch == 3)
        #expect(try CIFAR10Batches.evaluation(split, batchSize: 5).batchesPerEpoch == 1)
        // Evaluation takes any batch size the split can fill: the results do not depend on it.
        let model = try NetworkRegistry.named("resnet20")(NetworkOptions(seed: 3))
        let small = try Evaluation.evaluate(model, on: split, batchSize: 2)
        let whole = try Evaluation.evaluate(model, on: split, batchSize: Int.max)
        #expect(whole.images == 5 && whole.top1Correct == small.top1Correct && whole.top5Correct == small.top5Correct)
        #expect(abs(whole.loss - small.loss) < 1e-5)
        #expect(throws: (any Error).self) { _ = try Evaluation.evaluate(model, on: split, batchSize: 0) }
    }

    @Test("a benchmark refuses step counts past the limit before building anything")
    func benchmarkLimits() {
        let data = TrainingFixtures.split(count: 4, seed: 2)
        #expect(throws: TrainingError.invalidConfiguration("bench: steps must be ≤ 100000 (the limit), got \(Int.max).")) {
            _ = try TrainingBenchmark.measure(variant: .binary, estimator: "reste", batchSize: 4, steps: Int.max, warmupSteps: 1, data: data)
        }
        #expect(throws: TrainingError.invalidConfiguration("bench: warm-up steps must be ≥ 0, got -1.")) {
            _ = try TrainingBenchmark.measure(variant: .binary, estimator: "reste", batchSize: 4, steps: 1, warmupSteps: -1, data: data)
        }
    }

    @Test("a batch that cannot fit in memory is refused with the estimate, the memory and the largest batch")
    func memoryEstimate() throws {
        let model = try NetworkRegistry.named("resnet20")(NetworkOptions())
        let graph = try NetworkGraph.trace(model, inputShape: [32, 32, 3])
        let perImage = MemoryEstimate.trainingBytesPerImage(graph)
        // ResNet-20's training step grows by about 5.5 MB per image (measured); the estimate is within 10 %.
        #expect((5_000_000...5_600_000).contains(perImage))
        #expect(MemoryEstimate.evaluationBytesPerImage(graph) < perImage / 10)
        let gigabyte = 1_000_000_000
        try MemoryEstimate.requireFits(model, inputShape: [32, 32, 3], batchSize: 150, training: true, what: "x", available: gigabyte)
        #expect {
            try MemoryEstimate.requireFits(model, inputShape: [32, 32, 3], batchSize: 256, training: true,
                                           what: "resnet20 training", available: gigabyte)
        } throws: { error in
            let message = "\(error)"
            return message.contains("batch size 256 is too large for this machine: resnet20 training would need about 1.4 GB")
                && message.contains("the machine has 1.0 GB") && message.contains("largest batch that could fit is about \(gigabyte / perImage)")
        }
        // The product itself cannot overflow.
        #expect(throws: TrainingError.self) {
            try MemoryEstimate.requireFits(batchSize: Int.max, bytesPerImage: 1 << 40, what: "x", available: gigabyte)
        }
        #expect((MemoryEstimate.availableBytes ?? 0) > 0)
    }
}

@Suite("Hardening: checkpoints that no run writes", .serialized)
struct HostileCheckpointTests {
    @Test("resuming refuses NaN or infinite weights and momenta, naming the tensor and the element")
    func nonFiniteCheckpoint() throws {
        let directory = try makeTrainingScratchDirectory("nan-checkpoint")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trainer = try TrainingFixtures.trainer(directory)
        #expect(try trainer.run(untilEpoch: 1) == .paused(afterEpoch: 1))
        trainer.releaseRunDirectory()
        let original = try Checkpoint.read(from: trainer.checkpointURL)

        var poisoned = original
        let name = "layer1.0.conv1.weight"
        var values = try poisoned.model[name]!.floats()
        values[5] = .infinity
        poisoned.model[name] = try SafeTensors.TensorData(values, shape: poisoned.model[name]!.shape)
        try poisoned.write(to: trainer.checkpointURL)
        #expect {
            _ = try TrainingFixtures.trainer(directory, resume: true)
        } throws: { "\($0)".contains(#"tensor "layer1.0.conv1.weight" holds +infinity at element 5 (index [0, 0, 1, 2] of shape [16, 16, 3, 3])"#) }

        poisoned = original
        let momentum = original.optimizer.keys.sorted().first!
        var buffer = try poisoned.optimizer[momentum]!.floats()
        buffer[0] = .nan
        poisoned.optimizer[momentum] = try SafeTensors.TensorData(buffer, shape: poisoned.optimizer[momentum]!.shape)
        try poisoned.write(to: trainer.checkpointURL)
        #expect {
            _ = try TrainingFixtures.trainer(directory, resume: true)
        } throws: { "\($0)".contains(#"tensor "optimizer.\#(momentum)" holds NaN at element 0"#) }
    }

    @Test("a counter beyond 2^53 (num_batches_tracked = Int64.max) is refused at load, not overflowed by the next step")
    func hugeCounter() throws {
        let model = try NetworkRegistry.named("resnet20")(NetworkOptions())
        var state = model.stateDict()
        state["bn1.num_batches_tracked"] = try SafeTensors.TensorData([Int64.max], shape: [])
        #expect { try model.loadStateDict(state) } throws: { error in
            "\(error)".contains("bn1.num_batches_tracked")
                && "\(error)".contains("a counter must be at most 9007199254740992 (the limit), found 9223372036854775807")
        }
        state["bn1.num_batches_tracked"] = try SafeTensors.TensorData([Int64(1) << 53], shape: [])
        try model.loadStateDict(state)
        // The next training step adds to it without trapping.
        model.train()
        _ = try model(Tensor.zeros(shape: [2, 32, 32, 3]))
    }

    @Test("a checkpoint's epoch and running sums must be reachable by a run; huge counts are refused, not added to")
    func impossibleCounts() throws {
        let directory = try makeTrainingScratchDirectory("counts")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent(Checkpoint.fileName)
        let configuration = TrainingFixtures.configuration(epochs: 2)
        func write(epoch: Int, partial: PartialEpoch?) throws {
            try Checkpoint(model: [:], optimizer: [:], completedEpochs: epoch, partialEpoch: partial, configuration: configuration)
                .write(to: url)
        }
        try write(epoch: 3, partial: nil)
        #expect { _ = try Checkpoint.read(from: url) } throws: { "\($0)".contains("metadata epoch 3 exceeds the run's 2 epochs") }
        var partial = PartialEpoch()
        partial.steps = 1
        partial.images = Int.max
        try write(epoch: 1, partial: partial)
        #expect { _ = try Checkpoint.read(from: url) } throws: {
            "\($0)".contains("images \(Int.max) is not possible after 1 step(s) of at most 32 images")
        }
        partial.images = 32
        partial.correct = 33
        try write(epoch: 1, partial: partial)
        #expect { _ = try Checkpoint.read(from: url) } throws: { "\($0)".contains("correct 33 is not in 0...32") }
        partial.correct = 32
        try write(epoch: 1, partial: partial)
        #expect(try Checkpoint.read(from: url).partialEpoch == partial)
    }
}

@Suite("Hardening: file access")
struct FileAccessTests {
    @Test("reading names the kind of path; a limit is enforced before allocating")
    func reading() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("file-access")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("f")
        try Data(repeating: 1, count: 100).write(to: file)
        #expect(try FileAccess.readRegularFile(file.path) == Data(repeating: 1, count: 100))
        #expect(throws: FileAccessError(path: file.path, reason: "is 100 bytes, over the limit of 99 bytes")) {
            _ = try FileAccess.readRegularFile(file.path, limit: 99)
        }
        #expect(throws: FileAccessError(path: directory.path, reason: "is a directory")) {
            _ = try FileAccess.readRegularFile(directory.path)
        }
        #expect(throws: FileAccessError(path: "/dev/null", reason: "is not a regular file (it is a character device)")) {
            _ = try FileAccess.readRegularFile("/dev/null")
        }
        let empty = directory.appendingPathComponent("empty")
        try Data().write(to: empty)
        #expect(try FileAccess.readRegularFile(empty.path).isEmpty)
        #expect(throws: FileAccessError(path: directory.path + "/missing/x", reason: "its directory \(directory.path)/missing does not exist")) {
            _ = try FileAccess.readRegularFile(directory.path + "/missing/x")
        }
    }

    @Test("an atomic write that fails leaves the previous file and no temporary file")
    func failedWriteKeepsFile() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("file-access-write")
        defer {
            _ = chmod(directory.path, 0o755)
            try? FileManager.default.removeItem(at: directory)
        }
        let file = directory.appendingPathComponent("f")
        try FileAccess.writeAtomically([[1, 2], [3]], to: file.path)
        #expect(try Data(contentsOf: file) == Data([1, 2, 3]))
        try FileAccess.append([4], to: file.path)
        #expect(try Data(contentsOf: file) == Data([1, 2, 3, 4]))
        #expect(throws: FileAccessError(path: directory.path, reason: "is a directory")) {
            try FileAccess.append([4], to: directory.path)
        }
        // A directory the writer may not create files in (root ignores the mode, so only checked when it applies).
        if getuid() != 0 {
            #expect(chmod(directory.path, 0o555) == 0)
            #expect { try FileAccess.writeAtomically([[9]], to: file.path) } throws: { "\($0)".contains("permission denied") }
            #expect(try Data(contentsOf: file) == Data([1, 2, 3, 4]))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["f"])
    }
}
