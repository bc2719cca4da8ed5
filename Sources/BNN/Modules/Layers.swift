// The parameter-free layers and the combinators. Each is a small module around one op, so that a network can be
// written as a tree of modules (and traced, packed and summarised as one) as well as with the functional ops.

/// `max(x, 0)` as a layer (`torch.nn.ReLU`); `gradientAtZero` is the gradient passed where x is exactly 0 (see
/// `relu(_:gradientAtZero:)`: 0 is PyTorch's rule, and binary convolutions produce exact zeros often).
public final class ReLU: Module {
    /// The gradient at exactly 0, in [0, 1].
    public let gradientAtZero: Float

    /// A ReLU passing `gradientAtZero` of the gradient where its input is 0.
    public init(gradientAtZero: Float = 0) throws {
        guard gradientAtZero >= 0, gradientAtZero <= 1 else {
            throw BNNError(.module, "ReLU: `gradientAtZero` must be in [0, 1], got \(gradientAtZero)")
        }
        self.gradientAtZero = gradientAtZero
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try GraphTracer.within(self) { try relu(x, gradientAtZero: gradientAtZero) }
    }
}

/// `clamp(x, minValue, maxValue)` as a layer (`torch.nn.Hardtanh`).
public final class Hardtanh: Module {
    /// The bounds.
    public let minValue: Float, maxValue: Float

    /// Clamps to [minValue, maxValue] (default [−1, 1]).
    public init(minValue: Float = -1, maxValue: Float = 1) throws {
        guard minValue <= maxValue else {
            throw BNNError(.module, "Hardtanh: `minValue` (\(minValue)) must not exceed `maxValue` (\(maxValue))")
        }
        self.minValue = minValue
        self.maxValue = maxValue
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try GraphTracer.within(self) { try hardtanh(x, minValue: minValue, maxValue: maxValue) }
    }
}

/// The window of a pooling layer: side, step (the side by default) and padding on each side, checked once for both.
public class PoolingLayer: Module {
    /// Window side, step between windows and padding on each side.
    public let kernelSize: Int, stride: Int, padding: Int

    init(_ layer: String, kernelSize: Int, stride: Int?, padding: Int) throws {
        let stride = stride ?? kernelSize
        guard kernelSize >= 1 else { throw BNNError(.module, "\(layer): `kernelSize` must be at least 1, got \(kernelSize)") }
        guard stride >= 1 else { throw BNNError(.module, "\(layer): `stride` must be at least 1, got \(stride)") }
        guard padding >= 0, padding <= kernelSize / 2 else {
            throw BNNError(.module, "\(layer): `padding` must be in 0...\(kernelSize / 2) (half the kernel), got \(padding)")
        }
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        super.init()
    }
}

/// Max-pool over square windows of an NHWC tensor (`torch.nn.MaxPool2d`; padding counts as −∞).
public final class MaxPool2d: PoolingLayer {
    /// A max-pool of `kernelSize`² windows every `stride` pixels (default `kernelSize`).
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) throws {
        try super.init("MaxPool2d", kernelSize: kernelSize, stride: stride, padding: padding)
    }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try GraphTracer.within(self) { try maxPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding) }
    }
}

/// Average pool over square windows of an NHWC tensor (`torch.nn.AvgPool2d`, zero padding counted in the divisor).
public final class AvgPool2d: PoolingLayer {
    /// An average pool of `kernelSize`² windows every `stride` pixels (default `kernelSize`).
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) throws {
        try super.init("AvgPool2d", kernelSize: kernelSize, stride: stride, padding: padding)
    }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try GraphTracer.within(self) { try avgPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding) }
    }
}

/// Mean over height and width: `[N, H, W, C]` → `[N, C]` (`AdaptiveAvgPool2d(1)` followed by a flatten).
public final class GlobalAvgPool2d: Module {
    public override init() { super.init() }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try GraphTracer.within(self) { try globalAvgPool(x) }
    }
}

/// `[N, H, W, C]` → `[N, C·H·W]` in PyTorch's (c, h, w) order (`torch.nn.Flatten`), so that a linear layer trained
/// in PyTorch after a flatten reads the same features.
public final class Flatten: Module {
    public override init() { super.init() }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try GraphTracer.within(self) { try flatten(x) }
    }
}

/// Returns its input (an empty `torch.nn.Sequential()` shortcut).
public final class Identity: Module {
    public override init() { super.init() }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor { x }
}

/// The CIFAR ResNet's "option A" shortcut as a layer: every `stride`-th pixel, `channelPadding` zero channels on
/// each side (`shortcutOptionA`). No parameters.
public final class OptionAShortcut: Module {
    /// Zero channels added on each side.
    public let channelPadding: Int
    /// Step between the pixels kept.
    public let stride: Int

    /// A shortcut from C to C + 2·`channelPadding` channels.
    public init(channelPadding: Int, stride: Int = 2) throws {
        guard channelPadding >= 0 else {
            throw BNNError(.module, "OptionAShortcut: `channelPadding` must be at least 0, got \(channelPadding)")
        }
        guard stride >= 1 else { throw BNNError(.module, "OptionAShortcut: `stride` must be at least 1, got \(stride)") }
        self.channelPadding = channelPadding
        self.stride = stride
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try GraphTracer.within(self) { try shortcutOptionA(x, channelPadding: channelPadding, stride: stride) }
    }
}

/// Modules applied one after another (`torch.nn.Sequential`): the children are named `0`, `1`, ... in the state
/// dict, as PyTorch names them.
public final class Sequential: Module {
    /// The modules, in order.
    public let layers: [Module]

    /// `layers` in order; an empty list is the identity.
    public init(_ layers: [Module]) {
        self.layers = layers
        super.init()
    }

    /// The same from a variadic list.
    public convenience init(_ layers: Module...) { self.init(layers) }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        var out = x
        for layer in layers { out = try layer(out) }
        return out
    }

    /// `layers` are the children, with index names (not `layers.0`): PyTorch's `Sequential` keys.
    override func stateEntries(prefix: String = "") -> [(name: String, entry: StateEntry)] {
        layers.enumerated().flatMap { index, layer in layer.stateEntries(prefix: prefix + "\(index).") }
    }

    public override func namedChildren() -> [(name: String, module: Module)] {
        layers.enumerated().map { ("\($0.offset)", $0.element) }
    }
}

/// A residual block: `body(x) + shortcut(x)`, then `activation` if given. The shortcut is the identity when nil,
/// or any module: `OptionAShortcut`, or a downsample `Sequential(Conv2d 1×1, BatchNorm2d)`. Children are named
/// `body`, `shortcut` and `activation`.
public final class Residual: Module {
    /// The main branch.
    public let body: Module
    /// The branch added to it; nil for the identity.
    public let shortcut: Module?
    /// Applied to the sum, if set (e.g. a `ReLU`).
    public let activation: Module?

    /// `activation(body(x) + shortcut(x))`.
    public init(_ body: Module, shortcut: Module? = nil, activation: Module? = nil) {
        self.body = body
        self.shortcut = shortcut
        self.activation = activation
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        let sum = try add(body(x), shortcut.map { try $0(x) } ?? x)
        return try activation.map { try $0(sum) } ?? sum
    }
}
