import BNN
import Foundation
import Testing

/// Largest |a[i] − b[i]|, or infinity when the counts differ.
private func largestDifference(_ a: [Float], _ b: [Double]) -> Double {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).reduce(0) { max($0, abs(Double($1.0) - $1.1)) }
}

/// Two parameters [1, −2] and [5] (the second never gets a gradient) and the gradients of three steps.
private func problem() throws -> (weight: Tensor, frozen: Tensor, gradients: [[Float]]) {
    let weight = try Tensor(shape: [2], data: [1, -2], requiresGrad: true)
    let frozen = try Tensor(shape: [1], data: [5], requiresGrad: true)
    return (weight, frozen, [[0.5, -0.1], [0.25, 0.3], [-1, 0.2]])
}

/// Sets `tensor`'s gradient to `values` (as a backward pass would).
private func setGradient(_ tensor: Tensor, _ values: [Float]) throws {
    tensor.zeroGrad()
    try tensor.accumulateGradient(Tensor(shape: tensor.shape, data: values))
}

@Suite("Optimizers and learning-rate schedule")
struct OptimizerTests {
    @Test("SGD: three steps with momentum 0.9 and weight decay match torch.optim.SGD's rule by hand")
    func sgdSteps() throws {
        let (weight, frozen, gradients) = try problem()
        let optimizer = SGD(
            parameters: [("w", weight), ("frozen", frozen)], learningRate: 0.1, momentum: 0.9, weightDecay: 0.01)
        // d = g + 0.01·p; buf = d, then 0.9·buf + d; p −= 0.1·buf. Element 0: p 1, g 0.5, 0.25, −1:
        //   d 0.51, buf 0.51, p 0.949; d 0.25949, buf 0.71849, p 0.877151; d −0.99122849, buf −0.34458749,
        //   p 0.911609749. Element 1 likewise from p −2, g −0.1, 0.3, 0.2.
        let expectedWeights: [[Double]] = [[0.949, -1.988], [0.877151, -2.005212], [0.911609749, -2.038697588]]
        let expectedBuffers: [[Double]] = [[0.51, -0.12], [0.71849, 0.17212], [-0.34458749, 0.33485588]]
        for step in 0..<3 {
            try setGradient(weight, gradients[step])
            try optimizer.step()
            #expect(largestDifference(weight.scalars, expectedWeights[step]) < 2e-6, "step \(step + 1)")
            let buffer = try #require(optimizer.stateDict()["w.momentum_buffer"])
            #expect(largestDifference(try buffer.floats(), expectedBuffers[step]) < 2e-6, "step \(step + 1)")
        }
        #expect(frozen.scalars == [5])
        #expect(Set(optimizer.stateDict().keys) == ["w.momentum_buffer"])
        optimizer.zeroGrad()
        #expect(weight.grad == nil)
    }

    @Test("SGD without momentum: p −= lr·(g + wd·p), no state")
    func sgdPlain() throws {
        let weight = try Tensor(shape: [2], data: [1, -2], requiresGrad: true)
        let optimizer = SGD(parameters: [("w", weight)], learningRate: 0.5, momentum: 0, weightDecay: 0.1)
        try setGradient(weight, [0.5, -0.1])
        try optimizer.step()
        #expect(largestDifference(weight.scalars, [1 - 0.5 * 0.6, -2 - 0.5 * (-0.3)]) < 1e-6)
        #expect(optimizer.stateDict().isEmpty)
    }

    @Test("Adam: three steps with L2 weight decay match torch.optim.Adam's rule by hand")
    func adamSteps() throws {
        let (weight, frozen, gradients) = try problem()
        let optimizer = Adam(parameters: [("w", weight), ("frozen", frozen)], learningRate: 0.01, weightDecay: 0.1)
        // g += 0.1·p; m += 0.1·(g − m); v = 0.999·v + 0.001·g²; p −= (0.01 / (1 − 0.9ᵗ))·m / (√v / √(1 − 0.999ᵗ) + 1e-8),
        // evaluated in double for the same gradients.
        let expectedWeights: [[Double]] = [
            [0.9900000001666667, -1.9900000003333334],
            [0.980465827519045, -1.9860253531694585],
            [0.981037703897073, -1.982981197873437],
        ]
        let expectedFirst: [[Double]] = [
            [0.06, -0.03], [0.0889000000016667, -0.0169000000033333], [-0.0101853417233096, -0.0150702535346946],
        ]
        let expectedSecond: [[Double]] = [
            [0.00036, 0.00009], [0.00048144100001163, 0.00010011099999327], [0.00129447952589714, 0.00010001284190081],
        ]
        for step in 0..<3 {
            try setGradient(weight, gradients[step])
            try optimizer.step()
            #expect(largestDifference(weight.scalars, expectedWeights[step]) < 2e-6, "step \(step + 1)")
            let state = optimizer.stateDict()
            #expect(largestDifference(try state["w.exp_avg"]!.floats(), expectedFirst[step]) < 1e-7)
            #expect(largestDifference(try state["w.exp_avg_sq"]!.floats(), expectedSecond[step]) < 1e-8)
            #expect(try state["w.step"]!.int64s() == [Int64(step + 1)] && state["w.step"]!.shape == [])
        }
        #expect(frozen.scalars == [5])
        #expect(optimizer.stateDict()["frozen.step"] == nil)
    }

    @Test("optimizer state round trip: a restored optimizer continues exactly like the original")
    func stateRoundTrip() throws {
        for kind in ["sgd", "adam"] {
            func make(_ weight: Tensor) -> any Optimizer {
                kind == "sgd"
                    ? SGD(parameters: [("w", weight)], learningRate: 0.1)
                    : Adam(parameters: [("w", weight)], learningRate: 0.01, weightDecay: 1e-4)
            }
            let (original, _, gradients) = try problem()
            let first = make(original)
            for step in 0..<2 {
                try setGradient(original, gradients[step])
                try first.step()
            }
            let restored = try Tensor(shape: [2], data: original.scalars, requiresGrad: true)
            let second = make(restored)
            try second.loadStateDict(first.stateDict())
            #expect(second.stateDict() == first.stateDict(), "\(kind)")
            try setGradient(original, gradients[2])
            try setGradient(restored, gradients[2])
            try first.step()
            try second.step()
            #expect(restored.scalars == original.scalars, "\(kind)")
        }
    }

    @Test("optimizer loadStateDict refuses unknown keys, wrong shapes and partial Adam state, changing nothing")
    func stateErrors() throws {
        let weight = try Tensor(shape: [2], data: [1, 2], requiresGrad: true)
        let sgd = SGD(parameters: [("w", weight)], learningRate: 0.1)
        let buffer = try SafeTensors.TensorData([1, 1] as [Float], shape: [2])
        try sgd.loadStateDict(["w.momentum_buffer": buffer])
        for (key, data, fragment) in [
            ("v.momentum_buffer", buffer, "names no parameter"),
            ("w.velocity", buffer, "expected one of momentum_buffer"),
            ("w.momentum_buffer", try SafeTensors.TensorData([1, 1, 1] as [Float], shape: [3]), "expected shape [2], found [3]"),
            ("w.momentum_buffer", try SafeTensors.TensorData([1, 1] as [Int64], shape: [2]), "I64"),
        ] {
            do {
                try sgd.loadStateDict([key: data])
                Issue.record("SGD accepted \(key)")
            } catch let error as BNNError {
                #expect(error.message.contains(fragment), "\(error.message)")
                #expect(error.message.contains(key), "\(error.message)")
            }
        }
        #expect(try sgd.stateDict()["w.momentum_buffer"]?.floats() == [1, 1])

        let adam = Adam(parameters: [("w", weight)])
        do {
            try adam.loadStateDict(["w.exp_avg": buffer, "w.step": SafeTensors.TensorData([3] as [Int64], shape: [])])
            Issue.record("Adam accepted partial state")
        } catch let error as BNNError {
            #expect(error.message.contains("w.exp_avg_sq"), "\(error.message)")
        }
        expectBNNError(.optimizer) {
            try adam.loadStateDict([
                "w.exp_avg": buffer, "w.exp_avg_sq": buffer,
                "w.step": SafeTensors.TensorData([1.5] as [Float], shape: []),
            ])
        }
        // PyTorch saves `step` as a float tensor; an integral one is accepted.
        try adam.loadStateDict([
            "w.exp_avg": buffer, "w.exp_avg_sq": buffer, "w.step": SafeTensors.TensorData([4] as [Float], shape: []),
        ])
        #expect(try adam.stateDict()["w.step"]?.int64s() == [4])
    }

    @Test("optimizers refuse duplicate parameters and bad hyperparameters at step()")
    func configurationErrors() throws {
        let weight = try Tensor(shape: [1], data: [1], requiresGrad: true)
        let other = try Tensor(shape: [1], data: [1], requiresGrad: true)
        try setGradient(weight, [1])
        try setGradient(other, [1])
        expectBNNError(.optimizer) { try SGD(parameters: [("w", weight), ("w", other)], learningRate: 0.1).step() }
        expectBNNError(.optimizer) { try Adam(parameters: [("a", weight), ("b", weight)]).step() }
        expectBNNError(.optimizer) { try SGD(parameters: [("w", weight)], learningRate: -1).step() }
        expectBNNError(.optimizer) { try SGD(parameters: [("w", weight)], learningRate: .nan).step() }
        expectBNNError(.optimizer) { try Adam(parameters: [("w", weight)], beta2: 1).step() }
        #expect(weight.scalars == [1] && other.scalars == [1])
    }

    @Test("cosine schedule: PyTorch's CosineAnnealingLR(T_max = E) per epoch, and the linear warm-up")
    func schedule() throws {
        let plain = LearningRateSchedule(baseLearningRate: 0.1, epochs: 10, warmupEpochs: 0)
        try plain.validate()
        // 0.1·(1 + cos(π·e/10))/2: e = 0 → 0.1, 5 → 0.05, 9 → 0.1·(1 − 0.9510565163)/2.
        #expect(abs(Double(plain.learningRate(epoch: 0)) - 0.1) < 1e-8)
        #expect(abs(Double(plain.learningRate(epoch: 5)) - 0.05) < 1e-8)
        #expect(abs(Double(plain.learningRate(epoch: 2)) - 0.1 * (1 + 0.8090169944) / 2) < 1e-8)
        #expect(abs(Double(plain.learningRate(epoch: 9)) - 0.1 * (1 - 0.9510565163) / 2) < 1e-8)
        #expect(plain.learningRate(epoch: 10) == 0 && plain.learningRate(epoch: 50) == 0)
        #expect(plain.learningRate(epoch: -1) == plain.learningRate(epoch: 0))

        let warm = LearningRateSchedule(baseLearningRate: 0.1, epochs: 15, warmupEpochs: 5)
        try warm.validate()
        // Warm-up 0.1·(e + 1)/5, then cosine over the remaining 10 epochs starting at 0.1.
        let expected: [Int: Double] = [0: 0.02, 1: 0.04, 4: 0.1, 5: 0.1, 10: 0.05, 14: 0.1 * (1 - 0.9510565163) / 2]
        for (epoch, value) in expected {
            #expect(abs(Double(warm.learningRate(epoch: epoch)) - value) < 1e-8, "epoch \(epoch)")
        }
        expectBNNError(.optimizer) { try LearningRateSchedule(baseLearningRate: 0.1, epochs: 0).validate() }
        expectBNNError(.optimizer) {
            try LearningRateSchedule(baseLearningRate: 0.1, epochs: 5, warmupEpochs: 5).validate()
        }
        expectBNNError(.optimizer) { try LearningRateSchedule(baseLearningRate: -1, epochs: 5).validate() }
    }
}
