/// Stochastic gradient descent with momentum and L2 weight decay, as `torch.optim.SGD` (no dampening, no
/// Nesterov): per parameter p with gradient g,
///
///     d = g + weightDecay · p
///     buf = d on the first step, then buf = momentum · buf + d
///     p -= learningRate · buf
///
/// With momentum 0 there is no buffer and p -= learningRate · d. The defaults are the paper's recipe.
public final class SGD: Optimizer {
    /// The learning rate of the next step.
    public var learningRate: Float
    /// Weight of the previous buffer in the new one.
    public var momentum: Float
    /// L2 penalty folded into the gradient before momentum (on every parameter, as in the paper).
    public var weightDecay: Float
    private let parameters: ParameterList
    /// One momentum buffer per parameter, created by its first update.
    private var momentumBuffers: [Tensor?]

    /// An optimizer for `parameters` (usually `model.namedParameters()`); the names key the saved state.
    /// Duplicate names or tensors are reported by the first `step()` or `loadStateDict`.
    public init(
        parameters: [(name: String, tensor: Tensor)], learningRate: Float, momentum: Float = 0.9,
        weightDecay: Float = 1e-4
    ) {
        self.parameters = ParameterList(parameters, optimizer: "SGD")
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        momentumBuffers = Array(repeating: nil, count: parameters.count)
    }

    /// The parameter names, in update order.
    public var parameterNames: [String] { parameters.names }

    /// One update of every parameter that has a gradient; throws on duplicate parameters or a negative or
    /// non-finite hyperparameter, before changing anything.
    public func step() throws {
        try parameters.check()
        try requireNonNegative(learningRate, "learningRate", of: "SGD")
        try requireNonNegative(momentum, "momentum", of: "SGD")
        try requireNonNegative(weightDecay, "weightDecay", of: "SGD")
        let (learningRate, momentum, weightDecay) = (learningRate, momentum, weightDecay)
        for (position, parameter) in parameters.tensors.enumerated() {
            guard let gradient = parameter.grad else { continue }
            guard gradient.count == parameter.count else {
                throw BNNError(.optimizer, 
                    "SGD: parameter \"\(parameters.names[position])\" has shape \(parameter.shape) but its gradient "
                        + "has \(gradient.shape)")
            }
            guard parameter.count > 0 else { continue }
            if momentum == 0 {
                parameter.withUnsafeMutableBufferPointer { p in
                    gradient.withUnsafeBufferPointer { g in
                        SGD.plainUpdate(p.baseAddress!, g.baseAddress!, p.count, learningRate, weightDecay)
                    }
                }
                continue
            }
            let first = momentumBuffers[position] == nil
            let buffer = try momentumBuffers[position] ?? Tensor.zeros(shape: parameter.shape)
            momentumBuffers[position] = buffer
            parameter.withUnsafeMutableBufferPointer { p in
                gradient.withUnsafeBufferPointer { g in
                    buffer.withUnsafeMutableBufferPointer { b in
                        SGD.momentumUpdate(
                            p.baseAddress!, g.baseAddress!, b.baseAddress!, p.count, learningRate, momentum,
                            weightDecay, first: first)
                    }
                }
            }
        }
    }

    // The update loops are plain float arithmetic in PyTorch's order of operations; the optimiser vectorises
    // them, and they run once per parameter element, not per pixel.
    private static func momentumUpdate(
        _ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ count: Int,
        _ learningRate: Float, _ momentum: Float, _ weightDecay: Float, first: Bool
    ) {
        if first {
            for i in 0..<count {
                let d = g[i] + weightDecay * p[i]
                b[i] = d
                p[i] = p[i] - learningRate * d
            }
        } else {
            for i in 0..<count {
                let d = g[i] + weightDecay * p[i]
                let v = momentum * b[i] + d
                b[i] = v
                p[i] = p[i] - learningRate * v
            }
        }
    }

    private static func plainUpdate(
        _ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ count: Int, _ learningRate: Float,
        _ weightDecay: Float
    ) {
        for i in 0..<count { p[i] = p[i] - learningRate * (g[i] + weightDecay * p[i]) }
    }

    /// Forgets every parameter's gradient.
    public func zeroGrad() {
        for parameter in parameters.tensors { parameter.zeroGrad() }
    }

    /// `<name>.momentum_buffer` (F32, the parameter's shape) for every parameter updated at least once.
    public func stateDict() -> [String: SafeTensors.TensorData] {
        var state: [String: SafeTensors.TensorData] = [:]
        for (position, buffer) in momentumBuffers.enumerated() {
            guard let buffer else { continue }
            state[parameters.names[position] + ".momentum_buffer"] = tensorData(buffer.scalars, shape: buffer.shape)
        }
        return state
    }

    /// Parameters without a `momentum_buffer` key start afresh (their next step is a first step).
    public func loadStateDict(_ state: [String: SafeTensors.TensorData]) throws {
        try parameters.check()
        var buffers = [Tensor?](repeating: nil, count: parameters.tensors.count)
        for key in state.keys.sorted() {
            let (position, _) = try parameters.locate(key, optimizer: "SGD", fields: ["momentum_buffer"])
            let values = try parameters.values(state[key]!, key: key, parameter: position, optimizer: "SGD")
            buffers[position] = try Tensor(shape: parameters.tensors[position].shape, data: values)
        }
        momentumBuffers = buffers
    }
}
