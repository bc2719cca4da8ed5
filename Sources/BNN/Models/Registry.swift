/// How to build a registered network: everything but its name.
public struct NetworkOptions: Sendable {
    /// Which convolutions are binary.
    public var variant: NetworkVariant
    /// The backward of sign() for every binary convolution (unused by `.fullPrecision`).
    public var estimator: any SignEstimator
    /// Logits per image; nil for the network's own (`NetworkDefinition.classes`).
    public var classes: Int?
    /// Fixes the initial weights.
    public var seed: UInt64
    /// The gradient of the ReLUs after the binary convolutions at exactly 0 (PyTorch's rule is 0).
    public var reluGradientAtZero: Float
    /// One image, `[H, W, C]`; nil for the network's own (`NetworkDefinition.inputShape`).
    public var inputShape: [Int]?

    /// Options for a fresh network.
    public init(
        variant: NetworkVariant = .binary, estimator: any SignEstimator = ReSTE(), classes: Int? = nil, seed: UInt64 = 0,
        reluGradientAtZero: Float = 0, inputShape: [Int]? = nil
    ) {
        self.variant = variant
        self.estimator = estimator
        self.classes = classes
        self.seed = seed
        self.reluGradientAtZero = reluGradientAtZero
        self.inputShape = inputShape
    }
}

/// A network the commands can build by name: the name, what it is, the images it takes and its constructor.
public struct NetworkDefinition: Sendable {
    /// The name on the command line and in checkpoints and packed files, e.g. "resnet20".
    public let name: String
    /// One line for `--help` and summaries.
    public let summary: String
    /// One image as the network is defined for, `[H, W, C]` (CIFAR-10: 32×32×3).
    public let inputShape: [Int]
    /// Logits per image when the options do not say (CIFAR-10: 10, ImageNet: 1,000).
    public let classes: Int
    /// Builds a fresh network; the options it gets always name the classes.
    public let build: @Sendable (NetworkOptions) throws -> Module

    /// A definition; `build` must give the same state-dict keys for the same options.
    public init(
        name: String, summary: String, inputShape: [Int], classes: Int = 10,
        build: @escaping @Sendable (NetworkOptions) throws -> Module
    ) {
        self.name = name
        self.summary = summary
        self.inputShape = inputShape
        self.classes = classes
        self.build = build
    }

    /// A fresh network with `options` (the definition's classes unless they name others).
    public func callAsFunction(_ options: NetworkOptions) throws -> Module {
        var options = options
        options.classes = options.classes ?? classes
        return try build(options)
    }
}

/// The networks known by name: the paper's CIFAR-10 and ImageNet networks, each in the variants of
/// `NetworkVariant`, with the state-dict names and shapes of the authors' PyTorch models.
public enum NetworkRegistry {
    /// Every registered network, in the order `--help` lists them.
    public static let all: [NetworkDefinition] = [
        NetworkDefinition(
            name: "resnet20", summary: "ResNet-20 for CIFAR-10 (3 stages of 3 blocks, option-A shortcuts)",
            inputShape: [32, 32, 3]
        ) { try ResNet20($0, biReal: false) },
        NetworkDefinition(
            name: "resnet20-bireal", summary: "ResNet-20 with Bi-Real Net's shortcut around every convolution",
            inputShape: [32, 32, 3]
        ) { try ResNet20($0, biReal: true) },
        NetworkDefinition(
            name: "resnet18", summary: "ResNet-18 for CIFAR-10 (4 stages of 2 blocks, 1×1 downsample shortcuts)",
            inputShape: [32, 32, 3]
        ) { options in
            try ResNet18(
                variant: options.variant, estimator: options.estimator, classes: options.classes ?? 10, seed: options.seed,
                reluGradientAtZero: options.reluGradientAtZero)
        },
        NetworkDefinition(
            name: "vgg-small", summary: "VGG-small for CIFAR-10 (6 convolutions of 128–512 channels, 3 max-pools)",
            inputShape: [32, 32, 3]
        ) { options in
            try VGGSmall(
                variant: options.variant, estimator: options.estimator, classes: options.classes ?? 10, seed: options.seed,
                reluGradientAtZero: options.reluGradientAtZero, inputShape: options.inputShape ?? [32, 32, 3])
        },
        NetworkDefinition(
            name: "resnet18-imagenet", summary: "ResNet-18 for ImageNet (7×7 stem, 4 layers of 2 Bi-Real blocks)",
            inputShape: [224, 224, 3], classes: 1000
        ) { try ResNetImageNet(depth: 18, $0) },
        NetworkDefinition(
            name: "resnet34-imagenet", summary: "ResNet-34 for ImageNet (7×7 stem, 3, 4, 6, 3 Bi-Real blocks)",
            inputShape: [224, 224, 3], classes: 1000
        ) { try ResNetImageNet(depth: 34, $0) },
    ]

    /// The names of `all`.
    public static var names: [String] { all.map(\.name) }

    /// The network called `name`, or an error listing the registered names.
    public static func named(_ name: String) throws -> NetworkDefinition {
        guard let definition = all.first(where: { $0.name == name }) else {
            throw BNNError(.module, "unknown model `\(name)`; registered: \(names.joined(separator: ", "))")
        }
        return definition
    }
}

extension ResNet20 {
    /// A ResNet-20 (or its Bi-Real wiring) from registry options.
    convenience init(_ options: NetworkOptions, biReal: Bool) throws {
        try self.init(
            variant: options.variant, estimator: options.estimator, classes: options.classes ?? 10, seed: options.seed,
            reluGradientAtZero: options.reluGradientAtZero, biReal: biReal)
    }
}

extension ResNetImageNet {
    /// A ResNet-18 or ResNet-34 for ImageNet from registry options.
    convenience init(depth: Int, _ options: NetworkOptions) throws {
        try self.init(
            depth: depth, variant: options.variant, estimator: options.estimator, classes: options.classes ?? 1000,
            seed: options.seed, reluGradientAtZero: options.reluGradientAtZero)
    }
}
