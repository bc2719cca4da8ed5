import Foundation

/// Everything that decides what a training run computes: the model, the estimator and the recipe. Saved in every
/// checkpoint, so a resumed run can refuse to continue with different settings (which would not reproduce the
/// uninterrupted run). Threads, data directory and batch size of evaluation are not part of it: they change
/// speed, not the training trajectory.
public struct TrainingConfiguration: Sendable, Equatable {
    /// The optimizers a run can use.
    public enum OptimizerKind: String, Sendable, CaseIterable {
        /// SGD with momentum and weight decay, the paper's recipe.
        case sgd
        /// Adam with L2 weight decay.
        case adam
    }

    /// Model name: a registered network (`NetworkRegistry.names`), or the name of a network given to `Trainer`.
    public var model: String = "resnet20"
    /// 1W1A, 1W32A (`--a32`) or the full-precision twin.
    public var variant: NetworkVariant = .binary
    /// Estimator name (see `signEstimatorNames`).
    public var estimator: String = "reste"
    /// ReSTE's final power o_end (used by the estimating-error indicator whatever the estimator).
    public var oEnd: Float = 3
    /// Length of the run: the cosine schedules of the learning rate and of the estimator span it.
    public var epochs: Int = 1
    /// Training images per step.
    public var batchSize: Int = 256
    /// Base learning rate.
    public var learningRate: Float = 0.1
    /// Epochs of linear learning-rate warm-up before the cosine (0 for none).
    public var warmupEpochs: Int = 0
    /// The optimizer.
    public var optimizer: OptimizerKind = .sgd
    /// SGD's momentum.
    public var momentum: Float = 0.9
    /// L2 weight decay on every parameter.
    public var weightDecay: Float = 1e-4
    /// Fixes the initial weights, the order of the images and every augmentation draw.
    public var seed: UInt64 = 0
    /// The gradient of the ReLUs after the binary convolutions at exactly 0 (`NetworkOptions.reluGradientAtZero`).
    public var reluGradientAtZero: Float = TrainingConfiguration.defaultReLUGradientAtZero

    /// The default of `reluGradientAtZero` for new runs: 0.5, the mean of ReLU's slopes on either side.
    ///
    /// The reference implementation, computing binary convolutions in float, lets the gradient through about four
    /// in ten of the outputs whose exact value is 0 (rounding noise decides); PyTorch's exact rule, 0, lets none
    /// through. On the development split (10 epochs, seed 1) ResNet-20 1W1A with ReSTE reached 47.1 % top-1
    /// with 0.5 against 44.2 % with 0 (README, "Training").
    public static let defaultReLUGradientAtZero: Float = 0.5

    /// The paper's recipe for `epochs` epochs.
    public init(epochs: Int = 1) { self.epochs = epochs }

    /// Throws a message naming the first value out of range.
    public func validate() throws(TrainingError) {
        func fail(_ message: String) -> TrainingError { .invalidConfiguration(message) }
        guard !model.isEmpty, !model.contains(where: { $0.isNewline }) else {
            throw fail("the model name must be a non-empty line, got \(JSONValue.quoted(model))")
        }
        guard signEstimatorNames.contains(estimator) else {
            throw fail("unknown estimator `\(estimator)`; valid: \(signEstimatorNames.joined(separator: ", "))")
        }
        guard oEnd.isFinite, oEnd >= 1 else { throw fail("o_end must be a finite number ≥ 1, got \(oEnd)") }
        guard epochs >= 1 else { throw fail("epochs must be at least 1, got \(epochs)") }
        guard batchSize >= 1 else { throw fail("batch size must be at least 1, got \(batchSize)") }
        guard batchSize <= Limits.batchSize else {
            throw fail("batch size must be at most \(Limits.batchSize) (the limit), got \(batchSize)")
        }
        guard learningRate.isFinite, learningRate >= 0 else {
            throw fail("learning rate must be a finite number ≥ 0, got \(learningRate)")
        }
        guard warmupEpochs >= 0, warmupEpochs < epochs else {
            throw fail("warm-up must be in 0..<epochs (\(epochs)) epochs, got \(warmupEpochs)")
        }
        guard momentum.isFinite, momentum >= 0 else { throw fail("momentum must be finite and ≥ 0, got \(momentum)") }
        guard weightDecay.isFinite, weightDecay >= 0 else {
            throw fail("weight decay must be finite and ≥ 0, got \(weightDecay)")
        }
        guard reluGradientAtZero >= 0, reluGradientAtZero <= 1 else {
            throw fail("the ReLU gradient at 0 must be in [0, 1], got \(reluGradientAtZero)")
        }
    }

    /// A short human description, e.g. "resnet20 1W1A, ReSTE (o_end 3)".
    public var summary: String {
        let estimatorPart = variant == .fullPrecision
            ? "" : ", \(estimator == "reste" ? "ReSTE (o_end \(oEnd))" : estimator)"
        return "\(model) \(variant.label)\(estimatorPart)"
    }

    // MARK: Metadata

    /// The fields as (key, JSON value) pairs, in a fixed order; the keys of the `config` metadata entry.
    var jsonFields: [(key: String, value: JSONValue)] {
        [
            ("model", .string(model)),
            ("variant", .string(variant.rawValue)),
            ("a32", .bool(variant == .binaryWeights)),
            ("estimator", .string(estimator)),
            ("o_end", .real(oEnd)),
            ("epochs", .integer(epochs)),
            ("batch_size", .integer(batchSize)),
            ("lr", .real(learningRate)),
            ("warmup", .integer(warmupEpochs)),
            ("optimizer", .string(optimizer.rawValue)),
            ("momentum", .real(momentum)),
            ("weight_decay", .real(weightDecay)),
            ("seed", .integer(seed)),
            ("relu_grad_at_zero", .real(reluGradientAtZero)),
        ]
    }

    /// The configuration as one JSON object.
    public var json: String { JSONValue.object(jsonFields).serialized(spaced: true) }

    /// The file's keys; every one optional here so that a missing key is named, not a decoding failure.
    private struct Fields: Decodable {
        var model: String?
        var variant: String?
        var estimator: String?
        var o_end: Float?
        var epochs: Int?
        var batch_size: Int?
        var lr: Float?
        var warmup: Int?
        var optimizer: String?
        var momentum: Float?
        var weight_decay: Float?
        var seed: UInt64?
        var relu_grad_at_zero: Float?
    }

    /// Reads `json` as written by `json`; `place` names the source in errors.
    public init(json: String, place: String) throws(TrainingError) {
        let fields: Fields
        do {
            fields = try JSONDecoder().decode(Fields.self, from: Data(json.utf8))
        } catch let error as DecodingError {
            let context: DecodingError.Context?
            switch error {
            case .typeMismatch(_, let found), .valueNotFound(_, let found), .dataCorrupted(let found): context = found
            default: context = nil
            }
            guard let path = context?.codingPath, !path.isEmpty else {
                throw .badCheckpoint(path: place, reason: "metadata `config` is not a JSON object of the settings: \(error.localizedDescription)")
            }
            let key = path.map(\.stringValue).joined(separator: ".")
            throw .badCheckpoint(path: place, reason: "metadata `config` key \"\(key)\" has an unusable value")
        } catch {
            throw .badCheckpoint(path: place, reason: "metadata `config` is not valid JSON: \(error.localizedDescription)")
        }
        func value<T>(_ key: String, _ found: T?) throws(TrainingError) -> T {
            guard let found else { throw .badCheckpoint(path: place, reason: "metadata `config` lacks the key \"\(key)\"") }
            return found
        }
        func named<T: RawRepresentable<String>>(_ key: String, _ found: String?, as type: T.Type) throws(TrainingError) -> T {
            let text = try value(key, found)
            guard let converted = T(rawValue: text) else {
                throw .badCheckpoint(path: place, reason: "metadata `config` key \"\(key)\" has an unusable value \(JSONValue.quoted(text))")
            }
            return converted
        }
        self.init()
        model = try value("model", fields.model)
        variant = try named("variant", fields.variant, as: NetworkVariant.self)
        estimator = try value("estimator", fields.estimator)
        oEnd = try value("o_end", fields.o_end)
        epochs = try value("epochs", fields.epochs)
        batchSize = try value("batch_size", fields.batch_size)
        learningRate = try value("lr", fields.lr)
        warmupEpochs = try value("warmup", fields.warmup)
        optimizer = try named("optimizer", fields.optimizer, as: OptimizerKind.self)
        momentum = try value("momentum", fields.momentum)
        weightDecay = try value("weight_decay", fields.weight_decay)
        seed = try value("seed", fields.seed)
        // Checkpoints from before this setting existed were trained with PyTorch's rule, 0.
        reluGradientAtZero = fields.relu_grad_at_zero ?? 0
    }

    /// The first field in which `other` differs, as (key, this value, other value).
    func firstDifference(from other: TrainingConfiguration) -> (key: String, mine: String, other: String)? {
        for (mine, theirs) in zip(jsonFields, other.jsonFields) where mine.value != theirs.value {
            return (mine.key, mine.value.serialized(), theirs.value.serialized())
        }
        return nil
    }
}
