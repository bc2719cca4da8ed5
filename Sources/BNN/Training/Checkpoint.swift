import Foundation

/// `RUN_DIR/checkpoint.safetensors`: everything needed to continue a run exactly, in a file PyTorch can read.
///
/// Tensors: the model's state dict under PyTorch's names and shapes (F32, convolutions OIHW,
/// `num_batches_tracked` I64 scalars), and the optimizer's state under `optimizer.<parameter>.<field>` (e.g.
/// `optimizer.layer1.0.conv1.weight.momentum_buffer`). Metadata (strings): `format`, `format_version`,
/// `epoch` (completed epochs), `step` (steps done in the next epoch, non-zero only after Ctrl-C),
/// `partial_epoch` (the running sums of that epoch, JSON), `seed`, `config` (JSON of `TrainingConfiguration`),
/// and what the network was trained on: `classes` (e.g. "10") and `input_shape` (one image, JSON, e.g. "[32, 32, 3]"),
/// which `bnn eval` and `bnn export` use to build it (absent in checkpoints from before they were recorded).
///
/// In PyTorch: `sd = safetensors.torch.load_file(path)`, drop the keys starting with "optimizer.", then
/// `model.load_state_dict(sd)` on the paper's ResNet-20.
public struct Checkpoint: Sendable, Equatable {
    /// The file name inside a run directory.
    public static let fileName = "checkpoint.safetensors"
    /// Prefix of the optimizer's entries.
    public static let optimizerPrefix = "optimizer."
    /// The `format` metadata value.
    public static let format = "swift-bnn training checkpoint"
    /// The layout version written by this library.
    public static let formatVersion = 1

    /// The model's state dict.
    public var model: [String: SafeTensors.TensorData]
    /// The optimizer's state dict (keys without the prefix).
    public var optimizer: [String: SafeTensors.TensorData]
    /// Epochs completed.
    public var completedEpochs: Int
    /// Steps already done in epoch `completedEpochs + 1` (after an interruption), with their running sums.
    public var partialEpoch: PartialEpoch?
    /// The run's configuration (its seed included).
    public var configuration: TrainingConfiguration
    /// Logits per image of the network (nil: not recorded).
    public var classes: Int?
    /// One training image, `[H, W, C]` (nil: not recorded).
    public var inputShape: [Int]?

    /// A checkpoint of the given state.
    public init(
        model: [String: SafeTensors.TensorData], optimizer: [String: SafeTensors.TensorData], completedEpochs: Int,
        partialEpoch: PartialEpoch?, configuration: TrainingConfiguration, classes: Int? = nil, inputShape: [Int]? = nil
    ) {
        self.classes = classes
        self.inputShape = inputShape
        self.model = model
        self.optimizer = optimizer
        self.completedEpochs = completedEpochs
        self.partialEpoch = partialEpoch
        self.configuration = configuration
    }

    /// The metadata strings.
    public var metadata: [String: String] {
        var metadata = [
            "format": Checkpoint.format,
            "format_version": String(Checkpoint.formatVersion),
            "epoch": String(completedEpochs),
            "step": String(partialEpoch?.steps ?? 0),
            "seed": String(configuration.seed),
            "config": configuration.json,
        ]
        if let partialEpoch { metadata["partial_epoch"] = partialEpoch.json }
        if let classes { metadata["classes"] = String(classes) }
        if let inputShape { metadata["input_shape"] = JSONValue.array(inputShape.map { .integer($0) }).serialized(spaced: true) }
        return metadata
    }

    /// The `classes` and `input_shape` a file's metadata records (nil where absent); throws naming the entry when
    /// one is present but is not a positive count or a list of three positive sizes.
    public static func recordedData(_ metadata: [String: String], path: String) throws(TrainingError)
        -> (classes: Int?, inputShape: [Int]?)
    {
        var classes: Int?
        if let text = metadata["classes"] {
            guard let count = Int(text), count >= 1 else {
                throw .badCheckpoint(path: path, reason: "metadata classes \"\(text)\" is not a positive count")
            }
            classes = count
        }
        var inputShape: [Int]?
        if let text = metadata["input_shape"] {
            let sizes = try? JSONDecoder().decode([Int].self, from: Data(text.utf8))
            guard let sizes, sizes.count == 3, sizes.allSatisfy({ $0 >= 1 && $0 <= ImageFolder.maximumSide }) else {
                throw .badCheckpoint(
                    path: path, reason: "metadata input_shape \"\(text)\" is not [height, width, channels] of sizes 1...\(ImageFolder.maximumSide)")
            }
            inputShape = sizes
        }
        return (classes, inputShape)
    }

    /// Writes the file atomically (temporary file, flush, rename): a crash leaves the previous checkpoint.
    public func write(to url: URL) throws(TrainingError) {
        var tensors = model
        for (key, value) in optimizer {
            let name = Checkpoint.optimizerPrefix + key
            guard tensors[name] == nil else {
                throw .badCheckpoint(path: url.path, reason: "model and optimizer both have an entry \"\(name)\"")
            }
            tensors[name] = value
        }
        do {
            try SafeTensors.write(tensors, metadata: metadata, to: url)
        } catch {
            throw .io(path: url.path, reason: "cannot write the checkpoint: \(error)")
        }
    }

    /// Reads a checkpoint written by `write(to:)`, naming the missing or malformed entry on failure.
    public static func read(from url: URL) throws(TrainingError) -> Checkpoint {
        try read(bytes: try fileBytes(url), path: url.path)
    }

    /// The bytes of a checkpoint file (to parse with `read(bytes:path:)`, or to send to other ranks).
    public static func fileBytes(_ url: URL) throws(TrainingError) -> Data {
        do {
            return try FileAccess.readRegularFile(url.path)
        } catch {
            throw .badCheckpoint(path: url.path, reason: "cannot be read: \(error.reason)")
        }
    }

    /// Parses the bytes of a checkpoint; `path` names it in errors.
    public static func read(bytes: Data, path: String) throws(TrainingError) -> Checkpoint {
        let file: SafeTensorsFile
        do {
            file = try SafeTensors.parse(bytes, file: path)
        } catch {
            throw .badCheckpoint(path: path, reason: "\(error)")
        }
        let metadata = file.metadata
        func required(_ key: String) throws(TrainingError) -> String {
            guard let value = metadata[key] else {
                throw .badCheckpoint(
                    path: path,
                    reason: "metadata lacks \"\(key)\": not a training checkpoint of this library (for weights only, "
                        + "use `bnn eval --weights`)")
            }
            return value
        }
        guard let version = Int(try required("format_version")), version == formatVersion else {
            throw .badCheckpoint(
                path: path, reason: "format_version is \(metadata["format_version"] ?? "?"), this library reads \(formatVersion)")
        }
        guard let epoch = Int(try required("epoch")), epoch >= 0 else {
            throw .badCheckpoint(path: path, reason: "metadata epoch \"\(metadata["epoch"] ?? "")\" is not a count")
        }
        var configuration = try TrainingConfiguration(json: try required("config"), place: path)
        guard let seed = UInt64(try required("seed")) else {
            throw .badCheckpoint(path: path, reason: "metadata seed \"\(metadata["seed"] ?? "")\" is not a 64-bit integer")
        }
        configuration.seed = seed
        guard epoch <= configuration.epochs else {
            throw .badCheckpoint(path: path, reason: "metadata epoch \(epoch) exceeds the run's \(configuration.epochs) epochs")
        }
        let steps = Int(metadata["step"] ?? "0") ?? -1
        var partial: PartialEpoch?
        if steps > 0 {
            guard let text = metadata["partial_epoch"] else {
                throw .badCheckpoint(path: path, reason: "metadata step is \(steps) but partial_epoch is missing")
            }
            partial = try PartialEpoch(json: text, place: path)
            guard partial?.steps == steps else {
                throw .badCheckpoint(path: path, reason: "metadata step \(steps) disagrees with partial_epoch")
            }
            // The running sums are added to as training continues: values no run can reach would overflow there.
            if let partial, let problem = partial.inconsistency(batchSize: configuration.batchSize) {
                throw .badCheckpoint(path: path, reason: "metadata partial_epoch: \(problem)")
            }
        } else if steps < 0 {
            throw .badCheckpoint(path: path, reason: "metadata step \"\(metadata["step"] ?? "")\" is not a count")
        }
        let split = splitOptimizer(file.tensors)
        let recorded = try recordedData(metadata, path: path)
        return Checkpoint(
            model: split.model, optimizer: split.optimizer, completedEpochs: epoch, partialEpoch: partial,
            configuration: configuration, classes: recorded.classes, inputShape: recorded.inputShape)
    }

    /// Separates the optimizer's entries (prefix removed) from the model's.
    public static func splitOptimizer(_ tensors: [String: SafeTensors.TensorData])
        -> (model: [String: SafeTensors.TensorData], optimizer: [String: SafeTensors.TensorData])
    {
        var model: [String: SafeTensors.TensorData] = [:]
        var optimizer: [String: SafeTensors.TensorData] = [:]
        for (key, value) in tensors {
            if key.hasPrefix(optimizerPrefix) {
                optimizer[String(key.dropFirst(optimizerPrefix.count))] = value
            } else {
                model[key] = value
            }
        }
        return (model, optimizer)
    }
}

/// The running sums of an epoch cut short by Ctrl-C, so that the resumed epoch reports the same figures as an
/// uninterrupted one.
public struct PartialEpoch: Sendable, Equatable {
    /// Steps done.
    public var steps: Int = 0
    /// Images seen.
    public var images: Int = 0
    /// Σ step loss (each a batch mean), in step order.
    public var lossSum: Double = 0
    /// Images classified correctly.
    public var correct: Int = 0
    /// Σ estimating error over the steps.
    public var estimatingErrorSum: Double = 0
    /// Σ gradient stability over the steps.
    public var gradientStabilitySum: Double = 0
    /// The indicators after the last step done.
    public var lastEstimatingError: Double?
    public var lastGradientStability: Double?
    /// Seconds spent in the steps.
    public var seconds: Double = 0

    /// Nothing done yet.
    public init() {}

    /// The sums as a JSON object (numbers in their exact shortest form).
    public var json: String {
        JSONValue.object([
            ("steps", .integer(steps)), ("images", .integer(images)), ("loss_sum", .real(lossSum)),
            ("correct", .integer(correct)), ("estimating_error_sum", .real(estimatingErrorSum)),
            ("gradient_stability_sum", .real(gradientStabilitySum)),
            ("last_estimating_error", .real(lastEstimatingError)),
            ("last_gradient_stability", .real(lastGradientStability)),
            ("seconds", .real(seconds)),
        ]).serialized(spaced: true)
    }

    /// What makes these sums impossible for `steps` steps of `batchSize` images, or nil if nothing does: a negative
    /// count, more images than the steps can hold, more correct answers than images, a non-finite sum.
    func inconsistency(batchSize: Int) -> String? {
        let (capacity, overflow) = steps.multipliedReportingOverflow(by: batchSize)
        if steps < 0 || overflow { return "steps \(steps) is not a possible step count" }
        if images < 0 || images > capacity {
            return "images \(images) is not possible after \(steps) step(s) of at most \(batchSize) images"
        }
        if correct < 0 || correct > images { return "correct \(correct) is not in 0...\(images) (the images seen)" }
        let sums = [lossSum, estimatingErrorSum, gradientStabilitySum, seconds]
        if sums.contains(where: { !$0.isFinite }) { return "a running sum is not a finite number" }
        return nil
    }

    /// Reads `json` as written by `json`.
    public init(json: String, place: String) throws(TrainingError) {
        struct Fields: Decodable {
            var steps: Int
            var images: Int
            var loss_sum: Double
            var correct: Int
            var estimating_error_sum: Double
            var gradient_stability_sum: Double
            var last_estimating_error: Double?
            var last_gradient_stability: Double?
            var seconds: Double
        }
        let fields: Fields
        do {
            fields = try JSONDecoder().decode(Fields.self, from: Data(json.utf8))
        } catch {
            throw .badCheckpoint(path: place, reason: "metadata partial_epoch is unreadable: \(error)")
        }
        steps = fields.steps
        images = fields.images
        lossSum = fields.loss_sum
        correct = fields.correct
        estimatingErrorSum = fields.estimating_error_sum
        gradientStabilitySum = fields.gradient_stability_sum
        lastEstimatingError = fields.last_estimating_error
        lastGradientStability = fields.last_gradient_stability
        seconds = fields.seconds
    }
}
