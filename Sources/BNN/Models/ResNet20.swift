/// ResNet-20 for CIFAR-10 as the paper trains it (docs/method.md §4), with the PyTorch module layout of the authors'
/// code so that its state dict has the same names and shapes (`conv1.weight`, `layer2.0.bn1.running_mean`, ...):
///
///     stem:  conv1 (3×3, 3→16, real) → ReLU → bn1
///     layer1, layer2, layer3: 3 blocks each at 16, 32, 64 channels (stride 2 in the first block of 2 and 3)
///     block: out = bn1(ReLU(conv1(x))); out = bn2(ReLU(conv2(out))); out = out + shortcut(x)
///     head:  global average pool → bn2 (BatchNorm1d(64)) → linear (64 → classes)
///
/// The shortcut is option A (every second pixel, zero channels on each side) when the shape changes, identity
/// otherwise; nothing follows the addition. Block convolutions are binary (`.binary`: 1W1A,
/// `.binaryWeights`: 1W32A) or real (`.fullPrecision`, the same topology); the stem and the classifier are always
/// real. Initialisation: Kaiming normal (fan-in, ReLU gain) for every convolution and the linear weight, BN γ = 1,
/// β = 0, linear bias U(±1/√64) (PyTorch's default), all drawn from one generator seeded with `seed`.
public final class ResNet20: Module {
    /// Which convolutions of the blocks are binary.
    public typealias Variant = NetworkVariant

    /// One residual block (PyTorch's `BasicBlock_1w1a`): two 3×3 convolutions, each followed by ReLU then batch
    /// norm, plus the shortcut.
    public final class BasicBlock: Module {
        /// First 3×3 convolution (carries the block's stride): a `BinaryConv2d` or a `Conv2d`.
        public let conv1: Module
        /// Batch norm after the first convolution's ReLU.
        public let bn1: BatchNorm2d
        /// Second 3×3 convolution, stride 1.
        public let conv2: Module
        /// Batch norm after the second convolution's ReLU, before the sum.
        public let bn2: BatchNorm2d
        /// Zero channels added on each side by the option-A shortcut; nil for the identity shortcut.
        public let shortcutPadding: Int?
        /// The gradient the ReLUs after the convolutions pass at exactly 0 (see `ResNet20.reluGradientAtZero`).
        public let reluGradientAtZero: Float
        /// Bi-Real Net's wiring: a shortcut around each convolution instead of one around the block.
        public let biReal: Bool

        init(
            inputChannels: Int, channels: Int, stride: Int, variant: Variant, estimator: any SignEstimator,
            reluGradientAtZero: Float, biReal: Bool, generator: inout Xoshiro256StarStar
        ) throws {
            self.reluGradientAtZero = reluGradientAtZero
            self.biReal = biReal
            func convolution(_ input: Int, _ stride: Int) throws -> Module {
                try blockConvolution(
                    variant, inputChannels: input, outputChannels: channels, kernelSize: 3, stride: stride, padding: 1,
                    estimator: estimator, generator: &generator)
            }
            conv1 = try convolution(inputChannels, stride)
            bn1 = try BatchNorm2d(channels: channels)
            conv2 = try convolution(channels, 1)
            bn2 = try BatchNorm2d(channels: channels)
            // As the authors' LambdaLayer: x[:, :, ::2, ::2] padded by planes/4 channels on each side.
            shortcutPadding = stride != 1 || inputChannels != channels ? channels / 4 : nil
            super.init()
        }

        /// `[N, H, W, in]` → `[N, H/stride, W/stride, channels]`.
        public override func callAsFunction(_ x: Tensor) throws -> Tensor {
            var out = try bn1(reluOf: conv1(x), gradientAtZero: reluGradientAtZero)
            let shortcut = try shortcutPadding.map { try shortcutOptionA(x, channelPadding: $0, stride: 2) } ?? x
            if biReal {
                // out = bn1(ReLU(conv1(x))) + shortcut(x); out = bn2(ReLU(conv2(out))) + out.
                out = try add(out, shortcut)
                return try add(bn2(reluOf: conv2(out), gradientAtZero: reluGradientAtZero), out)
            }
            out = try bn2(reluOf: conv2(out), gradientAtZero: reluGradientAtZero)
            return try add(out, shortcut)
        }
    }

    /// The variant this model was built as.
    public let variant: Variant
    /// Real-valued stem convolution, 3×3, 3 → 16, no bias.
    public let conv1: Conv2d
    /// Batch norm after the stem's ReLU.
    public let bn1: BatchNorm2d
    /// Three blocks at 16 channels.
    public let layer1: [BasicBlock]
    /// Three blocks at 32 channels, the first with stride 2.
    public let layer2: [BasicBlock]
    /// Three blocks at 64 channels, the first with stride 2.
    public let layer3: [BasicBlock]
    /// Batch norm of the pooled 64 features.
    public let bn2: BatchNorm1d
    /// Real-valued classifier, 64 → classes.
    public let linear: Linear

    /// The gradient the ReLU after each convolution of the blocks passes where its input is exactly 0.
    ///
    /// A binary convolution's output is α × an integer, and the integer is 0 for a few percent of the outputs
    /// (3.7 % of one ResNet-20 layer at initialisation), so the rule at 0 matters, unlike in float networks.
    /// PyTorch's rule is 0. The reference implementation computes the same convolution in float, where those
    /// outputs come out as ±1e-7 of rounding noise and about four in ten of them pass the gradient.
    public let reluGradientAtZero: Float

    /// Whether the blocks are Bi-Real Net's (a shortcut around each convolution: the paper's "ResNet-20 Bi-Real").
    public let biReal: Bool

    /// A freshly initialised network; `estimator` is given to every binary convolution (unused by
    /// `.fullPrecision`); `reluGradientAtZero` (in [0, 1]) is the ReLUs' gradient at exactly 0 in the blocks;
    /// `biReal` wires each block as Bi-Real Net does (the same parameters and state-dict names).
    public init(
        variant: Variant, estimator: any SignEstimator, classes: Int = 10, seed: UInt64,
        reluGradientAtZero: Float = 0, biReal: Bool = false
    ) throws {
        guard classes >= 1 else { throw BNNError(.module, "ResNet20: `classes` must be at least 1, got \(classes)") }
        guard reluGradientAtZero >= 0, reluGradientAtZero <= 1 else {
            throw BNNError(.module, "ResNet20: `reluGradientAtZero` must be in [0, 1], got \(reluGradientAtZero)")
        }
        self.reluGradientAtZero = reluGradientAtZero
        self.biReal = biReal
        var generator = Xoshiro256StarStar(seed: seed)
        self.variant = variant
        conv1 = try Conv2d(
            inputChannels: 3, outputChannels: 16, kernelSize: 3, stride: 1, padding: 1, bias: false,
            generator: &generator)
        bn1 = try BatchNorm2d(channels: 16)
        var inputChannels = 16
        func stage(_ channels: Int, stride: Int) throws -> [BasicBlock] {
            try [stride, 1, 1].map { blockStride in
                defer { inputChannels = channels }
                return try BasicBlock(
                    inputChannels: inputChannels, channels: channels, stride: blockStride, variant: variant,
                    estimator: estimator, reluGradientAtZero: reluGradientAtZero, biReal: biReal,
                    generator: &generator)
            }
        }
        layer1 = try stage(16, stride: 1)
        layer2 = try stage(32, stride: 2)
        layer3 = try stage(64, stride: 2)
        bn2 = try BatchNorm1d(features: 64)
        linear = try Linear(inputFeatures: 64, outputFeatures: classes, generator: &generator)
        super.init()
        // The authors re-initialise every conv (binary ones included) and linear weight after construction;
        // the linear bias keeps its default draw.
        for (name, tensor) in namedParameters() where tensor.rank >= 2 && name.hasSuffix("weight") {
            try Initialization.kaimingNormal(tensor, using: &generator)
        }
    }

    /// Logits `[N, classes]` for NHWC images `[N, H, W, 3]` (CIFAR: 32×32).
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        var out = try bn1(reluOf: conv1(x))
        for block in layer1 + layer2 + layer3 { out = try block(out) }
        return try linear(bn2(globalAvgPool(out)))
    }
}
