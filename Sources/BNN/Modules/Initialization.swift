import Glibc

/// Weight initialisers in place, drawn from a caller's seeded generator so a model is reproducible from its seed.
public enum Initialization {
    /// Fan-in of a weight as PyTorch computes it: input features times kernel size, i.e. every dimension but
    /// the first (`[out, in]` → in; OIHW → C·KH·KW).
    public static func fanIn(_ weight: Tensor) throws -> Int {
        guard weight.rank >= 2, weight.count > 0 else {
            throw BNNError(.module, "fanIn: a weight needs rank ≥ 2 and at least one element, got shape \(weight.shape)")
        }
        return weight.count / weight.shape[0]
    }

    /// Kaiming (He) normal with fan-in mode and ReLU gain, as `torch.nn.init.kaiming_normal_(w,
    /// nonlinearity="relu")`: N(0, 2 / fan_in).
    public static func kaimingNormal(_ weight: Tensor, using generator: inout some RandomNumberGenerator) throws {
        let std = Float((2 / Double(try fanIn(weight))).squareRoot())
        try copy(Tensor.randn(shape: weight.shape, std: std, using: &generator), into: weight)
    }

    /// Normal N(0, std²), as `weight.data.normal_(0, std)`.
    public static func normal(_ tensor: Tensor, std: Float, using generator: inout some RandomNumberGenerator) throws {
        try copy(Tensor.randn(shape: tensor.shape, std: std, using: &generator), into: tensor)
    }

    /// Uniform on [−bound, bound].
    public static func uniform(
        _ tensor: Tensor, bound: Float, using generator: inout some RandomNumberGenerator
    ) throws {
        try copy(Tensor.uniform(shape: tensor.shape, in: -bound...bound, using: &generator), into: tensor)
    }

    /// PyTorch's default for `nn.Conv2d` and `nn.Linear` (`kaiming_uniform_(a=√5)` for the weight, which is
    /// U(±1/√fan_in), and U(±1/√fan_in) for the bias).
    static func pytorchDefault(
        weight: Tensor, bias: Tensor?, using generator: inout some RandomNumberGenerator
    ) throws {
        let bound = Float(1 / Double(try fanIn(weight)).squareRoot())
        try uniform(weight, bound: bound, using: &generator)
        if let bias { try uniform(bias, bound: bound, using: &generator) }
    }

    private static func copy(_ source: Tensor, into target: Tensor) {
        source.withUnsafeBufferPointer { values in
            target.withUnsafeMutableBufferPointer { buffer in
                for index in buffer.indices { buffer[index] = values[index] }
            }
        }
    }
}
