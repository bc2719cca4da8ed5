/// VGG-small for CIFAR-10 as the paper trains it, with the module layout of the authors' PyTorch model (state-dict
/// names and shapes identical: `conv0.weight`, `bn0.*`, …, `conv5.weight`, `bn5.*`, `fc.weight`, `fc.bias`):
///
///     conv0 (3×3, 3→128, real) → ReLU → bn0
///     conv1 (128→128) → ReLU → bn1 → max-pool 2×2
///     conv2 (128→256) → ReLU → bn2;  conv3 (256→256) → ReLU → bn3 → max-pool 2×2
///     conv4 (256→512) → ReLU → bn4;  conv5 (512→512) → ReLU → bn5 → max-pool 2×2
///     flatten (PyTorch's channel-major order) → fc (512·H/8·W/8 → classes)
///
/// conv1…conv5 are binary in `.binary` (1W1A) and `.binaryWeights` (1W32A), real in `.fullPrecision` (the same
/// order of operations). All convolutions are 3×3 with padding 1 and no bias. Initialisation as the authors':
/// convolutions N(0, 2/(k·k·out)), BN γ = 1, β = 0, fc weight N(0, 0.01²) and bias 0, from one generator seeded
/// with `seed`. `inputShape` sizes the classifier (CIFAR: 32×32×3 gives 512·4·4 features).
public final class VGGSmall: Module {
    /// The variant this model was built as.
    public let variant: NetworkVariant
    /// Real-valued first convolution, 3 → 128.
    public let conv0: Conv2d
    /// Batch norm after conv0's ReLU.
    public let bn0: BatchNorm2d
    /// 128 → 128, followed by a pool.
    public let conv1: Module
    /// The 2×2 max-pool after conv1, conv3 and conv5 (one module, as in the authors' model).
    public let pooling: MaxPool2d
    /// Batch norm after conv1's ReLU.
    public let bn1: BatchNorm2d
    /// The ReLU after every convolution.
    public let nonlinear: ReLU
    /// 128 → 256.
    public let conv2: Module
    /// Batch norm after conv2's ReLU.
    public let bn2: BatchNorm2d
    /// 256 → 256, followed by a pool.
    public let conv3: Module
    /// Batch norm after conv3's ReLU.
    public let bn3: BatchNorm2d
    /// 256 → 512.
    public let conv4: Module
    /// Batch norm after conv4's ReLU.
    public let bn4: BatchNorm2d
    /// 512 → 512, followed by a pool.
    public let conv5: Module
    /// Batch norm after conv5's ReLU.
    public let bn5: BatchNorm2d
    /// Real-valued classifier on the flattened 512 × (H/8) × (W/8) features.
    public let fc: Linear
    private let flatten = Flatten()

    /// A freshly initialised network for images of `inputShape` (`[H, W, 3]`, H and W multiples of 8);
    /// `reluGradientAtZero` applies to the ReLUs after the convolutions.
    public init(
        variant: NetworkVariant, estimator: any SignEstimator, classes: Int = 10, seed: UInt64,
        reluGradientAtZero: Float = 0, inputShape: [Int] = [32, 32, 3]
    ) throws {
        guard classes >= 1 else { throw BNNError(.module, "VGGSmall: `classes` must be at least 1, got \(classes)") }
        guard inputShape.count == 3, inputShape[0] >= 8, inputShape[1] >= 8, inputShape[0] % 8 == 0,
              inputShape[1] % 8 == 0, inputShape[2] == 3
        else {
            throw BNNError(.module, 
                "VGGSmall: `inputShape` must be [H, W, 3] with H and W multiples of 8 (three 2×2 pools), got \(inputShape)")
        }
        var generator = Xoshiro256StarStar(seed: seed)
        self.variant = variant
        func binary(_ input: Int, _ output: Int) throws -> Module {
            try blockConvolution(
                variant, inputChannels: input, outputChannels: output, kernelSize: 3, stride: 1, padding: 1,
                estimator: estimator, generator: &generator)
        }
        conv0 = try Conv2d(
            inputChannels: 3, outputChannels: 128, kernelSize: 3, padding: 1, bias: false, generator: &generator)
        bn0 = try BatchNorm2d(channels: 128)
        conv1 = try binary(128, 128)
        pooling = try MaxPool2d(kernelSize: 2, stride: 2)
        bn1 = try BatchNorm2d(channels: 128)
        nonlinear = try ReLU(gradientAtZero: reluGradientAtZero)
        conv2 = try binary(128, 256)
        bn2 = try BatchNorm2d(channels: 256)
        conv3 = try binary(256, 256)
        bn3 = try BatchNorm2d(channels: 256)
        conv4 = try binary(256, 512)
        bn4 = try BatchNorm2d(channels: 512)
        conv5 = try binary(512, 512)
        bn5 = try BatchNorm2d(channels: 512)
        fc = try Linear(
            inputFeatures: 512 * (inputShape[0] / 8) * (inputShape[1] / 8), outputFeatures: classes,
            generator: &generator)
        super.init()
        for (name, tensor) in namedParameters() {
            if tensor.rank == 4 {
                let (out, kh, kw) = (tensor.shape[0], tensor.shape[2], tensor.shape[3])
                try Initialization.normal(tensor, std: Float((2 / Double(kh * kw * out)).squareRoot()), using: &generator)
            } else if name == "fc.weight" {
                try Initialization.normal(tensor, std: 0.01, using: &generator)
            } else if name == "fc.bias" {
                tensor.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            }
        }
    }

    /// Logits `[N, classes]` for NHWC images `[N, H, W, 3]`.
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        var out = try bn0(nonlinear(conv0(x)))
        out = try pooling(bn1(nonlinear(conv1(out))))
        out = try bn2(nonlinear(conv2(out)))
        out = try pooling(bn3(nonlinear(conv3(out))))
        out = try bn4(nonlinear(conv4(out)))
        out = try pooling(bn5(nonlinear(conv5(out))))
        return try fc(flatten(out))
    }
}
