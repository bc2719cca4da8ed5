import BNN
import Testing

/// Distinct values (a shuffled ramp with gaps of 0.05) so a finite-difference step of 0.01 never changes
/// which element of a window is the maximum.
func distinctTensor(_ shape: [Int], requiresGrad: Bool = false, _ rng: inout GradCheckRandom) throws -> Tensor {
    let count = shape.reduce(1, *)
    var values = (0..<count).map { Float($0) * 0.05 - Float(count) * 0.025 }
    values.shuffle(using: &rng)
    return try Tensor(shape: shape, data: values, requiresGrad: requiresGrad)
}

/// Max- or average-pool in double; max pads with −∞, average counts padding in the divisor.
private func naivePool(_ x: Tensor, kernel: Int, stride: Int, padding: Int, max isMax: Bool) -> (
    values: [Double], shape: [Int]
) {
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let oh = (h + 2 * padding - kernel) / stride + 1
    let ow = (w + 2 * padding - kernel) / stride + 1
    let v = x.scalars
    var out = [Double]()
    for image in 0..<n {
        for oy in 0..<oh {
            for ox in 0..<ow {
                for ch in 0..<c {
                    var best = -Double.infinity
                    var sum = 0.0
                    for i in 0..<kernel {
                        for j in 0..<kernel {
                            let iy = oy * stride - padding + i
                            let ix = ox * stride - padding + j
                            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                            let value = Double(v[((image * h + iy) * w + ix) * c + ch])
                            best = max(best, value)
                            sum += value
                        }
                    }
                    out.append(isMax ? best : sum / Double(kernel * kernel))
                }
            }
        }
    }
    return (out, [n, oh, ow, c])
}

@Suite("Ops: pooling and shortcut")
struct OpsPoolingTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let input: [Int], kernel: Int, stride: Int, padding: Int
        var testDescription: String { "input \(input), kernel \(kernel), stride \(stride), padding \(padding)" }
    }

    static let cases: [Case] = [
        Case(input: [2, 7, 7, 3], kernel: 3, stride: 2, padding: 1),
        Case(input: [1, 4, 5, 2], kernel: 2, stride: 2, padding: 0),
        Case(input: [1, 5, 4, 3], kernel: 3, stride: 1, padding: 1),
        Case(input: [2, 6, 6, 1], kernel: 4, stride: 4, padding: 2),
    ]

    @Test("maxPool2d forward equals a direct max with −∞ padding; gradients match", arguments: cases)
    func maxPool(_ c: Case) throws {
        var rng = GradCheckRandom(seed: 31)
        let x = try distinctTensor(c.input, requiresGrad: true, &rng)
        let y = try maxPool2d(x, kernelSize: c.kernel, stride: c.stride, padding: c.padding)
        let reference = naivePool(x, kernel: c.kernel, stride: c.stride, padding: c.padding, max: true)
        #expect(y.shape == reference.shape)
        #expect(maxDifference(y.scalars, reference.values) == 0)
        try expectGradientsMatch([x]) { t in
            try maxPool2d(t[0], kernelSize: c.kernel, stride: c.stride, padding: c.padding)
        }
    }

    @Test("avgPool2d forward counts padding in the divisor; gradients match", arguments: cases)
    func avgPool(_ c: Case) throws {
        var rng = GradCheckRandom(seed: 32)
        let x = try randomTensor(c.input, requiresGrad: true, &rng)
        let y = try avgPool2d(x, kernelSize: c.kernel, stride: c.stride, padding: c.padding)
        let reference = naivePool(x, kernel: c.kernel, stride: c.stride, padding: c.padding, max: false)
        #expect(y.shape == reference.shape)
        #expect(maxDifference(y.scalars, reference.values) < 1e-6)
        try expectGradientsMatch([x]) { t in
            try avgPool2d(t[0], kernelSize: c.kernel, stride: c.stride, padding: c.padding)
        }
    }

    @Test("max-pool ties send the gradient to the first maximum; negative inputs never see the padding")
    func maxPoolTiesAndPadding() throws {
        let x = try Tensor(shape: [1, 2, 2, 1], data: [5, 5, 5, 5], requiresGrad: true)
        let y = try maxPool2d(x, kernelSize: 2)
        try y.backward(gradient: Tensor.ones(shape: y.shape))
        #expect(x.grad?.scalars == [1, 0, 0, 0])
        let negative = try Tensor(shape: [1, 2, 2, 1], data: [-3, -2, -4, -5])
        let padded = try maxPool2d(negative, kernelSize: 2, stride: 1, padding: 1)
        #expect(padded.scalars == [-3, -2, -2, -3, -2, -2, -4, -4, -5])
        expectBNNError(.tensor) { try maxPool2d(negative, kernelSize: 2, padding: 2) }
    }

    @Test("globalAvgPool is the per-channel mean over H·W; gradients match")
    func globalAverage() throws {
        var rng = GradCheckRandom(seed: 33)
        let x = try randomTensor([3, 3, 5, 2], requiresGrad: true, &rng)
        let y = try globalAvgPool(x)
        #expect(y.shape == [3, 2])
        let v = x.scalars
        let expected = (0..<6).map { index -> Double in
            let (n, c) = (index / 2, index % 2)
            return (0..<15).map { Double(v[(n * 15 + $0) * 2 + c]) }.reduce(0, +) / 15
        }
        #expect(maxDifference(y.scalars, expected) < 1e-6)
        try expectGradientsMatch([x]) { t in try globalAvgPool(t[0]) }
    }

    @Test("option-A shortcut takes every second pixel and zero-pads channels on both sides; gradients match")
    func shortcut() throws {
        var rng = GradCheckRandom(seed: 34)
        let x = try randomTensor([2, 5, 4, 3], requiresGrad: true, &rng)
        let y = try shortcutOptionA(x, channelPadding: 2)
        #expect(y.shape == [2, 3, 2, 7])
        let v = x.scalars
        let out = y.scalars
        var mismatches = 0
        for n in 0..<2 {
            for oy in 0..<3 {
                for ox in 0..<2 {
                    for c in 0..<7 {
                        let expected: Float = (2..<5).contains(c) ? v[((n * 5 + 2 * oy) * 4 + 2 * ox) * 3 + c - 2] : 0
                        if out[((n * 3 + oy) * 2 + ox) * 7 + c] != expected { mismatches += 1 }
                    }
                }
            }
        }
        #expect(mismatches == 0)
        try expectGradientsMatch([x]) { t in try shortcutOptionA(t[0], channelPadding: 2) }
        try expectGradientsMatch([x]) { t in try shortcutOptionA(t[0], channelPadding: 0, stride: 1) }
    }
}
