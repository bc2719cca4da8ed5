import Glibc

/// Adam with L2 weight decay, as `torch.optim.Adam` (not AdamW, no AMSGrad): per parameter p with gradient g and
/// step count t (counted per parameter),
///
///     g += weightDecay · p
///     m = m + (1 − β₁)(g − m);   v = β₂ v + (1 − β₂) g²
///     p -= (learningRate / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
public final class Adam: Optimizer {
    /// The learning rate of the next step.
    public var learningRate: Float
    /// Decay of the first-moment average. Double, as PyTorch's Python float: 1 − β and the bias corrections are
    /// computed from the exact value, then rounded to float (1 − Float(0.999) would be 1.3e-5 off).
    public var beta1: Double
    /// Decay of the second-moment average (double for the same reason).
    public var beta2: Double
    /// Added to the denominator.
    public var epsilon: Float
    /// L2 penalty added to the gradient.
    public var weightDecay: Float
    private let parameters: ParameterList
    /// Per parameter: steps taken, first and second moments (created by the first update).
    private var steps: [Int]
    private var firstMoments: [Tensor?]
    private var secondMoments: [Tensor?]

    /// An optimizer for `parameters` with PyTorch's defaults; duplicate names or tensors are reported by the
    /// first `step()` or `loadStateDict`.
    public init(
        parameters: [(name: String, tensor: Tensor)], learningRate: Float = 1e-3, beta1: Double = 0.9,
        beta2: Double = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0
    ) {
        self.parameters = ParameterList(parameters, optimizer: "Adam")
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        steps = Array(repeating: 0, count: parameters.count)
        firstMoments = Array(repeating: nil, count: parameters.count)
        secondMoments = Array(repeating: nil, count: parameters.count)
    }

    /// The parameter names, in update order.
    public var parameterNames: [String] { parameters.names }

    /// One update of every parameter that has a gradient; throws on duplicate parameters or a hyperparameter out
    /// of range, before changing anything.
    public func step() throws {
        try parameters.check()
        try requireNonNegative(learningRate, "learningRate", of: "Adam")
        try requireNonNegative(weightDecay, "weightDecay", of: "Adam")
        guard epsilon.isFinite, epsilon > 0 else {
            throw BNNError(.optimizer, "Adam: `epsilon` must be finite and > 0, got \(epsilon)")
        }
        for (name, beta) in [("beta1", beta1), ("beta2", beta2)] where !(beta >= 0 && beta < 1) {
            throw BNNError(.optimizer, "Adam: `\(name)` must be in [0, 1), got \(beta)")
        }
        let (epsilon, weightDecay) = (epsilon, weightDecay)
        let (decay2, oneMinusBeta1, oneMinusBeta2) = (Float(beta2), Float(1 - beta1), Float(1 - beta2))
        for (position, parameter) in parameters.tensors.enumerated() {
            guard let gradient = parameter.grad else { continue }
            guard gradient.count == parameter.count else {
                throw BNNError(.optimizer, 
                    "Adam: parameter \"\(parameters.names[position])\" has shape \(parameter.shape) but its gradient "
                        + "has \(gradient.shape)")
            }
            guard parameter.count > 0 else { continue }
            let m = try firstMoments[position] ?? Tensor.zeros(shape: parameter.shape)
            let v = try secondMoments[position] ?? Tensor.zeros(shape: parameter.shape)
            firstMoments[position] = m
            secondMoments[position] = v
            steps[position] += 1
            // The bias corrections in double, as PyTorch computes these scalars in Python floats.
            let t = Double(steps[position])
            let stepSize = Float(Double(learningRate) / (1 - pow(beta1, t)))
            let correction2Root = Float((1 - pow(beta2, t)).squareRoot())
            parameter.withUnsafeMutableBufferPointer { p in
                gradient.withUnsafeBufferPointer { g in
                    m.withUnsafeMutableBufferPointer { mBuffer in
                        v.withUnsafeMutableBufferPointer { vBuffer in
                            Adam.update(
                                p.baseAddress!, g.baseAddress!, mBuffer.baseAddress!, vBuffer.baseAddress!, p.count,
                                oneMinusBeta1: oneMinusBeta1, beta2: decay2, oneMinusBeta2: oneMinusBeta2,
                                epsilon: epsilon, weightDecay: weightDecay,
                                stepSize: stepSize, correction2Root: correction2Root)
                        }
                    }
                }
            }
        }
    }

    private static func update(
        _ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
        _ v: UnsafeMutablePointer<Float>, _ count: Int, oneMinusBeta1: Float, beta2: Float, oneMinusBeta2: Float,
        epsilon: Float, weightDecay: Float, stepSize: Float, correction2Root: Float
    ) {
        // PyTorch's order: lerp for m (whose formula depends on the weight), mul then addcmul for v,
        // (step · m) / denominator for the update.
        let lerpFromStart = oneMinusBeta1 < 0.5
        let beta1 = 1 - oneMinusBeta1
        for i in 0..<count {
            let d = g[i] + weightDecay * p[i]
            let mi = lerpFromStart ? m[i] + oneMinusBeta1 * (d - m[i]) : d - (d - m[i]) * beta1
            let vi = beta2 * v[i] + oneMinusBeta2 * d * d
            m[i] = mi
            v[i] = vi
            let denominator = vi.squareRoot() / correction2Root + epsilon
            p[i] = p[i] - stepSize * mi / denominator
        }
    }

    /// Forgets every parameter's gradient.
    public func zeroGrad() {
        for parameter in parameters.tensors { parameter.zeroGrad() }
    }

    /// `<name>.exp_avg`, `<name>.exp_avg_sq` (F32, the parameter's shape) and `<name>.step` (I64 scalar) for
    /// every parameter updated at least once.
    public func stateDict() -> [String: SafeTensors.TensorData] {
        var state: [String: SafeTensors.TensorData] = [:]
        for position in parameters.tensors.indices {
            guard let m = firstMoments[position], let v = secondMoments[position] else { continue }
            let name = parameters.names[position]
            state[name + ".exp_avg"] = tensorData(m.scalars, shape: m.shape)
            state[name + ".exp_avg_sq"] = tensorData(v.scalars, shape: v.shape)
            state[name + ".step"] = tensorData([Int64(steps[position])], shape: [])
        }
        return state
    }

    /// A parameter's three keys come together or not at all; parameters without them start afresh. `step`
    /// may be I64, I32 or an integral float (PyTorch saves it as a float tensor).
    public func loadStateDict(_ state: [String: SafeTensors.TensorData]) throws {
        try parameters.check()
        let count = parameters.tensors.count
        var newSteps = [Int?](repeating: nil, count: count)
        var newFirst = [Tensor?](repeating: nil, count: count)
        var newSecond = [Tensor?](repeating: nil, count: count)
        for key in state.keys.sorted() {
            let data = state[key]!
            let (position, field) = try parameters.locate(
                key, optimizer: "Adam", fields: ["exp_avg", "exp_avg_sq", "step"])
            if field == "step" {
                newSteps[position] = try Adam.stepCount(data, key: key)
            } else {
                let values = try parameters.values(data, key: key, parameter: position, optimizer: "Adam")
                let tensor = try Tensor(shape: parameters.tensors[position].shape, data: values)
                if field == "exp_avg" { newFirst[position] = tensor } else { newSecond[position] = tensor }
            }
        }
        for position in 0..<count {
            let present = [newSteps[position] != nil, newFirst[position] != nil, newSecond[position] != nil]
            if present.contains(true) && present.contains(false) {
                let name = parameters.names[position]
                let absent = zip(["step", "exp_avg", "exp_avg_sq"], present).filter { !$0.1 }.map { "\(name).\($0.0)" }
                throw BNNError(.optimizer, 
                    "Adam.loadStateDict: parameter \"\(name)\" has partial state; missing "
                        + absent.joined(separator: ", "))
            }
        }
        steps = newSteps.map { $0 ?? 0 }
        firstMoments = newFirst
        secondMoments = newSecond
    }

    private static func stepCount(_ data: SafeTensors.TensorData, key: String) throws -> Int {
        guard data.elementCount == 1, data.shape.count <= 1 else {
            throw BNNError(.optimizer, "Adam.loadStateDict: \"\(key)\": expected a scalar step count, found shape \(data.shape)")
        }
        let value: Double
        do {
            value = data.dtype == .i64 || data.dtype == .i32
                ? Double(try counterValue(data)) : Double(try floatValues(data)[0])
        } catch {
            throw BNNError(.optimizer, "Adam.loadStateDict: \"\(key)\": \(error)")
        }
        guard value >= 0, value == value.rounded(), value < 1e15 else {
            throw BNNError(.optimizer, "Adam.loadStateDict: \"\(key)\": step must be a non-negative integer, found \(value)")
        }
        return Int(value)
    }
}
