/// ResNet-18 for CIFAR-10 as the paper trains it, with the module layout of the authors' PyTorch model (state-dict
/// names and shapes identical: `conv1.weight`, `layer2.0.shortcut.0.weight`, `layer4.1.bn2.running_var`, ...):
///
///     stem:   conv1 (3×3, 3→64, real) → ReLU → bn1
///     layer1…layer4: 2 blocks each at 64, 128, 256, 512 channels (stride 2 in the first block of 2, 3 and 4)
///     block:  out = bn1(ReLU(conv1(x))); out = bn2(ReLU(conv2(out))); out = out + shortcut(x)
///     head:   average pool → bn2 (BatchNorm1d(512)) → linear (512 → classes)
///
/// The shortcut is the identity, or, where the shape changes, a real-valued downsample `Sequential(Conv2d 1×1 with
/// the block's stride, BatchNorm2d)` in every variant. The authors pool with `avg_pool2d(out, 4)`, which on 32×32
/// images is the global average pool used here (so the network also runs on smaller test images). Initialisation:
/// PyTorch's defaults (U(±1/√fan_in) for convolution and linear weights and the linear bias; BN γ = 1, β = 0), in
/// declaration order from one generator seeded with `seed`.
public final class ResNet18: Module {
    /// One residual block (the authors' `BasicBlock_1w1a`).
    public final class BasicBlock: Module {
        /// First 3×3 convolution (carries the block's stride).
        public let conv1: Module
        /// Batch norm after the first convolution's ReLU.
        public let bn1: BatchNorm2d
        /// Second 3×3 convolution.
        public let conv2: Module
        /// Batch norm after the second convolution's ReLU, before the sum.
        public let bn2: BatchNorm2d
        /// Empty (the identity) or `Sequential(Conv2d 1×1, BatchNorm2d)`; keys `shortcut.0.weight`, `shortcut.1.*`.
        public let shortcut: Sequential
        /// The ReLUs after the convolutions.
        public let relu: ReLU

        init(
            inputChannels: Int, channels: Int, stride: Int, variant: NetworkVariant, estimator: any SignEstimator,
            reluGradientAtZero: Float, generator: inout Xoshiro256StarStar
        ) throws {
            (conv1, bn1, conv2, bn2, shortcut, relu) = try basicBlockModules(
                inputChannels: inputChannels, channels: channels, stride: stride, variant: variant, estimator: estimator,
                reluGradientAtZero: reluGradientAtZero, generator: &generator)
            super.init()
        }

        /// `[N, H, W, in]` → `[N, H/stride, W/stride, channels]`.
        public override func callAsFunction(_ x: Tensor) throws -> Tensor {
            var out = try bn1(reluOf: conv1(x))
            out = try bn2(reluOf: conv2(out))
            return try add(out, shortcut(x))
        }
    }

    /// The variant this model was built as.
    public let variant: NetworkVariant
    /// Real-valued stem convolution, 3×3, 3 → 64, no bias.
    public let conv1: Conv2d
    /// Batch norm after the stem's ReLU.
    public let bn1: BatchNorm2d
    /// Two blocks at 64 channels.
    public let layer1: [BasicBlock]
    /// Two blocks at 128 channels, the first with stride 2.
    public let layer2: [BasicBlock]
    /// Two blocks at 256 channels, the first with stride 2.
    public let layer3: [BasicBlock]
    /// Two blocks at 512 channels, the first with stride 2.
    public let layer4: [BasicBlock]
    /// Real-valued classifier, 512 → classes.
    public let linear: Linear
    /// Batch norm of the pooled 512 features (declared after `linear`, as in the authors' model).
    public let bn2: BatchNorm1d
    /// The stem's ReLU (PyTorch's rule at 0, as the stem is real-valued).
    private let stemReLU: ReLU
    private let pool: GlobalAvgPool2d

    /// A freshly initialised network; `reluGradientAtZero` applies to the ReLUs after the block convolutions.
    public init(
        variant: NetworkVariant, estimator: any SignEstimator, classes: Int = 10, seed: UInt64,
        reluGradientAtZero: Float = 0
    ) throws {
        guard classes >= 1 else { throw BNNError(.module, "ResNet18: `classes` must be at least 1, got \(classes)") }
        var generator = Xoshiro256StarStar(seed: seed)
        self.variant = variant
        conv1 = try Conv2d(
            inputChannels: 3, outputChannels: 64, kernelSize: 3, stride: 1, padding: 1, bias: false,
            generator: &generator)
        bn1 = try BatchNorm2d(channels: 64)
        var inputChannels = 64
        func stage(_ channels: Int, stride: Int) throws -> [BasicBlock] {
            try [stride, 1].map { blockStride in
                defer { inputChannels = channels }
                return try BasicBlock(
                    inputChannels: inputChannels, channels: channels, stride: blockStride, variant: variant,
                    estimator: estimator, reluGradientAtZero: reluGradientAtZero, generator: &generator)
            }
        }
        layer1 = try stage(64, stride: 1)
        layer2 = try stage(128, stride: 2)
        layer3 = try stage(256, stride: 2)
        layer4 = try stage(512, stride: 2)
        linear = try Linear(inputFeatures: 512, outputFeatures: classes, generator: &generator)
        bn2 = try BatchNorm1d(features: 512)
        stemReLU = try ReLU()
        pool = GlobalAvgPool2d()
        super.init()
    }

    /// Logits `[N, classes]` for NHWC images `[N, H, W, 3]` (CIFAR: 32×32; any size divisible by 8 works).
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        var out = try bn1(stemReLU(conv1(x)))
        for block in layer1 + layer2 + layer3 + layer4 { out = try block(out) }
        return try linear(bn2(pool(out)))
    }
}
