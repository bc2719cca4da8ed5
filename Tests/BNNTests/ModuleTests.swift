import BNN
import Foundation
import Testing

/// Largest |a[i] − b[i]|, or infinity when the counts differ.
private func largestDifference(_ a: [Float], _ b: [Double]) -> Double {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).reduce(0) { max($0, abs(Double($1.0) - $1.1)) }
}

/// A leaf module with one parameter, one reflected buffer and a counter of its own.
private final class Leaf: Module {
    let weight: Tensor
    let scale: Tensor
    var counter = 0

    init(_ size: Int) throws {
        weight = try Tensor(shape: [size], data: (0..<size).map { Float($0) }, requiresGrad: true)
        scale = try Tensor.ones(shape: [1])
        super.init()
    }

    override var customBuffers: [(name: String, buffer: ModuleBuffer)] {
        [("steps", .integer(get: { self.counter }, set: { self.counter = $0 }))]
    }
}

/// A tree using every kind of member reflection must see: a tensor, a child, an optional child (set and nil),
/// an array of children, a list of tensors, and properties to ignore.
private final class Tree: Module {
    let first: Leaf
    let bias: Tensor
    let blocks: [Leaf]
    let maybe: Leaf?
    let absent: Leaf?
    let extras: [Tensor]
    let ignored = "not state"
    let ignoredNumber = 3

    init(firstSize: Int = 2) throws {
        first = try Leaf(firstSize)
        bias = try Tensor.zeros(shape: [3], requiresGrad: true)
        blocks = [try Leaf(1), try Leaf(4)]
        maybe = try Leaf(5)
        absent = nil
        extras = [try Tensor.zeros(shape: [2, 2], requiresGrad: true)]
        super.init()
    }
}

@Suite("Modules: reflection, modes, state dict")
struct ModuleTests {
    @Test("reflection names parameters, buffers and children with dot-joined paths in PyTorch's order")
    func reflectedNames() throws {
        let tree = try Tree()
        // PyTorch's order: own parameters, own buffers, then each child in declaration order.
        #expect(tree.stateDictKeys() == [
            "bias", "extras.0",
            "first.weight", "first.scale", "first.steps",
            "blocks.0.weight", "blocks.0.scale", "blocks.0.steps",
            "blocks.1.weight", "blocks.1.scale", "blocks.1.steps",
            "maybe.weight", "maybe.scale", "maybe.steps",
        ])
        #expect(tree.namedParameters().map(\.name) == [
            "bias", "extras.0", "first.weight", "blocks.0.weight", "blocks.1.weight", "maybe.weight",
        ])
        #expect(tree.namedParameters()[2].tensor === tree.first.weight)
        #expect(tree.namedBuffers().map(\.name) == ["first.scale", "blocks.0.scale", "blocks.1.scale", "maybe.scale"])
        #expect(tree.namedModules().map(\.name) == ["", "first", "blocks.0", "blocks.1", "maybe"])
        #expect(tree.namedChildren().map(\.name) == ["first", "blocks.0", "blocks.1", "maybe"])
        #expect(tree.parameterCount == 3 + 4 + 2 + 1 + 4 + 5)
    }

    @Test("train() and eval() set the mode of every descendant")
    func modes() throws {
        let tree = try Tree()
        #expect(tree.namedModules().allSatisfy { $0.module.isTraining })
        tree.eval()
        #expect(tree.namedModules().allSatisfy { !$0.module.isTraining })
        tree.blocks[1].train()
        #expect(tree.blocks[1].isTraining && !tree.blocks[0].isTraining && !tree.isTraining)
        tree.train()
        #expect(tree.namedModules().allSatisfy { $0.module.isTraining })
    }

    @Test("the base module has no forward pass and says so")
    func baseForward() throws {
        expectBNNError(.module) { try Module()(Tensor(1)) }
    }

    @Test("BatchNorm2d: batch statistics in training (running ones updated), running statistics in eval")
    func batchNormModes() throws {
        let norm = try BatchNorm2d(channels: 3)
        var generator = Xoshiro256StarStar(seed: 5)
        let x = try Tensor.randn(shape: [2, 3, 2, 3], mean: 1, std: 2, using: &generator)
        let values = x.scalars
        // Per-channel mean and biased variance by hand.
        var mean = [Double](repeating: 0, count: 3)
        var variance = mean
        for (i, v) in values.enumerated() { mean[i % 3] += Double(v) / 12 }
        for (i, v) in values.enumerated() { variance[i % 3] += (Double(v) - mean[i % 3]) * (Double(v) - mean[i % 3]) / 12 }
        let trained = try norm(x)
        let expectedTraining = values.enumerated().map { i, v in
            (Double(v) - mean[i % 3]) / (variance[i % 3] + 1e-5).squareRoot()
        }
        #expect(largestDifference(trained.scalars, expectedTraining) < 1e-5)
        #expect(norm.statistics.numBatchesTracked == 1)
        let runningMean = mean.map { 0.1 * $0 }
        let runningVar = variance.map { 0.9 + 0.1 * $0 * 12 / 11 }
        #expect(largestDifference(norm.statistics.runningMean.scalars, runningMean) < 1e-6)
        #expect(largestDifference(norm.statistics.runningVar.scalars, runningVar) < 1e-6)

        norm.eval()
        let evaluated = try norm(x)
        let expectedEval = values.enumerated().map { i, v in
            (Double(v) - runningMean[i % 3]) / (runningVar[i % 3] + 1e-5).squareRoot()
        }
        #expect(largestDifference(evaluated.scalars, expectedEval) < 1e-5)
        #expect(norm.statistics.numBatchesTracked == 1)  // eval leaves the statistics alone
    }

    @Test("BatchNorm1d normalises [N, F] and exposes PyTorch's buffer names")
    func batchNorm1d() throws {
        let norm = try BatchNorm1d(features: 2)
        let y = try norm(Tensor(shape: [3, 2], data: [1, 10, 2, 20, 3, 30]))
        let s = (2.0 / 3 + 1e-5).squareRoot()
        let t = (200.0 / 3 + 1e-5).squareRoot()
        #expect(largestDifference(y.scalars, [-1 / s, -10 / t, 0, 0, 1 / s, 10 / t]) < 1e-5)
        #expect(norm.stateDictKeys() == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])
        expectBNNError(.tensor) { try norm(Tensor.zeros(shape: [3, 3])) }
    }

    @Test("layers: shapes, PyTorch's default initialisation bounds, seeds, argument checks")
    func layers() throws {
        let convolution = try Conv2d(inputChannels: 3, outputChannels: 5, kernelSize: 3, stride: 2, padding: 1, seed: 1)
        #expect(convolution.stateDictKeys() == ["weight", "bias"])
        #expect(convolution.weight.shape == [5, 3, 3, 3])
        let bound = Float(1 / 27.0.squareRoot())
        #expect(convolution.weight.scalars.allSatisfy { abs($0) <= bound })
        #expect(convolution.bias!.scalars.allSatisfy { abs($0) <= bound })
        // The draws spread over the interval rather than collapsing to a constant.
        #expect(convolution.weight.scalars.max()! > bound / 2 && convolution.weight.scalars.min()! < -bound / 2)
        let output = try convolution(Tensor.zeros(shape: [2, 7, 7, 3]))
        #expect(output.shape == [2, 4, 4, 5])
        // A zero input gives the bias everywhere.
        #expect(output.scalars.enumerated().allSatisfy { $0.element == convolution.bias!.scalars[$0.offset % 5] })

        let same = try Conv2d(inputChannels: 3, outputChannels: 5, kernelSize: 3, seed: 1)
        let other = try Conv2d(inputChannels: 3, outputChannels: 5, kernelSize: 3, seed: 2)
        #expect(same.weight.scalars == convolution.weight.scalars)
        #expect(other.weight.scalars != convolution.weight.scalars)
        let noBias = try Conv2d(inputChannels: 3, outputChannels: 5, kernelSize: 1, bias: false)
        #expect(noBias.bias == nil && noBias.stateDictKeys() == ["weight"])

        let layer = try Linear(inputFeatures: 4, outputFeatures: 2, seed: 3)
        #expect(layer.weight.shape == [2, 4] && layer.bias!.shape == [2])
        #expect((layer.weight.scalars + layer.bias!.scalars).allSatisfy { abs($0) <= 0.5 })
        let x = try Tensor(shape: [1, 4], data: [1, 2, 3, 4])
        let w = layer.weight.scalars
        let b = layer.bias!.scalars
        let expected = (0..<2).map { o in (0..<4).reduce(Double(b[o])) { $0 + Double(w[o * 4 + $1]) * Double($1 + 1) } }
        #expect(largestDifference(try layer(x).scalars, expected) < 1e-5)

        expectBNNError(.module) { try Conv2d(inputChannels: 3, outputChannels: 5, kernelSize: 0) }
        expectBNNError(.module) { try Conv2d(inputChannels: 3, outputChannels: 5, kernelSize: 3, padding: -1) }
        expectBNNError(.module) { try Linear(inputFeatures: 0, outputFeatures: 2) }
        expectBNNError(.module) { try BatchNorm2d(channels: 0) }
        expectBNNError(.module) { try BatchNorm1d(features: 4, momentum: 2) }
        do {
            _ = try Conv2d(inputChannels: 3, outputChannels: 5, kernelSize: 3, stride: 0)
            Issue.record("stride 0 was accepted")
        } catch let error as BNNError {
            #expect(error.message.contains("Conv2d") && error.message.contains("`stride`"))
        }
    }

    @Test("stateDict: F32 values with their shapes, counters as I64 scalars")
    func stateDictContents() throws {
        let tree = try Tree()
        tree.blocks[1].counter = 7
        let state = tree.stateDict()
        #expect(state.count == tree.stateDictKeys().count)
        let weight = try #require(state["blocks.1.weight"])
        #expect(weight.dtype == .f32 && weight.shape == [4])
        #expect(try weight.floats() == [0, 1, 2, 3])
        let counter = try #require(state["blocks.1.steps"])
        #expect(counter.dtype == .i64 && counter.shape == [])
        #expect(try counter.int64s() == [7])
        // A copy: changing the module afterwards does not change the dict.
        tree.blocks[1].weight.withUnsafeMutableBufferPointer { $0[0] = 42 }
        #expect(try weight.floats()[0] == 0)
    }

    @Test("loadStateDict round trip: values, buffers and counters arrive in place")
    func roundTrip() throws {
        let source = try BatchNorm2d(channels: 2)
        var generator = Xoshiro256StarStar(seed: 9)
        _ = try source(Tensor.randn(shape: [3, 2, 2, 2], mean: 2, using: &generator))
        source.weight.withUnsafeMutableBufferPointer { $0[1] = -3 }
        let target = try BatchNorm2d(channels: 2)
        let runningMean = target.statistics.runningMean
        try target.loadStateDict(source.stateDict())
        #expect(target.stateDict() == source.stateDict())
        #expect(target.statistics.runningMean === runningMean)  // loaded in place, not replaced
        #expect(target.statistics.numBatchesTracked == 1)
        #expect(target.weight.scalars == [1, -3])
    }

    @Test("loadStateDict converts F64, F16 and BF16 floats and I32 counters")
    func conversions() throws {
        let norm = try BatchNorm1d(features: 2)
        let half: [UInt8] = [0x00, 0x3C, 0x00, 0xC0]  // F16 1.0, −2.0 (little-endian)
        let brain: [UInt8] = [0x80, 0x3F, 0x40, 0x40]  // BF16 1.0, 3.0
        try norm.loadStateDict([
            "weight": SafeTensors.TensorData([0.5, 0.25] as [Double], shape: [2]),
            "bias": SafeTensors.TensorData(dtype: .f16, shape: [2], bytes: half),
            "running_mean": SafeTensors.TensorData(dtype: .bf16, shape: [2], bytes: brain),
            "running_var": SafeTensors.TensorData([2, 4] as [Float], shape: [2]),
            "num_batches_tracked": SafeTensors.TensorData([12] as [Int32], shape: []),
        ])
        #expect(norm.weight.scalars == [0.5, 0.25])
        #expect(norm.bias.scalars == [1, -2])
        #expect(norm.statistics.runningMean.scalars == [1, 3])
        #expect(norm.statistics.runningVar.scalars == [2, 4])
        #expect(norm.statistics.numBatchesTracked == 12)
    }

    @Test("loadStateDict refuses missing and unexpected keys when strict, and changes nothing on failure")
    func strictKeys() throws {
        let norm = try BatchNorm1d(features: 2)
        var state = norm.stateDict()
        state["weight"] = try SafeTensors.TensorData([7, 7] as [Float], shape: [2])
        state["running_var"] = nil
        state["extra.weight"] = try SafeTensors.TensorData([1] as [Float], shape: [1])
        do {
            try norm.loadStateDict(state)
            Issue.record("a strict load with a missing and an unexpected key succeeded")
        } catch let error as StateDictError {
            #expect(error.missingKeys == ["running_var"])
            #expect(error.unexpectedKeys == ["extra.weight"])
            #expect(error.problems.isEmpty)
            #expect(error.description.contains("missing keys: running_var"))
            #expect(error.description.contains("unexpected keys: extra.weight"))
        }
        #expect(norm.weight.scalars == [1, 1])  // nothing written

        try norm.loadStateDict(state, strict: false)
        #expect(norm.weight.scalars == [7, 7])
        #expect(norm.statistics.runningVar.scalars == [1, 1])  // missing: left as it was
    }

    @Test("loadStateDict refuses shape and dtype mismatches even when not strict, naming key and shapes")
    func mismatches() throws {
        let convolution = try Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: 3, seed: 4)
        let before = convolution.stateDict()
        var state = before
        state["weight"] = try SafeTensors.TensorData([Float](repeating: 0, count: 6), shape: [3, 2, 1, 1])
        state["bias"] = try SafeTensors.TensorData([1, 2, 3] as [Int64], shape: [3])
        for strict in [true, false] {
            do {
                try convolution.loadStateDict(state, strict: strict)
                Issue.record("a load with a wrong shape and dtype succeeded (strict: \(strict))")
            } catch let error as StateDictError {
                #expect(error.problems.map(\.key) == ["weight", "bias"])
                #expect(error.problems[0].reason == "expected shape [3, 2, 3, 3], found [3, 2, 1, 1]")
                #expect(error.problems[1].reason.contains("I64"))
                #expect(error.description.contains("\"weight\": expected shape [3, 2, 3, 3], found [3, 2, 1, 1]"))
            }
        }
        #expect(convolution.stateDict() == before)

        let norm = try BatchNorm2d(channels: 2)
        var counters = norm.stateDict()
        counters["num_batches_tracked"] = try SafeTensors.TensorData([-1] as [Int64], shape: [])
        #expect(throws: StateDictError.self) { try norm.loadStateDict(counters) }
        counters["num_batches_tracked"] = try SafeTensors.TensorData([1.0] as [Float], shape: [])
        #expect(throws: StateDictError.self) { try norm.loadStateDict(counters) }
        counters["num_batches_tracked"] = try SafeTensors.TensorData([1, 2] as [Int64], shape: [2])
        #expect(throws: StateDictError.self) { try norm.loadStateDict(counters) }
        #expect(norm.statistics.numBatchesTracked == 0)
    }

    @Test("a state dict survives a safetensors file")
    func throughFile() throws {
        let source = try Linear(inputFeatures: 3, outputFeatures: 2, seed: 11)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("module-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(source.stateDict(), to: url)
        let target = try Linear(inputFeatures: 3, outputFeatures: 2, seed: 12)
        try target.loadStateDict(SafeTensors.read(url).tensors)
        #expect(target.weight.scalars == source.weight.scalars && target.bias!.scalars == source.bias!.scalars)
    }
}
