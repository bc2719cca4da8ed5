import Foundation
import Testing

@testable import BNN

/// sign with sign(0) = +1 (and −0 → +1), the library's convention.
private func naiveSignPlusOne(_ v: Float) -> Double { v < 0 ? -1 : 1 }

/// Geometry of one binary convolution case.
private struct BinaryCase: CustomTestStringConvertible, Sendable {
    let batch: Int, height: Int, width: Int, channels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    var outputHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
    var outputWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
    var inputShape: [Int] { [batch, height, width, channels] }
    var weightShape: [Int] { [outChannels, channels, kernel, kernel] }
    var outputShape: [Int] { [batch, outputHeight, outputWidth, outChannels] }
    var testDescription: String {
        "N\(batch) \(height)×\(width)×\(channels) → \(outChannels), \(kernel)×\(kernel), stride \(stride), "
            + "padding \(padding)"
    }
}

/// Direct convolution in double of NHWC `x` with OIHW `w`, zero padding.
private func naiveBinaryCaseConvolution(_ c: BinaryCase, x: [Double], w: [Double]) -> [Double] {
    var out = [Double](repeating: 0, count: c.outputShape.reduce(1, *))
    x.withUnsafeBufferPointer { x in
        w.withUnsafeBufferPointer { w in
            forEachConvolutionTap(c) { outIndex, inIndex, weightIndex in out[outIndex] += x[inIndex] * w[weightIndex] }
        }
    }
    return out
}

/// Calls `body(output index, input index, weight index)` for every product of a zero-padded convolution.
private func forEachConvolutionTap(_ c: BinaryCase, _ body: (Int, Int, Int) -> Void) {
    for n in 0..<c.batch {
        for oy in 0..<c.outputHeight {
            for ox in 0..<c.outputWidth {
                for o in 0..<c.outChannels {
                    let outIndex = ((n * c.outputHeight + oy) * c.outputWidth + ox) * c.outChannels + o
                    for i in 0..<c.kernel {
                        let iy = oy * c.stride - c.padding + i
                        guard iy >= 0, iy < c.height else { continue }
                        for j in 0..<c.kernel {
                            let ix = ox * c.stride - c.padding + j
                            guard ix >= 0, ix < c.width else { continue }
                            for ch in 0..<c.channels {
                                body(
                                    outIndex, ((n * c.height + iy) * c.width + ix) * c.channels + ch,
                                    ((o * c.channels + ch) * c.kernel + i) * c.kernel + j)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// dL/dXb = col2im(G·Wb) and dL/dWb = Gᵀ·im2col(Xb), by scattering every product of the convolution.
private func naiveBinaryConvGradients(_ c: BinaryCase, xb: [Double], wb: [Double], g: [Double]) -> (
    input: [Double], weight: [Double]
) {
    var dx = [Double](repeating: 0, count: xb.count)
    var dw = [Double](repeating: 0, count: wb.count)
    forEachConvolutionTap(c) { outIndex, inIndex, weightIndex in
        dx[inIndex] += g[outIndex] * wb[weightIndex]
        dw[weightIndex] += g[outIndex] * xb[inIndex]
    }
    return (dx, dw)
}

/// α = mean|W|, in double. The test weights are multiples of 2⁻²⁴ below 2, so this sum is exact in any order.
private func naiveMeanAbs(_ w: [Float]) -> Float { Float(w.reduce(0.0) { $0 + abs(Double($1)) } / Double(w.count)) }

/// Random input with a few exact zeros (sign(0) = +1 must hold through the packing).
private func randomBinaryConvInput(_ shape: [Int], _ rng: inout GradCheckRandom) throws -> Tensor {
    let x = try randomTensor(shape, -1.7, 1.7, &rng)
    x.withUnsafeMutableBufferPointer { b in
        for i in stride(from: 3, to: b.count, by: 17) { b[i] = i % 2 == 0 ? 0 : -0.0 }
    }
    return x
}

/// Records an issue when some |got − expected| exceeds `tolerance`·max(1, max|expected|).
private func expectNearScaled(
    _ got: [Float], _ expected: [Double], tolerance: Double, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let scale = max(1, expected.map(abs).max() ?? 0)
    let worst = maxDifference(got, expected, sourceLocation: sourceLocation)
    #expect(worst <= tolerance * scale, "\(what): max difference \(worst) (scale \(scale))", sourceLocation: sourceLocation)
}

/// A user's estimator: `base`'s backward behind a type the kernels do not know, so that `binaryConv2d` gives it the
/// separate pass over dL/dXb.
private struct SeparatePass: SignEstimator {
    let base: any SignEstimator
    var name: String { base.name }
    mutating func setEpoch(_ epoch: Int, of epochs: Int) {}
    func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool
    ) {
        base.backward(input: input, gradOutput: gradOutput, gradInput: gradInput, count: count, accumulate: accumulate)
    }
}

/// A user's estimator with a rule of its own, written in Swift: r'(x) = ½.
private struct HalfSlope: SignEstimator {
    var name: String { "half" }
    mutating func setEpoch(_ epoch: Int, of epochs: Int) {}
    func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool
    ) {
        for i in 0..<count {
            gradInput[i] = (accumulate ? gradInput[i] : 0) + 0.5 * gradOutput[i]
        }
    }
}

@Suite("Ops: binaryConv2d")
struct BinaryConvTests {
    fileprivate static let cases: [BinaryCase] = [
        BinaryCase(batch: 2, height: 6, width: 6, channels: 3, outChannels: 4, kernel: 3, stride: 1, padding: 1),
        BinaryCase(batch: 2, height: 5, width: 5, channels: 3, outChannels: 2, kernel: 3, stride: 2, padding: 0),
        BinaryCase(batch: 2, height: 7, width: 7, channels: 16, outChannels: 5, kernel: 3, stride: 2, padding: 1),
        BinaryCase(batch: 1, height: 6, width: 5, channels: 16, outChannels: 3, kernel: 3, stride: 1, padding: 0),
        BinaryCase(batch: 1, height: 6, width: 7, channels: 65, outChannels: 3, kernel: 3, stride: 1, padding: 1),
        BinaryCase(batch: 2, height: 5, width: 5, channels: 65, outChannels: 4, kernel: 3, stride: 2, padding: 1),
        BinaryCase(batch: 2, height: 6, width: 6, channels: 16, outChannels: 3, kernel: 1, stride: 2, padding: 0),
    ]

    @Test("1W1A forward is exactly α × the zero-padded ±1 convolution", arguments: cases)
    fileprivate func forwardBinaryInput(_ c: BinaryCase) throws {
        var rng = GradCheckRandom(seed: 21)
        let x = try randomBinaryConvInput(c.inputShape, &rng)
        let w = try randomTensor(c.weightShape, &rng)
        w.withUnsafeMutableBufferPointer { $0[1] = 0 }  // sign(0) = +1 in the weights too
        let y = try binaryConv2d(x, weight: w, stride: c.stride, padding: c.padding, estimator: ReSTE(), binarizeInput: true)
        #expect(y.shape == c.outputShape)
        let alpha = naiveMeanAbs(w.scalars)
        let integers = naiveBinaryCaseConvolution(c, x: x.scalars.map(naiveSignPlusOne), w: w.scalars.map(naiveSignPlusOne))
        let expected = integers.map { Float($0) * alpha }
        let got = y.scalars
        let mismatches = got.indices.filter { got[$0] != expected[$0] }
        #expect(mismatches.isEmpty, "\(mismatches.count) outputs differ; first \(mismatches.first.map { "\($0): \(got[$0]) vs \(expected[$0])" } ?? "")")
    }

    @Test(
        "1W32A forward equals the float convolution of x with α·sign(W), with each lowering",
        arguments: cases, ConvolutionLowering.allCases)
    fileprivate func forwardRealInput(_ c: BinaryCase, lowering: ConvolutionLowering) throws {
        var rng = GradCheckRandom(seed: 22)
        let x = try randomBinaryConvInput(c.inputShape, &rng)
        let w = try randomTensor(c.weightShape, &rng)
        let y = try lowering {
            try binaryConv2d(x, weight: w, stride: c.stride, padding: c.padding, estimator: STE(), binarizeInput: false)
        }
        let alpha = Double(naiveMeanAbs(w.scalars))
        let expected = naiveBinaryCaseConvolution(c, x: x.scalars.map(Double.init), w: w.scalars.map { alpha * naiveSignPlusOne($0) })
        #expect(y.shape == c.outputShape)
        expectNearScaled(y.scalars, expected, tolerance: 1e-5, "1W32A forward")
    }

    /// Runs the op, backpropagates G and checks both gradients against the naive formulas:
    /// dL/dx = r'(x)⊙col2im(G·Wb) (1W1A) or col2im(G·Wb) (1W32A);
    /// dL/dW = α·r'(W)⊙dL/dWb + sign(W)/N·Σ(dL/dWb⊙sign(W)).
    private func checkGradients(
        _ c: BinaryCase, binarizeInput: Bool, estimator: any SignEstimator, derivative: (Float) -> Double,
        seed: UInt64
    ) throws {
        var rng = GradCheckRandom(seed: seed)
        let x = try randomBinaryConvInput(c.inputShape, &rng)
        x.requiresGrad = true
        let w = try randomTensor(c.weightShape, -1.7, 1.7, requiresGrad: true, &rng)
        let g = try randomTensor(c.outputShape, &rng)
        let y = try binaryConv2d(
            x, weight: w, stride: c.stride, padding: c.padding, estimator: estimator, binarizeInput: binarizeInput)
        try y.backward(gradient: g)

        let wValues = w.scalars
        let alpha = Double(naiveMeanAbs(wValues))
        let xValues = x.scalars
        let xb = binarizeInput ? xValues.map(naiveSignPlusOne) : xValues.map(Double.init)
        let wb = wValues.map { alpha * naiveSignPlusOne($0) }
        let (dXb, dWb) = naiveBinaryConvGradients(c, xb: xb, wb: wb, g: g.scalars.map(Double.init))

        let expectedX = binarizeInput ? xValues.indices.map { derivative(xValues[$0]) * dXb[$0] } : dXb
        expectNearScaled(try #require(x.grad).scalars, expectedX, tolerance: 1e-5, "dL/dx")

        let throughAlpha = wValues.indices.reduce(0.0) { $0 + dWb[$1] * naiveSignPlusOne(wValues[$1]) } / Double(w.count)
        let expectedW = wValues.indices.map {
            alpha * derivative(wValues[$0]) * dWb[$0] + naiveSignPlusOne(wValues[$0]) * throughAlpha
        }
        expectNearScaled(try #require(w.grad).scalars, expectedW, tolerance: 1e-5, "dL/dW")
    }

    @Test(
        "gradients with ReSTE (o = 2) and ApproxSign match the formulas computed naively, 1W1A and 1W32A",
        arguments: cases, [true, false])
    fileprivate func gradientsAgainstFormulas(_ c: BinaryCase, binarizeInput: Bool) throws {
        var reste = ReSTE()
        reste.o = 2
        try checkGradients(
            c, binarizeInput: binarizeInput, estimator: reste,
            derivative: { v in
                let a = Double(abs(v))
                return a > 1.5 ? 0 : a > Double(Float(0.1)) ? 0.5 / a.squareRoot() : (0.1 as Double).squareRoot() / 0.1
            }, seed: 31)
        try checkGradients(
            c, binarizeInput: binarizeInput, estimator: ApproxSign(),
            derivative: { v in abs(v) <= 1 ? 2 - 2 * Double(abs(v)) : 0 }, seed: 32)
    }

    @Test(
        "with each lowering, the gradients are the same formulas",
        arguments: cases, ConvolutionLowering.allCases)
    fileprivate func gradientsEachLowering(_ c: BinaryCase, lowering: ConvolutionLowering) throws {
        try lowering {
            for binarizeInput in [true, false] {
                try checkGradients(
                    c, binarizeInput: binarizeInput, estimator: STE(),
                    derivative: { abs($0) <= 1 ? 1 : 0 }, seed: 33)
            }
        }
    }

    @Test("with the identity estimator, dL/dx is conv2d's input gradient with weight α·sign(W)", arguments: cases)
    fileprivate func identityMatchesFloatConv(_ c: BinaryCase) throws {
        var rng = GradCheckRandom(seed: 41)
        for binarizeInput in [true, false] {
            let x = try randomBinaryConvInput(c.inputShape, &rng)
            x.requiresGrad = true
            let w = try randomTensor(c.weightShape, requiresGrad: true, &rng)
            let g = try randomTensor(c.outputShape, &rng)
            let y = try binaryConv2d(
                x, weight: w, stride: c.stride, padding: c.padding, estimator: IdentitySTE(),
                binarizeInput: binarizeInput)
            try y.backward(gradient: g)

            // The float convolution of Xb with Wb = α·sign(W), both leaves.
            let alpha = naiveMeanAbs(w.scalars)
            let xb = try Tensor(
                shape: c.inputShape, data: binarizeInput ? x.scalars.map { Float(naiveSignPlusOne($0)) } : x.scalars,
                requiresGrad: true)
            let wb = try Tensor(
                shape: c.weightShape, data: w.scalars.map { alpha * Float(naiveSignPlusOne($0)) }, requiresGrad: true)
            let reference = try conv2d(xb, weight: wb, stride: c.stride, padding: c.padding)
            expectNearScaled(y.scalars, reference.scalars.map(Double.init), tolerance: 1e-5, "forward")
            try reference.backward(gradient: g)
            expectNearScaled(try #require(x.grad).scalars, try #require(xb.grad).scalars.map(Double.init), tolerance: 1e-6, "dL/dx")

            // dL/dW from conv2d's dL/dWb with r' = 1.
            let dWb = try #require(wb.grad).scalars.map(Double.init)
            let signs = w.scalars.map(naiveSignPlusOne)
            let throughAlpha = signs.indices.reduce(0.0) { $0 + dWb[$1] * signs[$1] } / Double(w.count)
            expectNearScaled(
                try #require(w.grad).scalars, signs.indices.map { Double(alpha) * dWb[$0] + signs[$0] * throughAlpha },
                tolerance: 1e-5, "dL/dW")
        }
    }

    @Test(
        "the gradient through α matches finite differences where sign is constant and r'(W) = 0 (|W| > 1.5)",
        arguments: [cases[0], cases[2], cases[4]])
    fileprivate func alphaPathFiniteDifferences(_ c: BinaryCase) throws {
        var rng = GradCheckRandom(seed: 51)
        // |w| in [1.6, 3] with random signs and ReSTE's r'(w) = 0 there: the loss is linear in each weight through
        // α alone, so central differences are exact up to rounding for any step that flips no sign. A step of one
        // weight moves α by step/N only, and the float GEMM's rounding of every output shifts with α, so the step is
        // as large as the signs allow (1.5 < 1.6) to keep that rounding far below the change measured.
        let magnitudes = try randomTensor(c.weightShape, 1.6, 3, &rng).scalars
        let w = try Tensor(
            shape: c.weightShape, data: magnitudes.map { rng.next() & 1 == 0 ? $0 : -$0 }, requiresGrad: true)
        var reste = ReSTE()
        reste.o = 2.5
        for binarizeInput in [true, false] {
            let x = try randomBinaryConvInput(c.inputShape, &rng)
            // In 1W32A the op is linear in x as well, so x's gradient is checked by the same differences.
            x.requiresGrad = !binarizeInput
            let compared = try expectGradientsMatch([x, w], step: 1.5, relative: 1e-3, absolute: 1e-4) { inputs in
                try binaryConv2d(
                    inputs[0], weight: inputs[1], stride: c.stride, padding: c.padding, estimator: reste,
                    binarizeInput: binarizeInput)
            }
            #expect(compared == w.count + (binarizeInput ? 0 : x.count))
        }
    }

    /// dL/dx after one backward and after a second one (which accumulates), and dL/dW, of a 1W1A convolution.
    private func binaryGradients(
        _ c: BinaryCase, x: [Float], w: [Float], g: Tensor, estimator: any SignEstimator
    ) throws -> (first: [Float], second: [Float], weight: [Float]) {
        let x = try Tensor(shape: c.inputShape, data: x, requiresGrad: true)
        let w = try Tensor(shape: c.weightShape, data: w, requiresGrad: true)
        var first: [Float] = []
        for _ in 0..<2 {
            try binaryConv2d(x, weight: w, stride: c.stride, padding: c.padding, estimator: estimator, binarizeInput: true)
                .backward(gradient: g)
            if first.isEmpty { first = try #require(x.grad).scalars }
        }
        return (first, try #require(x.grad).scalars, try #require(w.grad).scalars)
    }

    @Test(
        "the library's estimators inside the input-gradient kernel give the bits of their separate pass, on every path",
        arguments: cases)
    fileprivate func estimatorInsideKernelSameBits(_ c: BinaryCase) throws {
        var rng = GradCheckRandom(seed: 81)
        let x = try randomBinaryConvInput(c.inputShape, &rng).scalars
        let w = try randomTensor(c.weightShape, -1.7, 1.7, &rng).scalars
        let g = try randomTensor(c.outputShape, &rng)
        var estimators = try signEstimatorNames.map { try makeEstimator(named: $0) }
        // ReSTE's general path (o > 1) and EDE at the sharp end of its schedule, beside both at epoch 0.
        for var estimator in estimators where estimator is ReSTE || estimator is EDE {
            estimator.setEpoch(9, of: 10)
            estimators.append(estimator)
        }
        for estimator in estimators {
            #expect(kernelRule(of: estimator) != nil && kernelRule(of: SeparatePass(base: estimator)) == nil)
            #expect(kernelRule(of: TimedEstimator(estimator, clock: EstimatorClock())) != nil)
        }
        for path in Kernels.supportedPaths {
            for lowering in [nil, ConvolutionPlan.Lowering.direct] {
                try Kernels.withSettings(path: path) {
                    try ConvolutionPlan.$loweringOverride.withValue(lowering) {
                        for estimator in estimators {
                            let fused = try binaryGradients(c, x: x, w: w, g: g, estimator: estimator)
                            let separate = try binaryGradients(
                                c, x: x, w: w, g: g, estimator: SeparatePass(base: estimator))
                            let context = "\(estimator), path \(path.name), lowering \(lowering.map { "\($0)" } ?? "automatic")"
                            #expect(fused.first.map(\.bitPattern) == separate.first.map(\.bitPattern), "dL/dx, \(context)")
                            #expect(
                                fused.second.map(\.bitPattern) == separate.second.map(\.bitPattern),
                                "dL/dx accumulated, \(context)")
                            #expect(fused.weight.map(\.bitPattern) == separate.weight.map(\.bitPattern), "dL/dW, \(context)")
                        }
                    }
                }
            }
        }
    }

    @Test("a user's estimator written in Swift gets the separate pass", arguments: [cases[2], cases[5]])
    fileprivate func userEstimator(_ c: BinaryCase) throws {
        var rng = GradCheckRandom(seed: 82)
        let x = try randomBinaryConvInput(c.inputShape, &rng).scalars
        let w = try randomTensor(c.weightShape, &rng).scalars
        let g = try randomTensor(c.outputShape, &rng)
        let half = try binaryGradients(c, x: x, w: w, g: g, estimator: HalfSlope())
        let identity = try binaryGradients(c, x: x, w: w, g: g, estimator: IdentitySTE())
        // Halving is exact, so ½·dL/dXb is half the identity's dL/dx to the bit.
        #expect(half.first == identity.first.map { 0.5 * $0 })
        #expect(half.second == identity.second.map { 0.5 * $0 })
    }

    @Test("gradients accumulate over two backward passes")
    func accumulation() throws {
        let c = Self.cases[2]
        var rng = GradCheckRandom(seed: 61)
        for binarizeInput in [true, false] {
            let x = try randomBinaryConvInput(c.inputShape, &rng)
            x.requiresGrad = true
            let w = try randomTensor(c.weightShape, requiresGrad: true, &rng)
            let g = try randomTensor(c.outputShape, &rng)
            var grads: [([Float], [Float])] = []
            for _ in 0..<2 {
                let y = try binaryConv2d(
                    x, weight: w, stride: c.stride, padding: c.padding, estimator: ApproxSign(),
                    binarizeInput: binarizeInput)
                try y.backward(gradient: g)
                grads.append((try #require(x.grad).scalars, try #require(w.grad).scalars))
            }
            expectNearScaled(grads[1].0, grads[0].0.map { 2 * Double($0) }, tolerance: 1e-6, "x accumulated")
            expectNearScaled(grads[1].1, grads[0].1.map { 2 * Double($0) }, tolerance: 1e-6, "W accumulated")
        }
    }

    @Test("only what requires grad gets a gradient; no graph under withNoGrad")
    func partialGradients() throws {
        let c = Self.cases[0]
        var rng = GradCheckRandom(seed: 71)
        let x = try randomBinaryConvInput(c.inputShape, &rng)
        let w = try randomTensor(c.weightShape, requiresGrad: true, &rng)
        let g = try randomTensor(c.outputShape, &rng)
        try binaryConv2d(x, weight: w, stride: 1, padding: 1, estimator: ReSTE(), binarizeInput: true).backward(gradient: g)
        #expect(x.grad == nil && w.grad != nil)

        x.requiresGrad = true
        w.requiresGrad = false
        w.zeroGrad()
        try binaryConv2d(x, weight: w, stride: 1, padding: 1, estimator: ReSTE(), binarizeInput: true).backward(gradient: g)
        #expect(x.grad != nil && w.grad == nil)

        let y = try withNoGrad {
            try binaryConv2d(x, weight: w, stride: 1, padding: 1, estimator: ReSTE(), binarizeInput: true)
        }
        #expect(y.isLeaf && !y.requiresGrad)
    }

    @Test("bad shapes are errors naming binaryConv2d and the argument")
    func badShapes() throws {
        let x = try Tensor.zeros(shape: [1, 4, 4, 3])
        let wrongChannels = try Tensor.zeros(shape: [2, 4, 3, 3])
        let flat = try Tensor.zeros(shape: [2, 27])
        for (weight, needle) in [(wrongChannels, "input channels"), (flat, "`weight` must have rank 4")] {
            do {
                _ = try binaryConv2d(x, weight: weight, stride: 1, padding: 1, estimator: STE(), binarizeInput: true)
                Issue.record("weight \(weight.shape) was accepted")
            } catch let error as BNNError {
                #expect(error.message.contains("binaryConv2d") && error.message.contains(needle), "\(error)")
            }
        }
        expectBNNError(.tensor) {
            try binaryConv2d(
                x, weight: try Tensor.zeros(shape: [2, 3, 7, 7]), stride: 1, padding: 1, estimator: STE(),
                binarizeInput: false)
        }
        expectBNNError(.tensor) {
            try binaryConv2d(
                x, weight: try Tensor.zeros(shape: [2, 3, 3, 3]), stride: 0, padding: 1, estimator: STE(),
                binarizeInput: true)
        }
    }
}
