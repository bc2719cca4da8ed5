import Testing

@testable import BNN

/// Direct convolution in double: NHWC input, OIHW weight, zero padding; returns NHWC output.
func naiveConv2d(
    _ input: Tensor, _ weight: Tensor, bias: Tensor?, stride: Int, padding: Int
) -> (values: [Double], shape: [Int]) {
    let (n, h, w, c) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
    let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    let oh = (h + 2 * padding - kh) / stride + 1
    let ow = (w + 2 * padding - kw) / stride + 1
    let x = input.scalars
    let k = weight.scalars
    let b = bias?.scalars
    var out = [Double](repeating: 0, count: n * oh * ow * o)
    for image in 0..<n {
        for oy in 0..<oh {
            for ox in 0..<ow {
                for filter in 0..<o {
                    var sum = b.map { Double($0[filter]) } ?? 0
                    for ci in 0..<c {
                        for i in 0..<kh {
                            for j in 0..<kw {
                                let iy = oy * stride - padding + i
                                let ix = ox * stride - padding + j
                                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                sum +=
                                    Double(x[((image * h + iy) * w + ix) * c + ci])
                                    * Double(k[((filter * c + ci) * kh + i) * kw + j])
                            }
                        }
                    }
                    out[((image * oh + oy) * ow + ox) * o + filter] = sum
                }
            }
        }
    }
    return (out, [n, oh, ow, o])
}

/// The ways `ConvolutionPlan` can compute a convolution; the op tests run each, whatever the default would pick
/// for their small shapes.
enum ConvolutionLowering: CaseIterable, CustomTestStringConvertible, Sendable {
    /// The direct kernels (a 1×1 stride-1 unpadded convolution stays on sgemm).
    case direct
    /// im2col + sgemm with all images in one chunk.
    case im2col
    /// im2col + sgemm with one image per chunk.
    case im2colPerImage

    var testDescription: String {
        switch self {
        case .direct: "direct kernels"
        case .im2col: "im2col in one chunk"
        case .im2colPerImage: "im2col per image"
        }
    }

    /// Runs `body` with this lowering in force.
    func callAsFunction<R>(_ body: () throws -> R) rethrows -> R {
        switch self {
        case .direct: try ConvolutionPlan.$loweringOverride.withValue(.direct, operation: body)
        case .im2col: try ConvolutionPlan.$loweringOverride.withValue(.im2col, operation: body)
        case .im2colPerImage:
            try ConvolutionPlan.$loweringOverride.withValue(.im2col) {
                try ConvolutionPlan.$chunkBytesOverride.withValue(1, operation: body)
            }
        }
    }
}

@Suite("Ops: conv2d")
struct OpsConvTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let input: [Int], outChannels: Int, kernel: (Int, Int), stride: Int, padding: Int, bias: Bool
        var testDescription: String {
            "input \(input) → \(outChannels), kernel \(kernel.0)×\(kernel.1), stride \(stride), padding \(padding)"
                + (bias ? ", bias" : "")
        }
    }

    static let cases: [Case] = [
        Case(input: [2, 5, 5, 3], outChannels: 4, kernel: (3, 3), stride: 1, padding: 1, bias: true),
        Case(input: [1, 7, 6, 2], outChannels: 3, kernel: (3, 3), stride: 2, padding: 1, bias: false),
        Case(input: [2, 4, 4, 5], outChannels: 3, kernel: (1, 1), stride: 1, padding: 0, bias: true),
        Case(input: [1, 6, 6, 3], outChannels: 2, kernel: (1, 1), stride: 2, padding: 0, bias: false),
        Case(input: [1, 9, 9, 2], outChannels: 2, kernel: (7, 7), stride: 2, padding: 3, bias: true),
        Case(input: [3, 5, 4, 1], outChannels: 1, kernel: (2, 3), stride: 1, padding: 0, bias: true),
    ]

    @Test(
        "forward equals a naive convolution, with each lowering",
        arguments: cases, ConvolutionLowering.allCases)
    func forward(_ c: Case, lowering: ConvolutionLowering) throws {
        try lowering { try forwardCase(c) }
    }

    private func forwardCase(_ c: Case) throws {
        var rng = GradCheckRandom(seed: 11)
        let x = try randomTensor(c.input, &rng)
        let w = try randomTensor([c.outChannels, c.input[3], c.kernel.0, c.kernel.1], &rng)
        let b = c.bias ? try randomTensor([c.outChannels], &rng) : nil
        let y = try conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding)
        let reference = naiveConv2d(x, w, bias: b, stride: c.stride, padding: c.padding)
        #expect(y.shape == reference.shape)
        #expect(maxDifference(y.scalars, reference.values) < 1e-5)
    }

    @Test(
        "input, weight and bias gradients match finite differences, with each lowering",
        arguments: cases, ConvolutionLowering.allCases)
    func gradients(_ c: Case, lowering: ConvolutionLowering) throws {
        try lowering { try gradientCase(c) }
    }

    private func gradientCase(_ c: Case) throws {
        var rng = GradCheckRandom(seed: 12)
        let x = try randomTensor(c.input, requiresGrad: true, &rng)
        let w = try randomTensor([c.outChannels, c.input[3], c.kernel.0, c.kernel.1], requiresGrad: true, &rng)
        var inputs = [x, w]
        if c.bias { inputs.append(try randomTensor([c.outChannels], requiresGrad: true, &rng)) }
        let compared = try expectGradientsMatch(inputs) { t in
            try conv2d(t[0], weight: t[1], bias: t.count > 2 ? t[2] : nil, stride: c.stride, padding: c.padding)
        }
        #expect(compared == inputs.reduce(0) { $0 + $1.count })
    }

    @Test("only the input requires grad: dX alone is right")
    func inputGradientOnly() throws {
        var rng = GradCheckRandom(seed: 13)
        let x = try randomTensor([2, 5, 5, 2], requiresGrad: true, &rng)
        let w = try randomTensor([3, 2, 3, 3], &rng)
        try expectGradientsMatch([x, w]) { t in try conv2d(t[0], weight: t[1], stride: 2, padding: 1) }
        #expect(w.grad == nil)
    }

    @Test("the same weight used by two convolutions gets both gradients")
    func sharedWeight() throws {
        var rng = GradCheckRandom(seed: 14)
        let x = try randomTensor([1, 4, 4, 2], requiresGrad: true, &rng)
        let w = try randomTensor([2, 2, 3, 3], requiresGrad: true, &rng)
        try expectGradientsMatch([x, w]) { t in
            let first = try conv2d(t[0], weight: t[1], padding: 1)
            return try conv2d(first, weight: t[1], padding: 1)
        }
    }

    @Test("bad arguments are errors naming the argument")
    func errors() throws {
        let x = try Tensor.zeros(shape: [1, 4, 4, 3])
        let error = expectBNNError(.tensor) { try conv2d(x, weight: Tensor.zeros(shape: [2, 4, 3, 3])) }
        #expect(error?.message.contains("weight") == true)
        expectBNNError(.tensor) { try conv2d(x, weight: Tensor.zeros(shape: [2, 3, 5, 5])) }
        expectBNNError(.tensor) {
            try conv2d(x, weight: Tensor.zeros(shape: [2, 3, 3, 3]), bias: Tensor.zeros(shape: [3]))
        }
        expectBNNError(.tensor) { try conv2d(x, weight: Tensor.zeros(shape: [2, 3, 3, 3]), stride: 0) }
        expectBNNError(.tensor) {
            try conv2d(Tensor.zeros(shape: [4, 4, 3]), weight: Tensor.zeros(shape: [2, 3, 3, 3]))
        }
    }
}
