/// A fully connected layer (`torch.nn.Linear`): `[N, in]` → `[N, out]` with `weight` `[out, in]` and optional
/// `bias` `[out]`, initialised as PyTorch does by default (U(±1/√in) for weight and bias).
public final class Linear: Module {
    /// `[outputFeatures, inputFeatures]`.
    public let weight: Tensor
    /// `[outputFeatures]`, or nil without bias.
    public let bias: Tensor?

    /// A layer drawing its initial values from `generator`.
    public init(
        inputFeatures: Int, outputFeatures: Int, bias: Bool = true, generator: inout some RandomNumberGenerator
    ) throws {
        for (name, value) in [("inputFeatures", inputFeatures), ("outputFeatures", outputFeatures)] where value < 1 {
            throw BNNError(.module, "Linear: `\(name)` must be at least 1, got \(value)")
        }
        weight = try Tensor.zeros(shape: [outputFeatures, inputFeatures], requiresGrad: true)
        self.bias = bias ? try Tensor.zeros(shape: [outputFeatures], requiresGrad: true) : nil
        super.init()
        try Initialization.pytorchDefault(weight: weight, bias: self.bias, using: &generator)
    }

    /// A layer whose initial values come from a generator seeded with `seed`.
    public convenience init(inputFeatures: Int, outputFeatures: Int, bias: Bool = true, seed: UInt64 = 0) throws {
        var generator = Xoshiro256StarStar(seed: seed)
        try self.init(inputFeatures: inputFeatures, outputFeatures: outputFeatures, bias: bias, generator: &generator)
    }

    /// `x · weightᵀ + bias`.
    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try linear(x, weight: weight, bias: bias)
    }
}
