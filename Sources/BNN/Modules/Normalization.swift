/// The state and parameters shared by the batch-norm layers; the subclasses differ only in the input rank.
public class BatchNormBase: Module {
    /// γ, `[channels]`, initialised to 1.
    public let weight: Tensor
    /// β, `[channels]`, initialised to 0.
    public let bias: Tensor
    /// Running mean and variance and the batch counter (PyTorch's buffers).
    public let statistics: BatchNormStatistics
    /// Added to the variance before the square root.
    public let eps: Float

    init(layer: String, channels: Int, eps: Float, momentum: Float?) throws {
        guard channels >= 1 else { throw BNNError(.module, "\(layer): `channels` must be at least 1, got \(channels)") }
        guard eps > 0 else { throw BNNError(.module, "\(layer): `eps` must be positive, got \(eps)") }
        if let momentum, !(momentum >= 0 && momentum <= 1) {
            throw BNNError(.module, "\(layer): `momentum` must be in [0, 1] or nil, got \(momentum)")
        }
        weight = try Tensor.ones(shape: [channels], requiresGrad: true)
        bias = try Tensor.zeros(shape: [channels], requiresGrad: true)
        statistics = try BatchNormStatistics(channels: channels, momentum: momentum)
        self.eps = eps
        super.init()
    }

    /// Number of channels (features).
    public var channels: Int { weight.count }

    /// PyTorch's buffer names; Swift property names cannot spell them.
    public override var customBuffers: [(name: String, buffer: ModuleBuffer)] {
        let statistics = statistics
        return [
            ("running_mean", .floats(statistics.runningMean)),
            ("running_var", .floats(statistics.runningVar)),
            ("num_batches_tracked", .integer(get: { statistics.numBatchesTracked }, set: { statistics.numBatchesTracked = $0 })),
        ]
    }
}

/// Batch normalisation over N·H·W per channel of an NHWC tensor (`torch.nn.BatchNorm2d`): batch statistics in
/// training mode (updating the running ones), running statistics in evaluation mode.
public final class BatchNorm2d: BatchNormBase {
    /// γ = 1, β = 0, running mean 0 and variance 1; PyTorch's defaults eps 1e-5 and momentum 0.1 (nil for a
    /// cumulative average).
    public init(channels: Int, eps: Float = 1e-5, momentum: Float? = 0.1) throws {
        try super.init(layer: "BatchNorm2d", channels: channels, eps: eps, momentum: momentum)
    }

    /// Normalises `[N, H, W, channels]`.
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try batchNorm2d(x, weight: weight, bias: bias, statistics: statistics, training: isTraining, eps: eps)
    }

    /// `self(relu(x, gradientAtZero:))` as one op (`batchNorm2d(reluOf:)`): the same values and gradients, one
    /// pass less in the backward.
    public func callAsFunction(reluOf x: Tensor, gradientAtZero: Float = 0) throws -> Tensor {
        try batchNorm2d(
            reluOf: x, gradientAtZero: gradientAtZero, weight: weight, bias: bias, statistics: statistics,
            training: isTraining, eps: eps)
    }
}

/// Batch normalisation per feature of `[N, features]` (`torch.nn.BatchNorm1d` on 2-d input), with the same
/// training and evaluation rules as `BatchNorm2d`.
public final class BatchNorm1d: BatchNormBase {
    /// γ = 1, β = 0, running mean 0 and variance 1; PyTorch's defaults eps 1e-5 and momentum 0.1.
    public init(features: Int, eps: Float = 1e-5, momentum: Float? = 0.1) throws {
        try super.init(layer: "BatchNorm1d", channels: features, eps: eps, momentum: momentum)
    }

    /// Normalises `[N, features]`.
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try batchNorm1d(x, weight: weight, bias: bias, statistics: statistics, training: isTraining, eps: eps)
    }
}
