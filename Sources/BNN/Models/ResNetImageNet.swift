/// ResNet-18 and ResNet-34 for ImageNet as the paper trains them, with the module layout of the authors' PyTorch
/// models (state-dict names and shapes identical: `conv1.weight`, `layer2.0.downsample.0.weight`,
/// `layer4.1.bn2.running_var`, `bn2.weight`, `fc.weight`, ...):
///
///     stem:   conv1 (7×7, stride 2, 3→64, real) → ReLU → bn1 → max-pool 3×3, stride 2, padding 1
///     layer1…layer4: 2, 2, 2, 2 (ResNet-18) or 3, 4, 6, 3 (ResNet-34) blocks at 64, 128, 256, 512 channels,
///             stride 2 in the first block of layers 2, 3 and 4
///     block:  out = bn1(ReLU(conv1(x))) + downsample(x);  out = bn2(ReLU(conv2(out))) + out
///     head:   average pool → bn2 (BatchNorm1d(512)) → fc (512 → classes)
///
/// Each block carries a shortcut around each of its two convolutions (Bi-Real Net's wiring): the identity, or where
/// the shape changes a real-valued `downsample = Sequential(Conv2d 1×1 with the block's stride, BatchNorm2d)` in
/// every variant. The authors pool with `AvgPool2d(7)`, which on the 7×7 map of a 224×224 image is the global
/// average pool used here (so the network also runs on smaller images, as the tests give it). Initialisation as
/// the authors': every convolution weight (binary ones and the downsamples included) Kaiming-normal
/// N(0, 2/fan_in), batch norms γ = 1 and β = 0, the linear layer PyTorch's default U(±1/√fan_in); drawn in
/// declaration order from one generator seeded with `seed`.
public final class ResNetImageNet: Module {
    /// One residual block (the authors' `BasicBlock_1w1a`, and `BasicBlock` for the full-precision twin).
    public final class BasicBlock: Module {
        /// First 3×3 convolution (carries the block's stride).
        public let conv1: Module
        /// Batch norm after the first convolution's ReLU, before the first sum.
        public let bn1: BatchNorm2d
        /// Second 3×3 convolution.
        public let conv2: Module
        /// Batch norm after the second convolution's ReLU, before the second sum.
        public let bn2: BatchNorm2d
        /// Empty (the identity) or `Sequential(Conv2d 1×1, BatchNorm2d)`; keys `downsample.0.weight`,
        /// `downsample.1.*`.
        public let downsample: Sequential
        /// The ReLUs after the convolutions.
        public let relu: ReLU

        init(
            inputChannels: Int, channels: Int, stride: Int, variant: NetworkVariant, estimator: any SignEstimator,
            reluGradientAtZero: Float, generator: inout Xoshiro256StarStar
        ) throws {
            (conv1, bn1, conv2, bn2, downsample, relu) = try basicBlockModules(
                inputChannels: inputChannels, channels: channels, stride: stride, variant: variant, estimator: estimator,
                reluGradientAtZero: reluGradientAtZero, generator: &generator)
            super.init()
        }

        /// `[N, H, W, in]` → `[N, ⌈H/stride⌉, ⌈W/stride⌉, channels]`.
        public override func callAsFunction(_ x: Tensor) throws -> Tensor {
            let first = try add(bn1(reluOf: conv1(x)), downsample(x))
            return try add(bn2(reluOf: conv2(first)), first)
        }
    }

    /// The variant this model was built as.
    public let variant: NetworkVariant
    /// Real-valued stem convolution, 7×7, stride 2, padding 3, 3 → 64, no bias.
    public let conv1: Conv2d
    /// Batch norm after the stem's ReLU.
    public let bn1: BatchNorm2d
    /// Max-pool 3×3, stride 2, padding 1, after the stem.
    public let maxpool: MaxPool2d
    /// Blocks at 64 channels.
    public let layer1: [BasicBlock]
    /// Blocks at 128 channels, the first with stride 2.
    public let layer2: [BasicBlock]
    /// Blocks at 256 channels, the first with stride 2.
    public let layer3: [BasicBlock]
    /// Blocks at 512 channels, the first with stride 2.
    public let layer4: [BasicBlock]
    /// Batch norm of the pooled 512 features.
    public let bn2: BatchNorm1d
    /// Real-valued classifier, 512 → classes.
    public let fc: Linear
    /// The stem's ReLU (PyTorch's rule at 0, as the stem is real-valued).
    private let stemReLU: ReLU
    private let pool: GlobalAvgPool2d

    /// The blocks per layer of the depths the authors define: 18 → [2, 2, 2, 2], 34 → [3, 4, 6, 3].
    public static func blocks(depth: Int) throws -> [Int] {
        switch depth {
        case 18: return [2, 2, 2, 2]
        case 34: return [3, 4, 6, 3]
        default: throw BNNError(.module, "ResNetImageNet: `depth` must be 18 or 34, got \(depth)")
        }
    }

    /// A freshly initialised network of `depth` 18 or 34; `reluGradientAtZero` applies to the ReLUs after the
    /// block convolutions.
    public init(
        depth: Int, variant: NetworkVariant, estimator: any SignEstimator, classes: Int = 1000, seed: UInt64,
        reluGradientAtZero: Float = 0
    ) throws {
        let counts = try Self.blocks(depth: depth)
        guard classes >= 1 else {
            throw BNNError(.module, "ResNetImageNet: `classes` must be at least 1, got \(classes)")
        }
        var generator = Xoshiro256StarStar(seed: seed)
        self.variant = variant
        conv1 = try Conv2d(
            inputChannels: 3, outputChannels: 64, kernelSize: 7, stride: 2, padding: 3, bias: false,
            generator: &generator)
        bn1 = try BatchNorm2d(channels: 64)
        maxpool = try MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
        var inputChannels = 64
        func layer(_ channels: Int, blocks: Int, stride: Int) throws -> [BasicBlock] {
            try (0..<blocks).map { index in
                defer { inputChannels = channels }
                return try BasicBlock(
                    inputChannels: inputChannels, channels: channels, stride: index == 0 ? stride : 1,
                    variant: variant, estimator: estimator, reluGradientAtZero: reluGradientAtZero,
                    generator: &generator)
            }
        }
        layer1 = try layer(64, blocks: counts[0], stride: 1)
        layer2 = try layer(128, blocks: counts[1], stride: 2)
        layer3 = try layer(256, blocks: counts[2], stride: 2)
        layer4 = try layer(512, blocks: counts[3], stride: 2)
        bn2 = try BatchNorm1d(features: 512)
        fc = try Linear(inputFeatures: 512, outputFeatures: classes, generator: &generator)
        stemReLU = try ReLU()
        pool = GlobalAvgPool2d()
        super.init()
        // The authors re-initialise every convolution weight (binary ones included) after construction; the
        // linear layer keeps its default draw.
        for (name, tensor) in namedParameters() where tensor.rank == 4 && name.hasSuffix("weight") {
            try Initialization.kaimingNormal(tensor, using: &generator)
        }
    }

    /// Logits `[N, classes]` for NHWC images `[N, H, W, 3]` (ImageNet: 224×224; smaller images give smaller maps).
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        var out = try maxpool(bn1(stemReLU(conv1(x))))
        for block in layer1 + layer2 + layer3 + layer4 { out = try block(out) }
        return try fc(bn2(pool(out)))
    }
}
