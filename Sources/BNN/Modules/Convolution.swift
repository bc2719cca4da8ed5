/// Checks the shared arguments of the convolution layers, naming the layer and the argument.
func validateConvolution(
    _ layer: String, inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int, padding: Int
) throws {
    for (name, value) in [("inputChannels", inputChannels), ("outputChannels", outputChannels),
                          ("kernelSize", kernelSize), ("stride", stride)] where value < 1 {
        throw BNNError(.module, "\(layer): `\(name)` must be at least 1, got \(value)")
    }
    guard padding >= 0 else { throw BNNError(.module, "\(layer): `padding` must be at least 0, got \(padding)") }
}

/// A real-valued 2-d convolution layer (`torch.nn.Conv2d`): NHWC input, OIHW `weight`, optional `bias`, square
/// kernel, zero padding. Initialised as PyTorch does by default (U(±1/√fan_in) for weight and bias).
public final class Conv2d: Module {
    /// `[outputChannels, inputChannels, kernelSize, kernelSize]`.
    public let weight: Tensor
    /// `[outputChannels]`, or nil without bias.
    public let bias: Tensor?
    /// Step between output pixels.
    public let stride: Int
    /// Zero rows/columns added on each side.
    public let padding: Int

    /// A layer drawing its initial values from `generator`.
    public init(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        bias: Bool = true, generator: inout some RandomNumberGenerator
    ) throws {
        try validateConvolution(
            "Conv2d", inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
            stride: stride, padding: padding)
        weight = try Tensor.zeros(
            shape: [outputChannels, inputChannels, kernelSize, kernelSize], requiresGrad: true)
        self.bias = bias ? try Tensor.zeros(shape: [outputChannels], requiresGrad: true) : nil
        self.stride = stride
        self.padding = padding
        super.init()
        try Initialization.pytorchDefault(weight: weight, bias: self.bias, using: &generator)
    }

    /// A layer whose initial values come from a generator seeded with `seed`.
    public convenience init(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        bias: Bool = true, seed: UInt64 = 0
    ) throws {
        var generator = Xoshiro256StarStar(seed: seed)
        try self.init(
            inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
            padding: padding, bias: bias, generator: &generator)
    }

    /// `conv2d(x, weight, bias)`: `[N, H, W, inputChannels]` → `[N, OH, OW, outputChannels]`.
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }
}

/// A binary 2-d convolution layer: keeps a real-valued latent `weight` (OIHW, no bias) and convolves with
/// α·sign(weight), α = mean|weight|, over sign(x) (`binarizeInput`, 1W1A) or over x itself (1W32A). The
/// `estimator` says how gradients cross sign() for both weights and activations. Initialised like `Conv2d`
/// (the authors' binary conv is an `nn.Conv2d` subclass).
public final class BinaryConv2d: Module {
    /// Latent weight `[outputChannels, inputChannels, kernelSize, kernelSize]`, updated by the optimizer.
    public let weight: Tensor
    /// Step between output pixels.
    public let stride: Int
    /// Zero rows/columns added on each side (of the binarized input: padded positions count 0).
    public let padding: Int
    /// The backward of sign(); `setEpoch` on it moves its schedule.
    public var estimator: any SignEstimator
    /// True for 1W1A (activations binarized), false for 1W32A.
    public var binarizeInput: Bool

    /// A layer drawing its initial weight from `generator`.
    public init(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        estimator: any SignEstimator, binarizeInput: Bool = true, generator: inout some RandomNumberGenerator
    ) throws {
        try validateConvolution(
            "BinaryConv2d", inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
            stride: stride, padding: padding)
        weight = try Tensor.zeros(
            shape: [outputChannels, inputChannels, kernelSize, kernelSize], requiresGrad: true)
        self.stride = stride
        self.padding = padding
        self.estimator = estimator
        self.binarizeInput = binarizeInput
        super.init()
        try Initialization.pytorchDefault(weight: weight, bias: nil, using: &generator)
    }

    /// A layer whose initial weight comes from a generator seeded with `seed`.
    public convenience init(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        estimator: any SignEstimator, binarizeInput: Bool = true, seed: UInt64 = 0
    ) throws {
        var generator = Xoshiro256StarStar(seed: seed)
        try self.init(
            inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
            padding: padding, estimator: estimator, binarizeInput: binarizeInput, generator: &generator)
    }

    /// `binaryConv2d(x, weight)`: `[N, H, W, inputChannels]` → `[N, OH, OW, outputChannels]`.
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try binaryConv2d(
            x, weight: weight, stride: stride, padding: padding, estimator: estimator, binarizeInput: binarizeInput)
    }
}
