import BNN
import Testing

/// Per-channel mean and biased variance of a tensor whose last dimension is the channel, in double.
private func channelMoments(_ x: Tensor) -> (mean: [Double], variance: [Double]) {
    let channels = x.shape.last!
    let rows = x.count / channels
    let v = x.scalars
    var mean = [Double](repeating: 0, count: channels)
    var variance = mean
    for r in 0..<rows { for c in 0..<channels { mean[c] += Double(v[r * channels + c]) } }
    for c in 0..<channels { mean[c] /= Double(rows) }
    for r in 0..<rows {
        for c in 0..<channels {
            let d = Double(v[r * channels + c]) - mean[c]
            variance[c] += d * d
        }
    }
    for c in 0..<channels { variance[c] /= Double(rows) }
    return (mean, variance)
}

/// (x − mean)/√(var + eps)·γ + β per channel, in double.
private func normalized(_ x: Tensor, mean: [Double], variance: [Double], gamma: [Float], beta: [Float]) -> [Double] {
    let channels = x.shape.last!
    return x.scalars.enumerated().map { index, value in
        let c = index % channels
        return (Double(value) - mean[c]) / (variance[c] + 1e-5).squareRoot() * Double(gamma[c]) + Double(beta[c])
    }
}

@Suite("Ops: batch norm")
struct OpsNormalizationTests {
    @Test("hand-computed batchNorm1d: normalisation with biased variance, running variance unbiased")
    func handComputed() throws {
        let x = try Tensor(shape: [4, 1], data: [1, 2, 3, 4])
        let statistics = try BatchNormStatistics(channels: 1)
        let y = try batchNorm1d(x, weight: nil, bias: nil, statistics: statistics, training: true)
        // mean 2.5, biased variance 1.25, unbiased 5/3.
        let expected = [1.0, 2, 3, 4].map { ($0 - 2.5) / (1.25 + 1e-5).squareRoot() }
        #expect(maxDifference(y.scalars, expected) < 1e-6)
        #expect(abs(Double(statistics.runningMean.scalars[0]) - 0.25) < 1e-7)
        #expect(abs(Double(statistics.runningVar.scalars[0]) - (0.9 + 0.1 * 5.0 / 3.0)) < 1e-6)
        #expect(statistics.numBatchesTracked == 1)
    }

    @Test("batchNorm2d training: batch statistics over N·H·W per channel, affine, running-stat update")
    func training2d() throws {
        var rng = GradCheckRandom(seed: 21)
        let x1 = try randomTensor([3, 2, 5, 4], -2, 3, &rng)
        let x2 = try randomTensor([3, 2, 5, 4], -1, 1, &rng)
        let gamma = try randomTensor([4], 0.5, 2, &rng)
        let beta = try randomTensor([4], &rng)
        let statistics = try BatchNormStatistics(channels: 4)
        let y = try batchNorm2d(x1, weight: gamma, bias: beta, statistics: statistics, training: true)
        let (m1, v1) = channelMoments(x1)
        let expected = normalized(x1, mean: m1, variance: v1, gamma: gamma.scalars, beta: beta.scalars)
        #expect(maxDifference(y.scalars, expected) < 1e-5)

        _ = try batchNorm2d(x2, weight: gamma, bias: beta, statistics: statistics, training: true)
        let (m2, v2) = channelMoments(x2)
        let rows = 30.0
        let unbiased = rows / (rows - 1)
        let expectedMean = (0..<4).map { 0.9 * (0.1 * m1[$0]) + 0.1 * m2[$0] }
        let expectedVar = (0..<4).map { 0.9 * (0.9 + 0.1 * v1[$0] * unbiased) + 0.1 * v2[$0] * unbiased }
        #expect(maxDifference(statistics.runningMean.scalars, expectedMean) < 1e-6)
        #expect(maxDifference(statistics.runningVar.scalars, expectedVar) < 1e-5)
        #expect(statistics.numBatchesTracked == 2)
    }

    @Test("momentum nil keeps a cumulative average of the batch statistics")
    func cumulativeAverage() throws {
        var rng = GradCheckRandom(seed: 22)
        let statistics = try BatchNormStatistics(channels: 2, momentum: nil)
        var means: [[Double]] = []
        for _ in 0..<3 {
            let x = try randomTensor([5, 2], -3, 3, &rng)
            _ = try batchNorm1d(x, weight: nil, bias: nil, statistics: statistics, training: true)
            means.append(channelMoments(x).mean)
        }
        let average = (0..<2).map { c in means.map { $0[c] }.reduce(0, +) / 3 }
        #expect(maxDifference(statistics.runningMean.scalars, average) < 1e-6)
    }

    @Test("evaluation normalises with the running statistics and leaves them unchanged")
    func evaluation() throws {
        var rng = GradCheckRandom(seed: 23)
        let x = try randomTensor([2, 3, 3, 3], &rng)
        let statistics = try BatchNormStatistics(
            runningMean: Tensor(shape: [3], data: [0.5, -1, 2]), runningVar: Tensor(shape: [3], data: [0.25, 4, 1]),
            numBatchesTracked: 7)
        let gamma = try randomTensor([3], &rng)
        let beta = try randomTensor([3], &rng)
        let y = try batchNorm2d(x, weight: gamma, bias: beta, statistics: statistics, training: false)
        let expected = normalized(
            x, mean: [0.5, -1, 2], variance: [0.25, 4, 1], gamma: gamma.scalars, beta: beta.scalars)
        #expect(maxDifference(y.scalars, expected) < 1e-5)
        #expect(statistics.runningMean.scalars == [0.5, -1, 2] && statistics.runningVar.scalars == [0.25, 4, 1])
        #expect(statistics.numBatchesTracked == 7)
    }

    @Test("training-mode gradients of x, γ and β match finite differences")
    func trainingGradients() throws {
        var rng = GradCheckRandom(seed: 24)
        let x = try randomTensor([2, 3, 3, 3], -2, 2, requiresGrad: true, &rng)
        let gamma = try randomTensor([3], 0.5, 2, requiresGrad: true, &rng)
        let beta = try randomTensor([3], requiresGrad: true, &rng)
        let statistics = try BatchNormStatistics(channels: 3)
        try expectGradientsMatch([x, gamma, beta]) { t in
            try batchNorm2d(t[0], weight: t[1], bias: t[2], statistics: statistics, training: true)
        }
        let features = try randomTensor([5, 4], -2, 2, requiresGrad: true, &rng)
        try expectGradientsMatch([features]) { t in
            try batchNorm1d(t[0], weight: nil, bias: nil, statistics: nil, training: true)
        }
    }

    @Test("evaluation-mode gradients of x, γ and β match finite differences")
    func evaluationGradients() throws {
        var rng = GradCheckRandom(seed: 25)
        let x = try randomTensor([3, 4], -2, 2, requiresGrad: true, &rng)
        let gamma = try randomTensor([4], 0.5, 2, requiresGrad: true, &rng)
        let beta = try randomTensor([4], requiresGrad: true, &rng)
        let statistics = try BatchNormStatistics(
            runningMean: Tensor(shape: [4], data: [0.1, 0.2, -0.3, 0]),
            runningVar: Tensor(shape: [4], data: [1, 2, 0.5, 3]))
        try expectGradientsMatch([x, gamma, beta]) { t in
            try batchNorm1d(t[0], weight: t[1], bias: t[2], statistics: statistics, training: false)
        }
    }

    @Test("bad arguments are errors")
    func errors() throws {
        let one = try Tensor.zeros(shape: [1, 1, 1, 3])
        expectBNNError(.tensor) {
            try batchNorm2d(one, weight: nil, bias: nil, statistics: nil, training: true)
        }
        let x = try Tensor.zeros(shape: [2, 3])
        expectBNNError(.tensor) {
            try batchNorm1d(x, weight: nil, bias: nil, statistics: nil, training: false)
        }
        expectBNNError(.tensor) {
            try batchNorm1d(x, weight: Tensor.ones(shape: [4]), bias: nil, statistics: nil, training: true)
        }
        expectBNNError(.tensor) {
            try batchNorm1d(x, weight: nil, bias: nil, statistics: BatchNormStatistics(channels: 2), training: true)
        }
        expectBNNError(.tensor) {
            try batchNorm2d(x, weight: nil, bias: nil, statistics: nil, training: true)
        }
    }
}

/// `batchNorm2d(reluOf:)` is `batchNorm2d(relu(x))` to the bit: output, the input's gradient (written and added to),
/// γ's and β's gradients and the running statistics, in training and evaluation mode, with exact zeros in x (where the
/// ReLU's gradient at 0 applies) and both rules at 0.
@Suite("Batch norm of a ReLU")
struct BatchNormOfReLUTests {
    @Test(arguments: [(true, Float(0)), (true, Float(0.5)), (false, Float(0)), (false, Float(0.5))])
    func fusedEqualsTwoOps(training: Bool, gradientAtZero: Float) throws {
        let shape = [3, 5, 4, 7]
        var generator = Xoshiro256StarStar(seed: 17)
        // A third of the inputs exactly 0.
        let values = (0..<shape.reduce(1, *)).map { i -> Float in
            i % 3 == 0 ? 0 : Float(Double(generator.next() >> 11) * 0x1p-53 * 4 - 2)
        }
        let upstream = try Tensor.randn(shape: shape, using: &generator)
        let earlier = try Tensor.randn(shape: shape, using: &generator)
        func run(fused: Bool) throws -> (out: [Float], dx: [Float], dw: [Float], db: [Float], stats: [Float]) {
            let x = try Tensor(shape: shape, data: values, requiresGrad: true)
            // x's gradient already holds something: the op must add to it.
            x.grad = try Tensor(shape: shape, data: earlier.scalars)
            let w = try Tensor(shape: [7], data: (0..<7).map { Float($0) * 0.25 - 0.6 }, requiresGrad: true)
            let b = try Tensor(shape: [7], data: (0..<7).map { Float($0) * 0.1 }, requiresGrad: true)
            let statistics = try BatchNormStatistics(channels: 7)
            try statistics.runningVar.withUnsafeMutableBufferPointer { $0.update(repeating: 1.5) }
            let out = fused
                ? try batchNorm2d(reluOf: x, gradientAtZero: gradientAtZero, weight: w, bias: b, statistics: statistics, training: training)
                : try batchNorm2d(
                    relu(x, gradientAtZero: gradientAtZero), weight: w, bias: b, statistics: statistics, training: training)
            try out.backward(gradient: upstream)
            return (out.scalars, x.grad!.scalars, w.grad!.scalars, b.grad!.scalars,
                    statistics.runningMean.scalars + statistics.runningVar.scalars)
        }
        let fused = try run(fused: true), separate = try run(fused: false)
        #expect(fused.out.map(\.bitPattern) == separate.out.map(\.bitPattern))
        #expect(fused.dx.map(\.bitPattern) == separate.dx.map(\.bitPattern))
        #expect(fused.dw.map(\.bitPattern) == separate.dw.map(\.bitPattern))
        #expect(fused.db.map(\.bitPattern) == separate.db.map(\.bitPattern))
        #expect(fused.stats.map(\.bitPattern) == separate.stats.map(\.bitPattern))
    }
}
