import BNN
import Testing

/// Deterministic generator for the autograd and op tests (SplitMix64), so each case is reproducible.
struct GradCheckRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [low, high).
    mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(next() >> 40) * 0x1p-24
    }
}

/// A tensor of uniform values in [low, high).
func randomTensor(
    _ shape: [Int], _ low: Float = -1, _ high: Float = 1, requiresGrad: Bool = false, _ rng: inout GradCheckRandom
) throws -> Tensor {
    let count = shape.reduce(1, *)
    return try Tensor(shape: shape, data: (0..<count).map { _ in rng.uniform(low, high) }, requiresGrad: requiresGrad)
}

/// A tensor of uniform values in [-1, 1).
func randomTensor(_ shape: [Int], requiresGrad: Bool = false, _ rng: inout GradCheckRandom) throws -> Tensor {
    try randomTensor(shape, -1, 1, requiresGrad: requiresGrad, &rng)
}

/// Values with |x| in [margin, 1] and random sign: finite differences of step < margin never cross a kink at 0.
func tensorAwayFromZero(
    _ shape: [Int], margin: Float = 0.1, requiresGrad: Bool = false, _ rng: inout GradCheckRandom
) throws -> Tensor {
    let count = shape.reduce(1, *)
    let data = (0..<count).map { _ -> Float in
        let magnitude = rng.uniform(margin, 1)
        return rng.next() & 1 == 0 ? magnitude : -magnitude
    }
    return try Tensor(shape: shape, data: data, requiresGrad: requiresGrad)
}

/// Σ out[k]·projection[k] in double: a scalar function of the inputs whose gradient is backward(projection).
private func projectedLoss(_ output: Tensor, _ projection: [Float]) -> Double {
    output.withUnsafeBufferPointer { values in
        var sum = 0.0
        for k in values.indices { sum += Double(values[k]) * Double(projection[k]) }
        return sum
    }
}

/// Checks every gradient that `f` gives its inputs (those with requiresGrad) against central finite
/// differences. The output is projected on fixed random weights, so all output elements are checked at once;
/// the projection is evaluated in double, so only the op's own float rounding enters the differences.
///
/// With `skipKinks`, an element whose one-sided differences disagree (a ReLU, hardtanh or max-pool decision
/// flips within the step) is skipped instead of compared: there the function is not differentiable at the
/// step's scale. A wrong rule still fails everywhere the function is smooth; the caller bounds the skips.
/// Returns the number of elements compared (so a caller can make sure the check was not vacuous).
@discardableResult
func expectGradientsMatch(
    _ inputs: [Tensor], step: Float = 1e-2, relative: Double = 1e-2, absolute: Double = 1e-3, seed: UInt64 = 7,
    skipKinks: Bool = false, skipped: UnsafeMutablePointer<Int>? = nil,
    sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Tensor]) throws -> Tensor
) throws -> Int {
    for input in inputs { input.zeroGrad() }
    let output = try f(inputs)
    var rng = GradCheckRandom(seed: seed)
    let projection = (0..<output.count).map { _ in rng.uniform(-1, 1) }
    try output.backward(gradient: Tensor(shape: output.shape, data: projection))

    let lossAtInputs = try withNoGrad { projectedLoss(try f(inputs), projection) }
    var compared = 0
    var kinks = 0
    var failures: [String] = []
    for (index, input) in inputs.enumerated() where input.requiresGrad {
        guard let analytic = input.grad?.scalars else {
            Issue.record("input \(index) \(input.shape) received no gradient", sourceLocation: sourceLocation)
            continue
        }
        for element in 0..<input.count {
            let original = input.withUnsafeBufferPointer { $0[element] }
            let up = original + step
            let down = original - step
            input.withUnsafeMutableBufferPointer { $0[element] = up }
            let lossUp = try withNoGrad { projectedLoss(try f(inputs), projection) }
            input.withUnsafeMutableBufferPointer { $0[element] = down }
            let lossDown = try withNoGrad { projectedLoss(try f(inputs), projection) }
            input.withUnsafeMutableBufferPointer { $0[element] = original }
            let numeric = (lossUp - lossDown) / (Double(up) - Double(down))
            let value = Double(analytic[element])
            if skipKinks {
                let right = (lossUp - lossAtInputs) / (Double(up) - Double(original))
                let left = (lossAtInputs - lossDown) / (Double(original) - Double(down))
                if abs(right - left) > absolute + relative * max(abs(right), abs(left)) {
                    kinks += 1
                    continue
                }
            }
            compared += 1
            if abs(value - numeric) > absolute + relative * max(abs(value), abs(numeric)) {
                failures.append(
                    "input \(index) \(input.shape) element \(element): analytic \(value), numeric \(numeric)")
            }
        }
    }
    skipped?.pointee = kinks
    if !failures.isEmpty {
        Issue.record(
            Comment(
                rawValue: "\(failures.count) of \(compared) gradient elements differ from finite differences; first: "
                    + failures.prefix(5).joined(separator: "; ")),
            sourceLocation: sourceLocation)
    }
    return compared
}

/// Largest |a − b| over two equally long arrays (and a failed expectation if the lengths differ).
func maxDifference(_ a: [Float], _ b: [Double], sourceLocation: SourceLocation = #_sourceLocation) -> Double {
    #expect(a.count == b.count, "lengths differ: \(a.count) vs \(b.count)", sourceLocation: sourceLocation)
    var worst = 0.0
    for i in 0..<min(a.count, b.count) { worst = max(worst, abs(Double(a[i]) - b[i])) }
    return worst
}
