import Glibc

/// The learning rate of each epoch (0-based): an optional linear warm-up of W epochs, then cosine annealing to 0.
///
///     e < W:   base · (e + 1) / W
///     e ≥ W:   base · (1 + cos(π · (e − W) / (E − W))) / 2
///
/// Without warm-up this is `torch.optim.lr_scheduler.CosineAnnealingLR(T_max=E, eta_min=0)` stepped once per
/// epoch: epoch 0 uses `base`, epoch E − 1 the last value before 0. With warm-up the last warm-up epoch uses
/// `base` and the cosine starts again from `base` at epoch W, reaching 0 at epoch E (docs/method.md §5). (The
/// authors' script differs slightly: it builds its scheduler with T_max = E − 4 and an offset start, so its lr
/// after warm-up is not exactly this curve; this library keeps the clean definition above.)
/// Epochs before 0 use epoch 0's rate; epochs from E on use 0.
public struct LearningRateSchedule: Sendable, Equatable {
    /// The rate at the top of the curve.
    public let baseLearningRate: Float
    /// E: the length of the run in epochs.
    public let epochs: Int
    /// W: epochs of linear warm-up (0 for none).
    public let warmupEpochs: Int

    /// A schedule over `epochs` epochs; call `validate()` to reject values that make no sense.
    public init(baseLearningRate: Float, epochs: Int, warmupEpochs: Int = 0) {
        self.baseLearningRate = baseLearningRate
        self.epochs = epochs
        self.warmupEpochs = warmupEpochs
    }

    /// Throws unless E ≥ 1, 0 ≤ W < E and the base rate is finite and ≥ 0.
    public func validate() throws {
        guard epochs >= 1 else { throw BNNError(.optimizer, "LearningRateSchedule: `epochs` must be at least 1, got \(epochs)") }
        guard warmupEpochs >= 0, warmupEpochs < epochs else {
            throw BNNError(.optimizer, 
                "LearningRateSchedule: `warmupEpochs` must be in 0..<epochs (\(epochs)), got \(warmupEpochs)")
        }
        guard baseLearningRate.isFinite, baseLearningRate >= 0 else {
            throw BNNError(.optimizer, "LearningRateSchedule: `baseLearningRate` must be finite and ≥ 0, got \(baseLearningRate)")
        }
    }

    /// The learning rate of epoch `epoch` (0-based).
    public func learningRate(epoch: Int) -> Float {
        let e = max(epoch, 0)
        guard e < epochs else { return 0 }
        let base = Double(baseLearningRate)
        if e < warmupEpochs { return Float(base * Double(e + 1) / Double(warmupEpochs)) }
        let warmup = max(warmupEpochs, 0)
        let progress = Double(e - warmup) / Double(epochs - warmup)
        return Float(base * (1 + cos(Double.pi * progress)) / 2)
    }
}
