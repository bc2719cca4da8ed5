// What the paper's networks share: which convolutions are binary, and the operations on every binary convolution of
// any module tree (the estimator's schedule, the indicators).

/// Which convolutions of a network are binary. The stem and the classifier (and real-valued shortcuts) stay real in
/// every variant; `.fullPrecision` keeps the topology of the binary network with real convolutions (its twin).
public enum NetworkVariant: String, Sendable, CaseIterable, Codable {
    /// Binary weights and activations (1W1A).
    case binary
    /// Binary weights, real activations (1W32A).
    case binaryWeights
    /// Real convolutions everywhere (the full-precision twin).
    case fullPrecision

    /// "1W1A", "1W32A" or "full precision".
    public var label: String {
        switch self {
        case .binary: return "1W1A"
        case .binaryWeights: return "1W32A"
        case .fullPrecision: return "full precision"
        }
    }

    /// "1w1a", "1w32a" or "fp": the short form in file names and packed files.
    public var shortName: String {
        switch self {
        case .binary: return "1w1a"
        case .binaryWeights: return "1w32a"
        case .fullPrecision: return "fp"
        }
    }
}

/// The convolution of a block in `variant`: a `BinaryConv2d` (1W1A or 1W32A) or a real `Conv2d` without bias.
func blockConvolution(
    _ variant: NetworkVariant, inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int, padding: Int,
    estimator: any SignEstimator, generator: inout Xoshiro256StarStar
) throws -> Module {
    switch variant {
    case .binary, .binaryWeights:
        return try BinaryConv2d(
            inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
            padding: padding, estimator: estimator, binarizeInput: variant == .binary, generator: &generator)
    case .fullPrecision:
        return try Conv2d(
            inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
            padding: padding, bias: false, generator: &generator)
    }
}

/// The modules of a ResNet basic block with a real downsample (ResNet-18 for CIFAR and for ImageNet): two 3×3
/// convolutions of `variant` (the first with the block's stride), their batch norms, the shortcut (empty for the
/// identity, else `Sequential(Conv2d 1×1 with the stride, BatchNorm2d)`, real in every variant) and the ReLU, created
/// in the authors' declaration order so that the generator's draws match theirs.
func basicBlockModules(
    inputChannels: Int, channels: Int, stride: Int, variant: NetworkVariant, estimator: any SignEstimator,
    reluGradientAtZero: Float, generator: inout Xoshiro256StarStar
) throws -> (conv1: Module, bn1: BatchNorm2d, conv2: Module, bn2: BatchNorm2d, shortcut: Sequential, relu: ReLU) {
    let conv1 = try blockConvolution(
        variant, inputChannels: inputChannels, outputChannels: channels, kernelSize: 3, stride: stride, padding: 1,
        estimator: estimator, generator: &generator)
    let bn1 = try BatchNorm2d(channels: channels)
    let conv2 = try blockConvolution(
        variant, inputChannels: channels, outputChannels: channels, kernelSize: 3, stride: 1, padding: 1,
        estimator: estimator, generator: &generator)
    let bn2 = try BatchNorm2d(channels: channels)
    let shortcut = stride != 1 || inputChannels != channels
        ? Sequential(
            try Conv2d(
                inputChannels: inputChannels, outputChannels: channels, kernelSize: 1, stride: stride, bias: false,
                generator: &generator),
            try BatchNorm2d(channels: channels))
        : Sequential()
    return (conv1, bn1, conv2, bn2, shortcut, try ReLU(gradientAtZero: reluGradientAtZero))
}

extension Module {
    /// Every binary convolution of the tree, in state-dict order. Their latent weights are what the paper's
    /// indicators measure, and their estimators what `setEstimatorEpoch` moves.
    public var binaryConvolutions: [BinaryConv2d] {
        namedModules().compactMap { $0.module as? BinaryConv2d }
    }

    /// Moves the schedule of every binary convolution's estimator to 0-based `epoch` of `epochs`.
    public func setEstimatorEpoch(_ epoch: Int, of epochs: Int) {
        for convolution in binaryConvolutions { convolution.estimator.setEpoch(epoch, of: epochs) }
    }
}
