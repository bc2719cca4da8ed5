import BNN
import Foundation
import Testing

/// The `state_dict()` of the authors' PyTorch `resnet20_1w1a` (DravenALG/ReSTE, model/models_cifar/resnet20.py),
/// in PyTorch's order, with shapes: stem conv1/bn1, three stages `layer1..3` of three `BasicBlock_1w1a`
/// (conv1, bn1, conv2, bn2; the option-A shortcut and the unused max_pool hold no state), then bn2
/// (BatchNorm1d(64)) and linear.
private let pytorchStateDict: [(name: String, shape: [Int])] = [
    ("conv1.weight", [16, 3, 3, 3]),
    ("bn1.weight", [16]),
    ("bn1.bias", [16]),
    ("bn1.running_mean", [16]),
    ("bn1.running_var", [16]),
    ("bn1.num_batches_tracked", []),
    ("layer1.0.conv1.weight", [16, 16, 3, 3]),
    ("layer1.0.bn1.weight", [16]),
    ("layer1.0.bn1.bias", [16]),
    ("layer1.0.bn1.running_mean", [16]),
    ("layer1.0.bn1.running_var", [16]),
    ("layer1.0.bn1.num_batches_tracked", []),
    ("layer1.0.conv2.weight", [16, 16, 3, 3]),
    ("layer1.0.bn2.weight", [16]),
    ("layer1.0.bn2.bias", [16]),
    ("layer1.0.bn2.running_mean", [16]),
    ("layer1.0.bn2.running_var", [16]),
    ("layer1.0.bn2.num_batches_tracked", []),
    ("layer1.1.conv1.weight", [16, 16, 3, 3]),
    ("layer1.1.bn1.weight", [16]),
    ("layer1.1.bn1.bias", [16]),
    ("layer1.1.bn1.running_mean", [16]),
    ("layer1.1.bn1.running_var", [16]),
    ("layer1.1.bn1.num_batches_tracked", []),
    ("layer1.1.conv2.weight", [16, 16, 3, 3]),
    ("layer1.1.bn2.weight", [16]),
    ("layer1.1.bn2.bias", [16]),
    ("layer1.1.bn2.running_mean", [16]),
    ("layer1.1.bn2.running_var", [16]),
    ("layer1.1.bn2.num_batches_tracked", []),
    ("layer1.2.conv1.weight", [16, 16, 3, 3]),
    ("layer1.2.bn1.weight", [16]),
    ("layer1.2.bn1.bias", [16]),
    ("layer1.2.bn1.running_mean", [16]),
    ("layer1.2.bn1.running_var", [16]),
    ("layer1.2.bn1.num_batches_tracked", []),
    ("layer1.2.conv2.weight", [16, 16, 3, 3]),
    ("layer1.2.bn2.weight", [16]),
    ("layer1.2.bn2.bias", [16]),
    ("layer1.2.bn2.running_mean", [16]),
    ("layer1.2.bn2.running_var", [16]),
    ("layer1.2.bn2.num_batches_tracked", []),
    ("layer2.0.conv1.weight", [32, 16, 3, 3]),
    ("layer2.0.bn1.weight", [32]),
    ("layer2.0.bn1.bias", [32]),
    ("layer2.0.bn1.running_mean", [32]),
    ("layer2.0.bn1.running_var", [32]),
    ("layer2.0.bn1.num_batches_tracked", []),
    ("layer2.0.conv2.weight", [32, 32, 3, 3]),
    ("layer2.0.bn2.weight", [32]),
    ("layer2.0.bn2.bias", [32]),
    ("layer2.0.bn2.running_mean", [32]),
    ("layer2.0.bn2.running_var", [32]),
    ("layer2.0.bn2.num_batches_tracked", []),
    ("layer2.1.conv1.weight", [32, 32, 3, 3]),
    ("layer2.1.bn1.weight", [32]),
    ("layer2.1.bn1.bias", [32]),
    ("layer2.1.bn1.running_mean", [32]),
    ("layer2.1.bn1.running_var", [32]),
    ("layer2.1.bn1.num_batches_tracked", []),
    ("layer2.1.conv2.weight", [32, 32, 3, 3]),
    ("layer2.1.bn2.weight", [32]),
    ("layer2.1.bn2.bias", [32]),
    ("layer2.1.bn2.running_mean", [32]),
    ("layer2.1.bn2.running_var", [32]),
    ("layer2.1.bn2.num_batches_tracked", []),
    ("layer2.2.conv1.weight", [32, 32, 3, 3]),
    ("layer2.2.bn1.weight", [32]),
    ("layer2.2.bn1.bias", [32]),
    ("layer2.2.bn1.running_mean", [32]),
    ("layer2.2.bn1.running_var", [32]),
    ("layer2.2.bn1.num_batches_tracked", []),
    ("layer2.2.conv2.weight", [32, 32, 3, 3]),
    ("layer2.2.bn2.weight", [32]),
    ("layer2.2.bn2.bias", [32]),
    ("layer2.2.bn2.running_mean", [32]),
    ("layer2.2.bn2.running_var", [32]),
    ("layer2.2.bn2.num_batches_tracked", []),
    ("layer3.0.conv1.weight", [64, 32, 3, 3]),
    ("layer3.0.bn1.weight", [64]),
    ("layer3.0.bn1.bias", [64]),
    ("layer3.0.bn1.running_mean", [64]),
    ("layer3.0.bn1.running_var", [64]),
    ("layer3.0.bn1.num_batches_tracked", []),
    ("layer3.0.conv2.weight", [64, 64, 3, 3]),
    ("layer3.0.bn2.weight", [64]),
    ("layer3.0.bn2.bias", [64]),
    ("layer3.0.bn2.running_mean", [64]),
    ("layer3.0.bn2.running_var", [64]),
    ("layer3.0.bn2.num_batches_tracked", []),
    ("layer3.1.conv1.weight", [64, 64, 3, 3]),
    ("layer3.1.bn1.weight", [64]),
    ("layer3.1.bn1.bias", [64]),
    ("layer3.1.bn1.running_mean", [64]),
    ("layer3.1.bn1.running_var", [64]),
    ("layer3.1.bn1.num_batches_tracked", []),
    ("layer3.1.conv2.weight", [64, 64, 3, 3]),
    ("layer3.1.bn2.weight", [64]),
    ("layer3.1.bn2.bias", [64]),
    ("layer3.1.bn2.running_mean", [64]),
    ("layer3.1.bn2.running_var", [64]),
    ("layer3.1.bn2.num_batches_tracked", []),
    ("layer3.2.conv1.weight", [64, 64, 3, 3]),
    ("layer3.2.bn1.weight", [64]),
    ("layer3.2.bn1.bias", [64]),
    ("layer3.2.bn1.running_mean", [64]),
    ("layer3.2.bn1.running_var", [64]),
    ("layer3.2.bn1.num_batches_tracked", []),
    ("layer3.2.conv2.weight", [64, 64, 3, 3]),
    ("layer3.2.bn2.weight", [64]),
    ("layer3.2.bn2.bias", [64]),
    ("layer3.2.bn2.running_mean", [64]),
    ("layer3.2.bn2.running_var", [64]),
    ("layer3.2.bn2.num_batches_tracked", []),
    ("bn2.weight", [64]),
    ("bn2.bias", [64]),
    ("bn2.running_mean", [64]),
    ("bn2.running_var", [64]),
    ("bn2.num_batches_tracked", []),
    ("linear.weight", [10, 64]),
    ("linear.bias", [10]),
]

/// Largest |a[i] − b[i]|, or infinity when the counts differ.
private func largestDifference(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// Sample standard deviation of `values` in double.
private func standardDeviation(_ values: [Float]) -> Double {
    let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
    return (values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count - 1)).squareRoot()
}

/// The paper's ResNet-20 forward in training mode written with the functional ops, independently of the module
/// code: stem conv → ReLU → BN; per block BN(ReLU(conv)) twice plus the shortcut (nothing after the sum); global
/// average pool → BN1d → linear. Batch norm uses batch statistics without running ones.
private func referenceForward(_ model: ResNet20, _ x: Tensor, estimator: any SignEstimator) throws -> Tensor {
    let state = model.namedParameters().reduce(into: [String: Tensor]()) { $0[$1.name] = $1.tensor }
    func norm(_ prefix: String, _ x: Tensor) throws -> Tensor {
        x.rank == 4
            ? try batchNorm2d(x, weight: state[prefix + ".weight"], bias: state[prefix + ".bias"], statistics: nil, training: true)
            : try batchNorm1d(x, weight: state[prefix + ".weight"], bias: state[prefix + ".bias"], statistics: nil, training: true)
    }
    func convolution(_ name: String, _ x: Tensor, stride: Int) throws -> Tensor {
        let weight = state[name]!
        switch model.variant {
        case .fullPrecision: return try conv2d(x, weight: weight, stride: stride, padding: 1)
        case .binary, .binaryWeights:
            return try binaryConv2d(
                x, weight: weight, stride: stride, padding: 1, estimator: estimator,
                binarizeInput: model.variant == .binary)
        }
    }
    var out = try norm("bn1", relu(conv2d(x, weight: state["conv1.weight"]!, stride: 1, padding: 1)))
    var channels = 16
    for (stage, width) in [(1, 16), (2, 32), (3, 64)] {
        for block in 0..<3 {
            let prefix = "layer\(stage).\(block)"
            let stride = stage > 1 && block == 0 ? 2 : 1
            var y = try norm(prefix + ".bn1", relu(convolution(prefix + ".conv1.weight", out, stride: stride)))
            y = try norm(prefix + ".bn2", relu(convolution(prefix + ".conv2.weight", y, stride: 1)))
            let shortcut = channels == width ? out : try shortcutOptionA(out, channelPadding: width / 4)
            out = try add(y, shortcut)
            channels = width
        }
    }
    let pooled = try norm("bn2", globalAvgPool(out))
    return try linear(pooled, weight: state["linear.weight"]!, bias: state["linear.bias"]!)
}

/// A batch of `count` NHWC images and labels, fixed by `seed`.
private func batch(_ count: Int, size: Int, seed: UInt64) throws -> (images: Tensor, labels: [Int]) {
    var generator = Xoshiro256StarStar(seed: seed)
    let images = try Tensor.randn(shape: [count, size, size, 3], using: &generator)
    return (images, (0..<count).map { _ in Int(generator.next(below: 10)) })
}

@Suite("Models: ResNet-20")
struct ModelTests {
    @Test("state dict names, order and shapes equal the authors' PyTorch model, for every variant",
          arguments: ResNet20.Variant.allCases)
    func stateDictLayout(variant: ResNet20.Variant) throws {
        let model = try ResNet20(variant: variant, estimator: ReSTE(), seed: 1)
        #expect(model.stateDictKeys() == pytorchStateDict.map(\.name))
        let state = model.stateDict()
        for (name, shape) in pytorchStateDict {
            #expect(state[name]?.shape == shape, "\(name)")
            #expect(state[name]?.dtype == (name.hasSuffix("num_batches_tracked") ? .i64 : .f32), "\(name)")
        }
        // 267 696 conv + 2·688 BN2d + 2·64 BN1d + 650 linear = 269 850 (PyTorch's count for resnet20_1w1a).
        #expect(model.parameterCount == 269_850)
        #expect(model.namedParameters().count == 61)
    }

    @Test("variants: binary convolutions with or without binarized input, or real ones without bias")
    func variants() throws {
        let binary = try ResNet20(variant: .binary, estimator: STE(), seed: 1)
        #expect(binary.binaryConvolutions.count == 18 && binary.binaryConvolutions.allSatisfy(\.binarizeInput))
        #expect(binary.binaryConvolutions.allSatisfy { $0.estimator.name == "ste" })
        #expect(binary.binaryConvolutions[0] === binary.layer1[0].conv1)
        #expect(binary.binaryConvolutions[17] === binary.layer3[2].conv2)
        let weights = try ResNet20(variant: .binaryWeights, estimator: ReSTE(), seed: 1)
        #expect(weights.binaryConvolutions.count == 18 && weights.binaryConvolutions.allSatisfy { !$0.binarizeInput })
        let real = try ResNet20(variant: .fullPrecision, estimator: ReSTE(), seed: 1)
        #expect(real.binaryConvolutions.isEmpty)
        #expect((real.layer1 + real.layer2 + real.layer3).allSatisfy {
            ($0.conv1 as? Conv2d)?.bias == nil && ($0.conv2 as? Conv2d)?.bias == nil && $0.conv1 is Conv2d
        })
        #expect(real.layer2[0].shortcutPadding == 8 && real.layer3[0].shortcutPadding == 16)
        #expect(real.layer1[0].shortcutPadding == nil && real.layer2[1].shortcutPadding == nil)
        expectBNNError(.module) { try ResNet20(variant: .binary, estimator: ReSTE(), classes: 0, seed: 1) }
    }

    @Test("initialisation: Kaiming normal for convolutions and the linear weight, BN 1/0, default linear bias, seeded")
    func initialisation() throws {
        let model = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 7)
        let parameters = model.namedParameters().reduce(into: [String: [Float]]()) { $0[$1.name] = $1.tensor.scalars }
        // Fan-in 64·9 = 576 for every layer3 conv but the first: std √(2/576) over 184 320 draws.
        let layer3 = (0..<3).flatMap { b in ["conv1", "conv2"].map { "layer3.\(b).\($0).weight" } }.dropFirst()
        let std3 = standardDeviation(layer3.flatMap { parameters[$0]! })
        #expect(abs(std3 / (2.0 / 576).squareRoot() - 1) < 0.01)
        let std1 = standardDeviation((0..<3).flatMap { b in parameters["layer1.\(b).conv1.weight"]! })
        #expect(abs(std1 / (2.0 / 144).squareRoot() - 1) < 0.03)
        let stemStd = standardDeviation(parameters["conv1.weight"]!)
        #expect(abs(stemStd / (2.0 / 27).squareRoot() - 1) < 0.15)
        let linearStd = standardDeviation(parameters["linear.weight"]!)
        #expect(abs(linearStd / (2.0 / 64).squareRoot() - 1) < 0.1)
        let bias = parameters["linear.bias"]!
        #expect(bias.allSatisfy { abs($0) <= 0.125 } && Set(bias).count == 10)
        for (name, module) in model.namedModules() {
            guard let norm = module as? BatchNormBase else { continue }
            #expect(norm.weight.scalars.allSatisfy { $0 == 1 } && norm.bias.scalars.allSatisfy { $0 == 0 }, "\(name)")
            #expect(norm.statistics.runningVar.scalars.allSatisfy { $0 == 1 }, "\(name)")
        }
        let same = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 7)
        let other = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 8)
        #expect(same.stateDict() == model.stateDict())
        #expect(other.stateDict()["layer1.0.conv1.weight"] != model.stateDict()["layer1.0.conv1.weight"])
    }

    @Test("forward: logits [N, 10]; the topology equals a functional reference (ReLU before BN, nothing after the sum)",
          arguments: ResNet20.Variant.allCases)
    func forward(variant: ResNet20.Variant) throws {
        let model = try ResNet20(variant: variant, estimator: ReSTE(), seed: 3)
        let (images, _) = try batch(3, size: 16, seed: 4)
        let logits = try model(images)
        #expect(logits.shape == [3, 10])
        let reference = try referenceForward(model, images, estimator: ReSTE())
        #expect(largestDifference(logits.scalars, reference.scalars) < 1e-4)
        let classes = try ResNet20(variant: variant, estimator: ReSTE(), classes: 4, seed: 3)
        #expect(try classes(images).shape == [3, 4])
    }

    @Test("train() uses and updates batch statistics; eval() uses the running ones and leaves them alone")
    func modes() throws {
        let model = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 5)
        let (images, _) = try batch(4, size: 16, seed: 6)
        let training = try model(images)
        #expect(model.bn1.statistics.numBatchesTracked == 1 && model.bn2.statistics.numBatchesTracked == 1)
        let runningMean = model.layer2[0].bn1.statistics.runningMean.scalars
        #expect(runningMean.contains { $0 != 0 })
        model.eval()
        #expect(model.namedModules().allSatisfy { !$0.module.isTraining })
        let first = try model(images)
        let second = try model(images)
        #expect(first.scalars == second.scalars)
        #expect(largestDifference(first.scalars, training.scalars) > 1e-3)
        #expect(model.bn1.statistics.numBatchesTracked == 1)
        #expect(model.layer2[0].bn1.statistics.runningMean.scalars == runningMean)
        model.train()
        _ = try model(images)
        #expect(model.layer3[2].bn2.statistics.numBatchesTracked == 2)
    }

    @Test("loadStateDict round trip: a model loaded from another's state dict computes the same logits")
    func roundTrip() throws {
        let source = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 1)
        let (images, _) = try batch(4, size: 16, seed: 2)
        _ = try source(images)  // running statistics away from their initial values
        source.eval()
        let target = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 2)
        target.eval()
        try target.loadStateDict(source.stateDict())
        #expect(target.stateDict() == source.stateDict())
        #expect(try target(images).scalars == source(images).scalars)
        // The names are the same for every variant, so weights move between them.
        let real = try ResNet20(variant: .fullPrecision, estimator: ReSTE(), seed: 3)
        try real.loadStateDict(source.stateDict())
        #expect(real.stateDict() == source.stateDict())
        var broken = source.stateDict()
        broken["layer2.0.conv1.weight"] = broken["layer2.1.conv1.weight"]
        do {
            try target.loadStateDict(broken)
            Issue.record("a layer2.0.conv1.weight of the wrong shape was accepted")
        } catch let error as StateDictError {
            #expect(error.description.contains("\"layer2.0.conv1.weight\": expected shape [32, 16, 3, 3], found [32, 32, 3, 3]"))
        }
    }

    @Test("setEstimatorEpoch moves every binary convolution's ReSTE power along its schedule")
    func estimatorEpoch() throws {
        let model = try ResNet20(variant: .binary, estimator: ReSTE(oEnd: 3), seed: 1)
        model.setEstimatorEpoch(5, of: 10)
        // o(e) = 1 + (3 − 1)(1 − cos(π/2 · 5/10)) = 3 − √2.
        let expected = 3 - Float(2).squareRoot()
        for convolution in model.binaryConvolutions {
            let o = try #require((convolution.estimator as? ReSTE)?.o)
            #expect(abs(o - expected) < 1e-6)
        }
    }

    @Test("a few optimizer steps on a fixed batch lower the loss", arguments: [
        (ResNet20.Variant.fullPrecision, "sgd"), (.binary, "sgd"), (.binaryWeights, "adam"),
    ])
    func training(variant: ResNet20.Variant, optimizerName: String) throws {
        let model = try ResNet20(variant: variant, estimator: ReSTE(), seed: 11)
        let optimizer: any Optimizer = optimizerName == "sgd"
            ? SGD(parameters: model.namedParameters(), learningRate: 0.1)
            : Adam(parameters: model.namedParameters(), learningRate: 0.003)
        // Two images per class: a fixed random pattern per class plus noise, so there is something to learn.
        var generator = Xoshiro256StarStar(seed: 111)
        let labels = (0..<20).map { $0 % 10 }
        let pixels = 16 * 16 * 3
        let patterns = try Tensor.randn(shape: [10, pixels], using: &generator).scalars
        var data = try Tensor.randn(shape: [20, 16, 16, 3], std: 0.5, using: &generator).scalars
        for i in data.indices { data[i] += patterns[labels[i / pixels] * pixels + i % pixels] }
        let images = try Tensor(shape: [20, 16, 16, 3], data: data)
        var losses: [Float] = []
        for _ in 0..<20 {
            optimizer.zeroGrad()
            let loss = try crossEntropy(model(images), labels: labels)
            losses.append(try loss.item())
            try loss.backward()
            try optimizer.step()
        }
        // Binary networks move in noisy steps, so compare the mean of the first five losses with the last five.
        let first = losses.prefix(5).reduce(0, +) / 5
        let last = losses.suffix(5).reduce(0, +) / 5
        #expect(last < 0.75 * first, "losses \(losses)")
        #expect(losses.allSatisfy { $0.isFinite })
    }
}
