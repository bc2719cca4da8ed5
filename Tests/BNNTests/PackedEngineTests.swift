import Foundation
import Testing

@testable import BNN

/// The packed engine against the training graph, and the packed file against corruption.
@Suite("Packed engine", .serialized)
struct PackedEngineTests {
    static let dataDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Examples/data/cifar10-sample")

    /// A 1W1A network (ResNet-20 unless `network` names another registered one) trained for a few steps on the
    /// bundled data, so that batch-norm statistics, α and the latent weights are no longer at their initial values.
    static func trainedModel(
        _ network: String = "resnet20", steps: Int = 4, batchSize: Int = 64
    ) throws -> (Module, CIFAR10) {
        let data = try CIFAR10(directory: dataDirectory)
        let model = try NetworkRegistry.named(network)(NetworkOptions(estimator: ReSTE(oEnd: 3), classes: 10, seed: 7))
        let optimizer = SGD(parameters: model.namedParameters(), learningRate: 0.1)
        let batches = try CIFAR10Batches.training(data.train, batchSize: batchSize, seed: 3)
        model.train()
        for (index, batch) in batches.batches(epoch: 0).enumerated() where index < steps {
            let x = try Tensor(shape: [batch.count, 32, 32, 3], data: batch.images)
            let loss = try crossEntropy(model(x), labels: batch.labels)
            optimizer.zeroGrad()
            try loss.backward()
            try optimizer.step()
        }
        model.eval()
        return (model, data)
    }

    static func pack(_ model: Module, _ network: String = "resnet20") throws -> PackedModel {
        try PackedModel.pack(model, inputShape: [32, 32, 3], name: network)
    }

    /// Logits of the training graph in eval mode and of the packed engine for the same images.
    static func compare(model: Module, engine: PackedEngine, images: [Float], count: Int) throws -> ([Float], [Float]) {
        let reference = try withNoGrad { try model(Tensor(shape: [count, 32, 32, 3], data: images)).scalars }
        let packed = try engine.logits(images: images, count: count)
        return (reference, packed)
    }

    /// Predictions that differ, and the largest logit difference relative to each image's largest logit (a logit
    /// near 0 has no meaningful relative error), of `engine` against `model` on every image of `split`.
    static func disagreement(
        model: Module, engine: PackedEngine, split: CIFAR10Split, limit: Int? = nil
    ) throws -> (mismatched: Int, worst: Float, images: Int) {
        let batches = try CIFAR10Batches.evaluation(split, batchSize: 250)
        var mismatched = 0, images = 0
        var worst: Float = 0
        for batch in batches.batches(epoch: 0) {
            if let limit, images >= limit { break }
            let (reference, logits) = try compare(model: model, engine: engine, images: batch.images, count: batch.count)
            let a = PackedEngine.predictions(logits: reference, classes: 10)
            let b = PackedEngine.predictions(logits: logits, classes: 10)
            mismatched += zip(a, b).filter { $0 != $1 }.count
            for image in 0..<batch.count {
                let r = reference[(image * 10)..<(image * 10 + 10)], p = logits[(image * 10)..<(image * 10 + 10)]
                let scale = max(r.map(abs).max()!, 1e-6)
                for (x, y) in zip(r, p) { worst = max(worst, abs(x - y) / scale) }
            }
            images += batch.count
        }
        return (mismatched, worst, images)
    }

    @Test("packed ResNet-20 1W1A predicts exactly as the training graph on every bundled image")
    func packedEqualsTrainingGraph() throws {
        let (model, data) = try Self.trainedModel()
        let engine = try PackedEngine(model: Self.pack(model))
        for (split, name) in [(data.test, "validation"), (data.train, "training")] {
            let (mismatched, worst, _) = try Self.disagreement(model: model, engine: engine, split: split)
            #expect(mismatched == 0, "\(mismatched) \(name) predictions differ")
            #expect(worst <= 1e-4, "largest relative logit difference on \(name) images: \(worst)")
        }
    }

    @Test(
        "every registered network packs and predicts as its training graph on every bundled image, on every path",
        arguments: NetworkRegistry.names)
    func packedNetworkEqualsTrainingGraph(network: String) throws {
        let (model, data) = try Self.trainedModel(network, steps: 2, batchSize: 32)
        let packed = try Self.pack(model, network)
        #expect(packed.graph.model == network)
        let engine = try PackedEngine(model: packed)
        for (split, name) in [(data.test, "validation"), (data.train, "training")] {
            let (mismatched, worst, images) = try Self.disagreement(model: model, engine: engine, split: split)
            #expect(images == split.count)
            #expect(mismatched == 0, "\(network): \(mismatched) \(name) predictions differ")
            #expect(worst <= 1e-4, "\(network): largest relative logit difference on \(name) images: \(worst)")
        }
        // Every kernel path the CPU has (the paths give identical bits), on the first 250 validation images.
        for path in Kernels.supportedPaths {
            let (mismatched, worst, _) = try Kernels.withSettings(path: path) {
                try Self.disagreement(model: model, engine: engine, split: data.test, limit: 250)
            }
            #expect(mismatched == 0 && worst <= 1e-4, "\(network) on the \(path.name) path: \(mismatched) differ, worst \(worst)")
        }
    }

    @Test("ImageNet networks at 224×224 after a training step: packed predictions and logits as the training graph's",
          arguments: ["resnet18-imagenet", "resnet34-imagenet"])
    func imageNetAt224(network: String) throws {
        // Generated images (smooth gradients plus noise, so that pooling and strided convolutions see structure) and
        // random labels among the 1,000 classes; two training steps move batch norm, α and the latent weights.
        var generator = Xoshiro256StarStar(seed: 11)
        let count = 3, side = 224
        var pixels = [Float](repeating: 0, count: count * side * side * 3)
        for n in 0..<count {
            for y in 0..<side {
                for x in 0..<side {
                    for c in 0..<3 {
                        let wave = sin(Float(x * (c + 1) + y * (n + 2)) / 37)
                        pixels[((n * side + y) * side + x) * 3 + c] = wave + Float(generator.next(below: 1001)) / 1000 - 0.5
                    }
                }
            }
        }
        let labels = (0..<count).map { _ in Int(generator.next(below: 1000)) }
        let model = try NetworkRegistry.named(network)(NetworkOptions(estimator: ReSTE(oEnd: 3), seed: 5))
        let optimizer = SGD(parameters: model.namedParameters(), learningRate: 0.05)
        let x = try Tensor(shape: [count, side, side, 3], data: pixels)
        model.train()
        for _ in 0..<2 {
            let loss = try crossEntropy(model(x), labels: labels)
            optimizer.zeroGrad()
            try loss.backward()
            try optimizer.step()
        }
        model.eval()
        let reference = try withNoGrad { try model(x) }.scalars
        let packed = try PackedModel.pack(model, inputShape: [side, side, 3], name: network)
        #expect(packed.graph.classes == 1000 && packed.graph.input == [side, side, 3])
        let logits = try PackedEngine(model: packed).logits(images: pixels, count: count)
        #expect(PackedEngine.predictions(logits: logits, classes: 1000) == PackedEngine.predictions(logits: reference, classes: 1000))
        for n in 0..<count {
            let r = reference[(n * 1000)..<((n + 1) * 1000)], p = logits[(n * 1000)..<((n + 1) * 1000)]
            let scale = r.map(abs).max()!
            let worst = zip(r, p).map { abs($0 - $1) }.max()! / scale
            #expect(worst <= 1e-4, "\(network) image \(n): largest relative logit difference \(worst)")
        }
    }

    @Test("the engine gives the same logits at batch 1 (threads inside layers) as at batch 64 (threads across images)")
    func batchSizesAgree() throws {
        let (model, data) = try Self.trainedModel(steps: 1)
        let engine = try PackedEngine(model: Self.pack(model))
        let batch = try CIFAR10Batches.evaluation(data.test, batchSize: 64).batches(epoch: 0).batch(at: 0)
        let together = try engine.logits(images: batch.images, count: batch.count)
        for i in [0, 17, 63] {
            let one = try engine.logits(images: Array(batch.images[(i * 3072)..<((i + 1) * 3072)]), count: 1)
            #expect(one == Array(together[(i * 10)..<((i + 1) * 10)]), "image \(i)")
        }
    }

    @Test("a packed file survives a round trip and its summary adds up to the file size")
    func roundTrip() throws {
        let (model, _) = try Self.trainedModel(steps: 1)
        let packed = try Self.pack(model)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("packed-\(UUID().uuidString).bnn")
        defer { try? FileManager.default.removeItem(at: url) }
        try packed.write(to: url)
        let loaded = try PackedModel.load(contentsOf: url)
        #expect(loaded == packed)
        let bytes = try Data(contentsOf: url)
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(loaded.layerBytes().reduce(0) { $0 + $1.bytes } == bytes.count - 8 - headerLength)
    }

    @Test("1,000 random byte flips and truncations of a packed file are errors or harmless, never a crash")
    func corruptedFiles() throws {
        let (model, data) = try Self.trainedModel(steps: 1)
        let packed = try Self.pack(model)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID().uuidString).bnn")
        defer { try? FileManager.default.removeItem(at: url) }
        try packed.write(to: url)
        let original = try Data(contentsOf: url)
        let batch = try CIFAR10Batches.evaluation(data.test, batchSize: 4).batches(epoch: 0).batch(at: 0)
        let expected = try PackedEngine(model: packed).logits(images: batch.images, count: batch.count)
        var generator = Xoshiro256StarStar(seed: 42)
        var rejected = 0
        for trial in 0..<1000 {
            var bytes = original
            if trial % 4 == 3 {
                bytes = bytes.prefix(Int(generator.next(below: UInt64(bytes.count))))
            } else {
                // Flips land in the header half the time: it is small, but most of the structure lives there.
                let headerEnd = 8 + bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
                let limit = trial % 2 == 0 ? min(headerEnd, bytes.count) : bytes.count
                let position = Int(generator.next(below: UInt64(limit)))
                bytes[position] ^= UInt8(1 << generator.next(below: 8))
            }
            do {
                let loaded = try PackedModel.parse(bytes, path: "trial \(trial)")
                // Accepted: only if it is the same network (e.g. a flipped byte of header padding whitespace).
                let logits = try PackedEngine(model: loaded).logits(images: batch.images, count: batch.count)
                #expect(logits == expected, "trial \(trial) loaded a different network without an error")
            } catch let error as BNNError {
                #expect(!error.message.isEmpty)
                rejected += 1
            }
        }
        #expect(rejected >= 900, "only \(rejected) of 1000 corrupted files were rejected")
    }

    @Test("bad state dicts and graphs are refused with the name of what is wrong")
    func badInputs() throws {
        let (model, _) = try Self.trainedModel(steps: 1)
        var dict = model.stateDict()
        dict["layer2.1.conv2.weight"] = nil
        let traced = try NetworkGraph.trace(model, inputShape: [32, 32, 3])
        #expect { try PackedModel.pack(traced, stateDict: dict, name: "resnet20") } throws: {
            "\($0)".contains("layer2.1.conv2")
        }
        let packed = try Self.pack(model)
        var graph = packed.graph
        graph.layers[3].input = 40  // a buffer nothing writes
        let rewired = try PackedModel(graph: graph, tensors: packed.tensors)
        do {
            _ = try PackedEngine(model: rewired)
            Issue.record("a layer reading an unwritten buffer was accepted")
        } catch let error as BNNError {
            #expect(error.message.contains(graph.layers[3].name))
        }
    }
}
