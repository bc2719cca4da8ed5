import BNN
import CKernels
import Testing

/// The three passes of a convolution computed naively in Double from NHWC input, OHWI weight rows
/// `[O][kh][kw][C]` and NHWC output gradient, each with the sum of the magnitudes of its terms (the scale a
/// float sum's rounding error refers to).
struct ReferenceConvolution {
    var output: [Double] = [], outputMagnitude: [Double] = []
    var inputGradient: [Double] = [], inputGradientMagnitude: [Double] = []
    var weightGradient: [Double] = [], weightGradientMagnitude: [Double] = []

    init(input x: [Float], weightRows w: [Float], gradient g: [Float], outChannels o: Int, _ s: ConvGeometry) {
        let oh = (s.height + 2 * s.padHeight - s.kernelHeight) / s.strideHeight + 1
        let ow = (s.width + 2 * s.padWidth - s.kernelWidth) / s.strideWidth + 1
        let c = s.channels
        output = Array(repeating: 0, count: s.batch * oh * ow * o)
        outputMagnitude = output
        inputGradient = Array(repeating: 0, count: x.count)
        inputGradientMagnitude = inputGradient
        weightGradient = Array(repeating: 0, count: w.count)
        weightGradientMagnitude = weightGradient
        // Every product of the convolution once, added to the three sums it belongs to.
        for n in 0..<s.batch {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    for i in 0..<s.kernelHeight {
                        for j in 0..<s.kernelWidth {
                            let iy = oy * s.strideHeight - s.padHeight + i
                            let ix = ox * s.strideWidth - s.padWidth + j
                            guard iy >= 0, iy < s.height, ix >= 0, ix < s.width else { continue }
                            for f in 0..<o {
                                let out = ((n * oh + oy) * ow + ox) * o + f
                                for k in 0..<c {
                                    let input = ((n * s.height + iy) * s.width + ix) * c + k
                                    let weight = ((f * s.kernelHeight + i) * s.kernelWidth + j) * c + k
                                    let forward = Double(x[input]) * Double(w[weight])
                                    output[out] += forward
                                    outputMagnitude[out] += abs(forward)
                                    let backwardInput = Double(g[out]) * Double(w[weight])
                                    inputGradient[input] += backwardInput
                                    inputGradientMagnitude[input] += abs(backwardInput)
                                    let backwardWeight = Double(g[out]) * Double(x[input])
                                    weightGradient[weight] += backwardWeight
                                    weightGradientMagnitude[weight] += abs(backwardWeight)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Records an issue unless every |got − expected| ≤ 1e-5·(magnitude + |base|) + 1e-30: a float sum of the same
/// terms in any order, with or without fused multiply-adds (`base` is what an accumulating call added to).
func expectCloseSums(
    _ got: [Float], _ expected: [Double], magnitude: [Double], base: [Float]? = nil, _ context: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard got.count == expected.count else {
        Issue.record("\(context): \(got.count) elements, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var bad = 0
    var first = ""
    for i in got.indices {
        let old = base.map { Double($0[i]) } ?? 0
        let error = abs(Double(got[i]) - (expected[i] + old))
        if !(error <= 1e-5 * (magnitude[i] + abs(old)) + 1e-30) {
            if bad == 0 { first = "index \(i): got \(got[i]), expected \(expected[i] + old)" }
            bad += 1
        }
    }
    if bad > 0 {
        Issue.record("\(context): \(bad) of \(got.count) elements off; first \(first)", sourceLocation: sourceLocation)
    }
}

/// One direct-convolution case: geometry and output channels.
struct DirectConvCase: CustomTestStringConvertible, Sendable {
    let geometry: ConvGeometry
    let outChannels: Int
    var testDescription: String { "\(geometry) → \(outChannels)" }
    var outputSize: (height: Int, width: Int) {
        let g = geometry
        return ((g.height + 2 * g.padHeight - g.kernelHeight) / g.strideHeight + 1,
                (g.width + 2 * g.padWidth - g.kernelWidth) / g.strideWidth + 1)
    }
}

/// Odd sizes, both strides, both paddings, channel counts off the vector widths on either side (tails, several
/// register chunks), batches of 1 and 3; plus kernels that leave stride phases without taps or read past the
/// input (padding larger than half the kernel).
let directConvCases: [DirectConvCase] = [
    DirectConvCase(geometry: ConvGeometry(batch: 1, height: 7, width: 9, channels: 3, kernelSize: 3, stride: 1, padding: 1), outChannels: 16),
    DirectConvCase(geometry: ConvGeometry(batch: 3, height: 9, width: 7, channels: 17, kernelSize: 3, stride: 2, padding: 1), outChannels: 20),
    DirectConvCase(geometry: ConvGeometry(batch: 3, height: 5, width: 11, channels: 16, kernelSize: 3, stride: 1, padding: 0), outChannels: 33),
    DirectConvCase(geometry: ConvGeometry(batch: 1, height: 8, width: 13, channels: 40, kernelSize: 3, stride: 2, padding: 0), outChannels: 9),
    DirectConvCase(geometry: ConvGeometry(batch: 3, height: 5, width: 5, channels: 70, kernelSize: 3, stride: 1, padding: 1), outChannels: 70),
    DirectConvCase(geometry: ConvGeometry(batch: 1, height: 9, width: 19, channels: 8, kernelSize: 3, stride: 1, padding: 1), outChannels: 5),
    DirectConvCase(geometry: ConvGeometry(batch: 3, height: 7, width: 6, channels: 5, kernelSize: 1, stride: 2, padding: 0), outChannels: 24),
    DirectConvCase(geometry: ConvGeometry(batch: 1, height: 6, width: 7, channels: 12, kernelSize: 5, stride: 3, padding: 3), outChannels: 7),
    DirectConvCase(
        geometry: ConvGeometry(batch: 3, height: 7, width: 8, channels: 33, kernelHeight: 2, kernelWidth: 3,
                               strideHeight: 1, strideWidth: 2, padHeight: 0, padWidth: 1),
        outChannels: 48),
    // The ResNet-20 layer shapes at a small batch, with a whole 32-pixel row per tile pair.
    DirectConvCase(geometry: ConvGeometry(batch: 2, height: 32, width: 32, channels: 16, kernelSize: 3, stride: 1, padding: 1), outChannels: 16),
    DirectConvCase(geometry: ConvGeometry(batch: 3, height: 16, width: 16, channels: 32, kernelSize: 3, stride: 2, padding: 1), outChannels: 64),
]

/// Runs the three kernels on random operands; each result is nil if its call failed.
func runDirectConvolution(
    _ c: DirectConvCase, x: [Float], w: [Float], g: [Float], signInput: Bool = false,
    forwardBase: [Float]? = nil, inputGradientBase: [Float]? = nil
) -> (output: [Float]?, inputGradient: [Float]?, weightGradient: [Float]?) {
    var shape = c.geometry.cShape
    let o = Int64(c.outChannels)
    var y = forwardBase ?? [Float](repeating: .nan, count: g.count)
    var dx = inputGradientBase ?? [Float](repeating: .nan, count: x.count)
    var dw = [Float](repeating: .nan, count: w.count)
    let forward = ck_conv2d_forward_f32(x, &shape, w, o, forwardBase != nil ? 1 : 0, &y)
    let backwardInput = ck_conv2d_backward_input_f32(g, &shape, w, o, inputGradientBase != nil ? 1 : 0, &dx)
    let backwardWeight = ck_conv2d_backward_weight_f32(x, &shape, g, o, signInput ? 1 : 0, &dw)
    return (forward == CK_OK ? y : nil, backwardInput == CK_OK ? dx : nil, backwardWeight == CK_OK ? dw : nil)
}

extension EveryPath {
    @Test("direct convolution: forward, input and weight gradients equal the naive sums", arguments: directConvCases)
    func directConvolutionMatchesReference(_ c: DirectConvCase) throws {
        let g0 = c.geometry
        var rng = SeededGenerator(seed: UInt64(g0.channels * 7919 + g0.height * 131 + c.outChannels))
        let (oh, ow) = c.outputSize
        let x = randomFloats(g0.batch * g0.height * g0.width * g0.channels, &rng)
        let w = randomFloats(c.outChannels * g0.kernelHeight * g0.kernelWidth * g0.channels, &rng)
        let g = randomFloats(g0.batch * oh * ow * c.outChannels, &rng)
        let reference = ReferenceConvolution(input: x, weightRows: w, gradient: g, outChannels: c.outChannels, g0)
        let signs = x.map { $0 < 0 ? Float(-1) : 1 }
        let signReference = ReferenceConvolution(
            input: signs, weightRows: w, gradient: g, outChannels: c.outChannels, g0)
        let outputBase = randomFloats(g.count, &rng)
        let inputBase = randomFloats(x.count, &rng)
        try forEachConfiguration { configuration in
            let context = "\(c.testDescription), \(configuration)"
            let plain = runDirectConvolution(c, x: x, w: w, g: g)
            expectCloseSums(
                try #require(plain.output), reference.output, magnitude: reference.outputMagnitude, "forward, \(context)")
            expectCloseSums(
                try #require(plain.inputGradient), reference.inputGradient,
                magnitude: reference.inputGradientMagnitude, "dX, \(context)")
            expectCloseSums(
                try #require(plain.weightGradient), reference.weightGradient,
                magnitude: reference.weightGradientMagnitude, "dW, \(context)")
            // Accumulating calls add to what is there; dW of sign(x) reads only the signs.
            let accumulated = runDirectConvolution(
                c, x: x, w: w, g: g, signInput: true, forwardBase: outputBase, inputGradientBase: inputBase)
            expectCloseSums(
                try #require(accumulated.output), reference.output, magnitude: reference.outputMagnitude,
                base: outputBase, "forward +=, \(context)")
            expectCloseSums(
                try #require(accumulated.inputGradient), reference.inputGradient,
                magnitude: reference.inputGradientMagnitude, base: inputBase, "dX +=, \(context)")
            expectCloseSums(
                try #require(accumulated.weightGradient), signReference.weightGradient,
                magnitude: signReference.weightGradientMagnitude, "dW of sign(x), \(context)")
            // Deterministic for a given path and thread count; the gathers do not depend on the thread count.
            let again = runDirectConvolution(c, x: x, w: w, g: g)
            expectEqualElements(again.output, try #require(plain.output), "forward rerun, \(context)")
            expectEqualElements(again.inputGradient, try #require(plain.inputGradient), "dX rerun, \(context)")
            expectEqualElements(again.weightGradient, try #require(plain.weightGradient), "dW rerun, \(context)")
        }
    }

    @Test(
        "direct convolution: every path gives the same bits; forward and input gradient do not depend on the thread count",
        arguments: [directConvCases[0], directConvCases[1], directConvCases[4], directConvCases[6], directConvCases[7]])
    func directConvolutionSameBitsEverywhere(_ c: DirectConvCase) throws {
        let g0 = c.geometry
        var rng = SeededGenerator(seed: 5)
        let (oh, ow) = c.outputSize
        let x = randomFloats(g0.batch * g0.height * g0.width * g0.channels, &rng)
        let w = randomFloats(c.outChannels * g0.kernelHeight * g0.kernelWidth * g0.channels, &rng)
        let g = randomFloats(g0.batch * oh * ow * c.outChannels, &rng)
        var first: (output: [Float]?, inputGradient: [Float]?)?
        var weightGradientByThreads: [Int: [Float]] = [:]
        try forEachConfiguration { configuration in
            let result = runDirectConvolution(c, x: x, w: w, g: g, signInput: true)
            if let first {
                expectEqualElements(result.output, try #require(first.output), "forward, \(configuration)")
                expectEqualElements(
                    result.inputGradient, try #require(first.inputGradient), "dX, \(configuration)")
            } else {
                first = (result.output, result.inputGradient)
            }
            if let same = weightGradientByThreads[configuration.threads] {
                expectEqualElements(result.weightGradient, same, "dW of sign(x), \(configuration)")
            } else {
                weightGradientByThreads[configuration.threads] = try #require(result.weightGradient)
            }
        }
    }
}

/// Every estimator of the kernels, ReSTE on both of its paths (o = 1 is the clip) and EDE at both ends of its
/// schedule.
let kernelEstimators: [(name: String, rule: ck_estimator)] = [
    ("ReSTE o = 1", ck_estimator(kind: CK_ESTIMATOR_RESTE, o: 1, threshold: 1.5, delta: 0.1, t: 0, k: 0)),
    ("ReSTE o = 2.5", ck_estimator(kind: CK_ESTIMATOR_RESTE, o: 2.5, threshold: 1.5, delta: 0.1, t: 0, k: 0)),
    ("clipped STE", ck_estimator(kind: CK_ESTIMATOR_CLIPPED_STE, o: 0, threshold: 1, delta: 0, t: 0, k: 0)),
    ("identity", ck_estimator(kind: CK_ESTIMATOR_IDENTITY, o: 0, threshold: 0, delta: 0, t: 0, k: 0)),
    ("ApproxSign", ck_estimator(kind: CK_ESTIMATOR_APPROX_SIGN, o: 0, threshold: 0, delta: 0, t: 0, k: 0)),
    ("EDE t = 0.1", ck_estimator(kind: CK_ESTIMATOR_EDE, o: 0, threshold: 0, delta: 0, t: 0.1, k: 10)),
    ("EDE t = 10", ck_estimator(kind: CK_ESTIMATOR_EDE, o: 0, threshold: 0, delta: 0, t: 10, k: 1)),
]

extension EveryPath {
    @Test(
        "the estimator inside the input-gradient kernel gives the bits of the kernel followed by the estimator's pass",
        arguments: directConvCases)
    func estimatorInsideInputGradient(_ c: DirectConvCase) throws {
        let g0 = c.geometry
        var rng = SeededGenerator(seed: UInt64(g0.channels * 31 + g0.width))
        let (oh, ow) = c.outputSize
        // Inputs over ±2 reach every branch of every r' (ReSTE's threshold 1.5, the clips at 1); the zeros and −0s
        // of randomFloats stay exact.
        let x = randomFloats(g0.batch * g0.height * g0.width * g0.channels, &rng).map { 2 * $0 }
        let w = randomFloats(c.outChannels * g0.kernelHeight * g0.kernelWidth * g0.channels, &rng)
        let g = randomFloats(g0.batch * oh * ow * c.outChannels, &rng)
        // A base of −0s among other values: adding the r'(x)·0 of pixels no tap reaches must still make them +0.
        let base = randomFloats(x.count, &rng).enumerated().map { $0.offset % 3 == 0 ? -0.0 : $0.element }
        var shape = c.geometry.cShape
        let o = Int64(c.outChannels)
        try forEachConfiguration { configuration in
            for (name, rule) in kernelEstimators {
                var rule = rule
                for accumulate in [false, true] {
                    var binaryGradient = [Float](repeating: .nan, count: x.count)
                    var separate = accumulate ? base : [Float](repeating: .nan, count: x.count)
                    var fused = separate
                    #expect(ck_conv2d_backward_input_f32(g, &shape, w, o, 0, &binaryGradient) == CK_OK)
                    #expect(
                        ck_estimator_backward_f32(&rule, x, binaryGradient, Int64(x.count), accumulate ? 1 : 0, &separate)
                            == CK_OK)
                    #expect(
                        ck_conv2d_backward_sign_input_f32(g, &shape, w, o, x, &rule, accumulate ? 1 : 0, &fused) == CK_OK)
                    expectEqualElements(
                        fused.map(\.bitPattern), separate.map(\.bitPattern),
                        "\(name)\(accumulate ? " +=" : ""), \(c.testDescription), \(configuration)")
                }
            }
        }
    }
}

@Suite struct DirectConvolutionArguments {
    @Test("bad arguments of the direct convolution kernels are errors")
    func badArguments() {
        var shape = ConvGeometry(batch: 1, height: 4, width: 4, channels: 2, kernelSize: 3, padding: 1).cShape
        let x = [Float](repeating: 1, count: 32), w = [Float](repeating: 1, count: 3 * 18)
        var y = [Float](repeating: 0, count: 48), dw = [Float](repeating: 0, count: 54)
        #expect(ck_conv2d_forward_f32(nil, &shape, w, 3, 0, &y) == CK_ERR_NULL_POINTER)
        #expect(ck_conv2d_forward_f32(x, nil, w, 3, 0, &y) == CK_ERR_NULL_POINTER)
        #expect(ck_conv2d_forward_f32(x, &shape, w, 0, 0, &y) == CK_ERR_INVALID_SIZE)
        var dx = x
        #expect(ck_conv2d_backward_input_f32(y, &shape, nil, 3, 0, &dx) == CK_ERR_NULL_POINTER)
        #expect(ck_conv2d_backward_input_f32(y, &shape, w, -1, 0, &dx) == CK_ERR_INVALID_SIZE)
        var rule = ck_estimator(kind: CK_ESTIMATOR_RESTE, o: 0, threshold: 1.5, delta: 0.1, t: 0, k: 0)
        #expect(ck_conv2d_backward_sign_input_f32(y, &shape, w, 3, x, &rule, 0, &dx) == CK_ERR_INVALID_SIZE, "o = 0")
        rule.o = 1
        #expect(ck_conv2d_backward_sign_input_f32(y, &shape, w, 3, nil, &rule, 0, &dx) == CK_ERR_NULL_POINTER)
        #expect(ck_conv2d_backward_sign_input_f32(y, &shape, w, 3, x, nil, 0, &dx) == CK_ERR_NULL_POINTER)
        rule.kind = ck_estimator_kind(rawValue: 9)
        #expect(ck_conv2d_backward_sign_input_f32(y, &shape, w, 3, x, &rule, 0, &dx) == CK_ERR_INVALID_SIZE, "kind")
        #expect(ck_conv2d_backward_weight_f32(x, &shape, y, 3, 0, nil) == CK_ERR_NULL_POINTER)
        var tooLarge = shape
        tooLarge.kernel_h = 7
        #expect(ck_conv2d_backward_weight_f32(x, &tooLarge, y, 3, 0, &dw) == CK_ERR_SHAPE_MISMATCH)
    }
}
