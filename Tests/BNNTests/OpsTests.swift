import BNN
import Glibc
import Testing

@Suite("Ops: activations, element-wise, linear, loss, shape, metrics")
struct OpsTests {
    @Test("relu and hardtanh values, including NaN and the bounds")
    func activationValues() throws {
        let x = try Tensor(shape: [7], data: [-2, -1, -0.5, 0, 0.5, 1, 2])
        #expect(try relu(x).scalars == [0, 0, 0, 0, 0.5, 1, 2])
        #expect(try hardtanh(x).scalars == [-1, -1, -0.5, 0, 0.5, 1, 1])
        #expect(try relu(Tensor(shape: [1], data: [.nan])).scalars[0].isNaN)
        #expect(try hardtanh(Tensor(shape: [1], data: [.nan])).scalars[0].isNaN)
    }

    @Test("relu gradient is 0 at 0; hardtanh gradient is 0 on the bounds (as PyTorch)")
    func activationGradientsAtKinks() throws {
        let x = try Tensor(shape: [7], data: [-2, -1, -0.5, 0, 0.5, 1, 2], requiresGrad: true)
        try relu(x).backward(gradient: Tensor.ones(shape: [7]))
        #expect(x.grad?.scalars == [0, 0, 0, 0, 1, 1, 1])
        x.zeroGrad()
        try hardtanh(x).backward(gradient: Tensor.ones(shape: [7]))
        #expect(x.grad?.scalars == [0, 0, 1, 1, 1, 0, 0])
    }

    @Test("relu's gradient at exactly 0 is the value asked for, and accumulates like the others")
    func reluGradientAtZero() throws {
        let x = try Tensor(shape: [5], data: [-1, -0.0, 0, 1e-30, 2], requiresGrad: true)
        let g = try Tensor(shape: [5], data: [3, 5, 7, 11, 13])
        try relu(x, gradientAtZero: 0.5).backward(gradient: g)
        #expect(x.grad?.scalars == [0, 2.5, 3.5, 11, 13])
        try relu(x, gradientAtZero: 1).backward(gradient: g)
        #expect(x.grad?.scalars == [0, 7.5, 10.5, 22, 26])
        // A ResNet-20 block passes its setting to both ReLUs; the default is PyTorch's rule.
        #expect(try ResNet20(variant: .binary, estimator: STE(), seed: 1).layer1[0].reluGradientAtZero == 0)
        expectBNNError(.module) {
            try ResNet20(variant: .binary, estimator: STE(), seed: 1, reluGradientAtZero: 1.5)
        }
    }

    @Test("activation, add and scale gradients match finite differences")
    func elementwiseGradients() throws {
        var rng = GradCheckRandom(seed: 41)
        let x = try tensorAwayFromZero([3, 4, 5], requiresGrad: true, &rng)
        try expectGradientsMatch([x]) { t in try relu(t[0]) }
        let wide = try randomTensor([50], -2, 2, requiresGrad: true, &rng)
        // Keep the bounds ±1 farther than the step from every value.
        wide.withUnsafeMutableBufferPointer { values in
            for i in values.indices where abs(abs(values[i]) - 1) < 0.05 { values[i] *= 0.9 }
        }
        try expectGradientsMatch([wide]) { t in try hardtanh(t[0]) }
        let y = try randomTensor([3, 4, 5], requiresGrad: true, &rng)
        try expectGradientsMatch([x, y]) { t in try add(multiply(t[0], by: -1.5), t[1]) }
        expectBNNError(.tensor) { try add(x, Tensor.zeros(shape: [3, 4])) }
    }

    @Test("linear equals x·Wᵀ + b; gradients match", arguments: [false, true])
    func linearLayer(withBias: Bool) throws {
        var rng = GradCheckRandom(seed: 42)
        let x = try randomTensor([3, 5], requiresGrad: true, &rng)
        let w = try randomTensor([4, 5], requiresGrad: true, &rng)
        let b = withBias ? try randomTensor([4], requiresGrad: true, &rng) : nil
        let y = try linear(x, weight: w, bias: b)
        let (xv, wv, bv) = (x.scalars, w.scalars, b?.scalars)
        let expected = (0..<12).map { index -> Double in
            let (n, o) = (index / 4, index % 4)
            return (0..<5).map { Double(xv[n * 5 + $0]) * Double(wv[o * 5 + $0]) }.reduce(0, +)
                + (bv.map { Double($0[o]) } ?? 0)
        }
        #expect(y.shape == [3, 4])
        #expect(maxDifference(y.scalars, expected) < 1e-5)
        try expectGradientsMatch([x, w] + (b.map { [$0] } ?? [])) { t in
            try linear(t[0], weight: t[1], bias: t.count > 2 ? t[2] : nil)
        }
        expectBNNError(.tensor) { try linear(x, weight: Tensor.zeros(shape: [4, 6])) }
    }

    @Test("cross-entropy equals the hand-computed mean of logsumexp − logit[label]; stable for large logits")
    func crossEntropyValue() throws {
        let logits = try Tensor(shape: [2, 3], data: [1, 2, 3, 0, 0, 0])
        let loss = try crossEntropy(logits, labels: [2, 1])
        let first: Double = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3
        let second: Double = log(3.0)
        #expect(abs(Double(try loss.item()) - (first + second) / 2) < 1e-6)
        #expect(loss.shape == [])

        let large = try Tensor(shape: [1, 3], data: [1000, 999, -1000])
        let stable = try crossEntropy(large, labels: [1]).item()
        #expect(abs(Double(stable) - (1 + log(1 + exp(-1.0)))) < 1e-5)

        expectBNNError(.tensor) { try crossEntropy(logits, labels: [0]) }
        expectBNNError(.tensor) { try crossEntropy(logits, labels: [0, 3]) }
    }

    @Test("cross-entropy gradient is (softmax − onehot)/N and matches finite differences")
    func crossEntropyGradient() throws {
        var rng = GradCheckRandom(seed: 43)
        let logits = try randomTensor([4, 5], -3, 3, requiresGrad: true, &rng)
        try expectGradientsMatch([logits], step: 1e-2, relative: 1e-2, absolute: 1e-4) { t in
            try crossEntropy(t[0], labels: [0, 4, 2, 2])
        }
        let twoClass = try Tensor(shape: [1, 2], data: [0, 0], requiresGrad: true)
        try crossEntropy(twoClass, labels: [1]).backward()
        #expect(twoClass.grad?.scalars == [0.5, -0.5])
    }

    @Test("flatten orders NHWC features as PyTorch's NCHW flatten; reshape shares memory; gradients match")
    func shapeOps() throws {
        var rng = GradCheckRandom(seed: 44)
        let x = try randomTensor([2, 3, 2, 4], requiresGrad: true, &rng)
        let y = try flatten(x)
        #expect(y.shape == [2, 24])
        let v = x.scalars
        let out = y.scalars
        var mismatches = 0
        for n in 0..<2 {
            for c in 0..<4 {
                for h in 0..<3 {
                    for w in 0..<2 where out[n * 24 + (c * 3 + h) * 2 + w] != v[((n * 3 + h) * 2 + w) * 4 + c] {
                        mismatches += 1
                    }
                }
            }
        }
        #expect(mismatches == 0)
        try expectGradientsMatch([x]) { t in try flatten(t[0]) }

        let r = try reshape(x, to: [4, -1])
        #expect(r.shape == [4, 12] && r.scalars == x.scalars)
        try expectGradientsMatch([x]) { t in try reshape(t[0], to: [6, 8]) }
        expectBNNError(.tensor) { try reshape(x, to: [5, -1]) }
        expectBNNError(.tensor) { try reshape(x, to: [-1, -1]) }
        let pooled = try Tensor.zeros(shape: [3, 1, 1, 8])
        #expect(try flatten(pooled).shape == [3, 8])
    }

    @Test("top-k counts labels among the k largest logits, ties ranked by class index")
    func topK() throws {
        let logits = try Tensor(
            shape: [4, 3],
            data: [
                0.1, 0.7, 0.2,  // label 1: top-1
                0.5, 0.3, 0.2,  // label 2: rank 3
                0.4, 0.4, 0.1,  // label 1 ties with class 0, which comes first: rank 2
                0.4, 0.4, 0.1,  // label 0: wins the tie, top-1
            ])
        let labels = [1, 2, 1, 0]
        #expect(try topKCorrect(logits, labels: labels, k: 1) == 2)
        #expect(try topKCorrect(logits, labels: labels, k: 2) == 3)
        #expect(try topKCorrect(logits, labels: labels, k: 3) == 4)
        #expect(try accuracy(logits, labels: labels) == 0.5)
        expectBNNError(.tensor) { try topKCorrect(logits, labels: [0, 1, 5, 0]) }
    }
}
