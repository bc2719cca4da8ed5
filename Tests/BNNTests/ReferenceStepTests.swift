import Foundation
import Testing

@testable import BNN

/// One training step of the paper's networks against the paper's PyTorch code, number for number.
///
/// The fixtures (Tests/BNNTests/Fixtures/reference-step-*.json) are written by `scripts/reference/crosscheck.py`
/// from the reference implementation: the same closed-form initial parameters, the first 32 bundled images without
/// augmentation, one forward, backward and SGD step. They hold the loss, the logits, and digests (sum, sum of
/// squares, a few elements) of every gradient, every parameter after the step and every batch-norm statistic.
/// The script snaps each binary convolution's float output to α × integer, the value this library computes
/// exactly (see the script for why); everything else is the reference as published.
@Suite("Training step against the reference implementation")
struct ReferenceStepTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Digest: Decodable {
        let sum: Double
        let sum_squares: Double
        let samples: [Double]
    }

    struct Fixture: Decodable {
        let variant: String
        let estimator: String
        let o: Float
        let images: Int
        let learning_rate: Float
        let momentum: Float
        let weight_decay: Float
        let samples: [Int]
        let loss: Double
        let logits: [Double]
        let gradients: [String: Digest]
        let parameters_after_step: [String: Digest]
        let buffers_after_step: [String: Digest]
        /// The networks other than ResNet-20 also record: the authors' model function, its state dict in order
        /// (name, shape, initialisation rule and index, digest of the initial value), the parameter count and the
        /// logits of an evaluation-mode forward from the initial state.
        let model: String?
        let state_dict: [StateEntry]?
        let parameter_count: Int?
        let eval_logits: [Double]?
        /// Logits per image of the reference model (the networks other than ResNet-20).
        let num_classes: Int?
        /// Each sample pixel repeated this many times in both directions (the ImageNet network: 7, for 224×224).
        let upscale: Int?
    }

    struct StateEntry: Decodable {
        let name: String
        let shape: [Int]
        let rule: String
        let index: Int?
        let initial: Digest?
    }

    /// The script's closed-form start: ((i·7919 + index·104729) mod 2003) / 1001.5 − 1 for element i of the
    /// `index`-th parameter in sorted name order, scaled per kind of parameter (exact in Double, then rounded).
    static func initialValues(index: Int, name: String, shape: [Int]) -> [Float] {
        let count = shape.reduce(1, *)
        let module = name.split(separator: ".").dropLast().last.map(String.init) ?? ""
        return (0..<count).map { i in
            let v = Double((i * 7919 + index * 104729) % 2003) / 1001.5 - 1
            if name.hasSuffix("weight") && module.hasPrefix("bn") { return Float(1 + 0.1 * v) }
            if name.hasSuffix("bias") { return Float(0.1 * v) }
            let fanIn = shape.dropFirst().reduce(1, *)
            return Float(v * (6.0 / Double(fanIn)).squareRoot())
        }
    }

    /// The first `count` bundled training images, normalised as the reference does (float32 throughout), NHWC.
    static func images(_ count: Int) throws -> (Tensor, [Int]) {
        let bytes = try [UInt8](
            Data(contentsOf: root.appendingPathComponent("Examples/data/cifar10-sample/data_batch_1.bin")))
        let mean: [Float] = [0.485, 0.456, 0.406]
        let std: [Float] = [0.229, 0.224, 0.225]
        var pixels = [Float](repeating: 0, count: count * 32 * 32 * 3)
        var labels: [Int] = []
        for n in 0..<count {
            let record = n * 3073
            labels.append(Int(bytes[record]))
            for c in 0..<3 {
                for p in 0..<1024 {
                    pixels[(n * 1024 + p) * 3 + c] = (Float(bytes[record + 1 + c * 1024 + p]) / 255 - mean[c]) / std[c]
                }
            }
        }
        return (try Tensor(shape: [count, 32, 32, 3], data: pixels), labels)
    }

    /// `images(count)` with every pixel repeated `upscale` × `upscale` times (nearest-neighbour upscaling).
    static func images(_ count: Int, upscale: Int) throws -> (Tensor, [Int]) {
        let (small, labels) = try images(count)
        guard upscale > 1 else { return (small, labels) }
        let side = 32 * upscale
        let source = small.scalars
        var pixels = [Float](repeating: 0, count: count * side * side * 3)
        for n in 0..<count {
            for y in 0..<side {
                for x in 0..<side {
                    let from = ((n * 32 + y / upscale) * 32 + x / upscale) * 3
                    let to = ((n * side + y) * side + x) * 3
                    for c in 0..<3 { pixels[to + c] = source[from + c] }
                }
            }
        }
        return (try Tensor(shape: [count, side, side, 3], data: pixels), labels)
    }

    static func load(_ name: String) throws -> Fixture {
        let url = root.appendingPathComponent("Tests/BNNTests/Fixtures/\(name)")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// Digests agree: the sum of squares within `relative`, the sum and each sampled element within `relative`
    /// of the scale the values have (their root mean square, times √n for the sum), or within `floor` for
    /// values that are rounding noise around 0 (the gradient of the last batch norm's β is 0 in exact arithmetic).
    static func expectClose(
        _ values: [Float], _ expected: Digest, samples: [Int], relative: Double, floor: Double, _ what: String
    ) {
        let v = values.map(Double.init)
        let n = Double(v.count)
        let sumSquares = v.reduce(0) { $0 + $1 * $1 }
        let rms = (expected.sum_squares / n).squareRoot()
        #expect(
            abs(sumSquares - expected.sum_squares) <= relative * expected.sum_squares + floor * floor * n,
            "\(what): sum of squares \(sumSquares), reference \(expected.sum_squares)")
        #expect(
            abs(v.reduce(0, +) - expected.sum) <= relative * rms * n.squareRoot() + floor * n,
            "\(what): sum \(v.reduce(0, +)), reference \(expected.sum)")
        for (i, reference) in zip(samples.filter { $0 < v.count }, expected.samples) {
            #expect(abs(v[i] - reference) <= relative * rms + floor, "\(what)[\(i)] = \(v[i]), reference \(reference)")
        }
    }

    @Test(
        "one step of ResNet-20 equals the reference: loss, logits, every gradient, parameter and statistic",
        arguments: ["reference-step-1w1a-reste.json", "reference-step-1w1a-ste.json", "reference-step-1w32a-reste.json"])
    func step(_ file: String) throws {
        let fixture = try Self.load(file)
        let estimator: any SignEstimator
        switch fixture.estimator {
        case "ste": estimator = STE()
        default:
            var reste = ReSTE(oEnd: 3)
            reste.o = fixture.o
            estimator = reste
        }
        let model = try ResNet20(
            variant: fixture.variant == "1w1a" ? .binary : .binaryWeights, estimator: estimator, seed: 1)
        let parameters = model.namedParameters()
        let sortedNames = parameters.map(\.name).sorted()
        #expect(Set(sortedNames) == Set(fixture.gradients.keys), "parameter names differ from the reference's")
        for (name, tensor) in parameters {
            let values = Self.initialValues(index: sortedNames.firstIndex(of: name)!, name: name, shape: tensor.shape)
            tensor.withUnsafeMutableBufferPointer { buffer in
                for i in values.indices { buffer[i] = values[i] }
            }
        }
        let (x, labels) = try Self.images(fixture.images)
        // Binary activations: the same integers, so only float rounding differs (observed below 1e-4). Real
        // activations (1W32A): the float convolutions add in another order, and o = 3 makes the estimator steep.
        try Self.checkStep(
            model, fixture, x: x, labels: labels, gradientTolerance: fixture.variant == "1w1a" ? 1e-3 : 5e-3,
            parameterTolerance: 1e-4, label: "resnet20")
    }

    /// One SGD step of `model` (train mode) on `x` against the fixture: loss, logits, every gradient, every
    /// parameter after the step and every batch-norm statistic.
    static func checkStep(
        _ model: Module, _ fixture: Fixture, x: Tensor, labels: [Int], gradientTolerance: Double,
        parameterTolerance: Double, label: String
    ) throws {
        let parameters = model.namedParameters()
        let optimizer = SGD(
            parameters: parameters, learningRate: fixture.learning_rate, momentum: fixture.momentum,
            weightDecay: fixture.weight_decay)
        model.train()
        let logits = try model(x)
        let loss = try crossEntropy(logits, labels: labels)
        optimizer.zeroGrad()
        try loss.backward()
        #expect(abs(Double(try loss.item()) - fixture.loss) <= 1e-5 * fixture.loss, "\(label): loss")
        let logitScale = (fixture.logits.reduce(0) { $0 + $1 * $1 } / Double(fixture.logits.count)).squareRoot()
        for (value, expected) in zip(logits.scalars, fixture.logits) {
            #expect(abs(Double(value) - expected) <= 1e-4 * logitScale, "\(label): logit \(value), reference \(expected)")
        }
        let largestGradientScale =
            parameters.map { (fixture.gradients[$0.name]!.sum_squares / Double($0.tensor.count)).squareRoot() }.max() ?? 0
        for (name, tensor) in parameters {
            let gradient = try #require(tensor.grad, "\(label): \(name) has no gradient")
            expectClose(
                gradient.scalars, fixture.gradients[name]!, samples: fixture.samples, relative: gradientTolerance,
                floor: 1e-6 * largestGradientScale, "\(label): gradient of \(name)")
        }
        try optimizer.step()
        for (name, tensor) in parameters {
            expectClose(
                tensor.scalars, fixture.parameters_after_step[name]!, samples: fixture.samples,
                relative: parameterTolerance, floor: 1e-7, "\(label): \(name) after the step")
        }
        let buffers = Dictionary(uniqueKeysWithValues: model.namedBuffers().map { ($0.name, $0.tensor) })
        for (name, expected) in fixture.buffers_after_step {
            let tensor = try #require(buffers[name], "\(label): no buffer \(name)")
            expectClose(
                tensor.scalars, expected, samples: fixture.samples, relative: 1e-4, floor: 1e-7,
                "\(label): \(name) after the step")
        }
    }

    /// The script's rule for the state of the other networks: `rule` and `index` as the fixture records them
    /// (`weight` v·√(6/fan_in), `bn_weight` 1 + 0.1·v, `bias` and `running_mean` 0.1·v, `running_var` 1 + 0.5·|v|,
    /// `none` left as is), v as in `initialValues`.
    static func initialValues(_ entry: StateEntry) -> [Float]? {
        guard let index = entry.index else { return nil }
        let count = entry.shape.reduce(1, *)
        let fanIn = entry.shape.dropFirst().reduce(1, *)
        let v = (0..<count).map { i in Double((i * 7919 + index * 104729) % 2003) / 1001.5 - 1 }
        switch entry.rule {
        case "weight": return v.map { Float($0 * (6.0 / Double(fanIn)).squareRoot()) }
        case "bn_weight": return v.map { Float(1 + 0.1 * $0) }
        case "bias", "running_mean": return v.map { Float(0.1 * $0) }
        case "running_var": return v.map { Float(1 + 0.5 * abs($0)) }
        default: return nil
        }
    }

    @Test(
        "Bi-Real ResNet-20, ResNet-18, VGG-small and ImageNet ResNet-18 equal the reference: layout, an evaluation forward and one step",
        arguments: [
            ("reference-step-resnet20_bireal_1w1a-reste.json", "resnet20-bireal"),
            ("reference-step-resnet18_1w1a-reste.json", "resnet18"),
            ("reference-step-vgg_small_1w1a-reste.json", "vgg-small"),
            ("reference-step-resnet18_imagenet_1w1a-reste.json", "resnet18-imagenet"),
        ])
    func network(_ file: String, network: String) throws {
        let fixture = try Self.load(file)
        var reste = ReSTE(oEnd: 3)
        reste.o = fixture.o
        let model = try NetworkRegistry.named(network)(
            NetworkOptions(variant: .binary, estimator: reste, classes: fixture.num_classes, seed: 1))
        // The same state dict as the authors' model: names in order, shapes, and the parameter count.
        let entries = try #require(fixture.state_dict)
        let mine = model.stateDict()
        #expect(model.stateDictKeys() == entries.map(\.name), "\(network): state-dict keys differ from the reference's")
        for entry in entries { #expect(mine[entry.name]?.shape == entry.shape, "\(network): shape of \(entry.name)") }
        #expect(model.parameterCount == fixture.parameter_count, "\(network): parameter count")

        // The closed-form start, parameters and running statistics, checked against the reference's digests.
        let tensors = Dictionary(
            uniqueKeysWithValues: (model.namedParameters() + model.namedBuffers()).map { ($0.name, $0.tensor) })
        for entry in entries {
            guard let values = Self.initialValues(entry) else { continue }
            let tensor = try #require(tensors[entry.name], "no tensor \(entry.name)")
            tensor.withUnsafeMutableBufferPointer { buffer in
                for i in values.indices { buffer[i] = values[i] }
            }
            let initial = try #require(entry.initial, "\(entry.name) has no initial digest")
            Self.expectClose(values, initial, samples: fixture.samples, relative: 1e-7, floor: 0, "initial \(entry.name)")
        }
        let (x, labels) = try Self.images(fixture.images, upscale: fixture.upscale ?? 1)

        // Evaluation mode, running statistics from the start.
        model.eval()
        let evalLogits = try withNoGrad { try model(x) }.scalars
        let reference = try #require(fixture.eval_logits)
        let evalScale = (reference.reduce(0) { $0 + $1 * $1 } / Double(reference.count)).squareRoot()
        #expect(evalLogits.count == reference.count)
        for (value, expected) in zip(evalLogits, reference) {
            #expect(abs(Double(value) - expected) <= 1e-4 * evalScale, "\(network): eval logit \(value), reference \(expected)")
        }

        // One training step. From this start ResNet-18's gradients are far larger than its parameters (a batch-norm β
        // moves from 0.1 to 13 in the step), so the step's result carries the gradients' tolerance rather than 1e-4.
        try Self.checkStep(
            model, fixture, x: x, labels: labels, gradientTolerance: 1e-3, parameterTolerance: 1e-3, label: network)
    }
}
