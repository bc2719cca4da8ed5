import Foundation
import Testing

@testable import BNN

/// The layer modules, graph tracing and the generic packer's rules.
@Suite("Networks as data: layers, tracing, packing rules")
struct NetworkGraphTests {
    @Test("Sequential and Residual name their children as PyTorch does and compute their composition")
    func combinators() throws {
        let conv = try Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1, bias: false, seed: 1)
        let bn = try BatchNorm2d(channels: 4)
        let sequence = Sequential(conv, bn, try ReLU())
        #expect(sequence.stateDictKeys() == [
            "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        ])
        sequence.eval()
        let x = try Tensor(shape: [2, 5, 5, 3], data: (0..<150).map { Float($0 % 7) - 3 })
        let expected = try relu(bn(conv(x)))
        #expect(try sequence(x).scalars == expected.scalars)

        let downsample = Sequential(
            try Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 1, stride: 2, bias: false, seed: 2),
            try BatchNorm2d(channels: 4))
        let block = Residual(
            Sequential(try Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, stride: 2, padding: 1, seed: 3)),
            shortcut: downsample, activation: try ReLU())
        #expect(block.stateDictKeys().filter { $0.hasSuffix("weight") } == [
            "body.0.weight", "shortcut.0.weight", "shortcut.1.weight",
        ])
        block.eval()
        let sum = try add(block.body(x), downsample(x))
        #expect(try block(x).scalars == relu(sum).scalars)
        #expect(try Residual(Identity())(x).scalars == add(x, x).scalars)
    }

    @Test("layers refuse bad arguments with the layer and argument named")
    func layerArguments() {
        #expect { try MaxPool2d(kernelSize: 0) } throws: { "\($0)".contains("MaxPool2d") && "\($0)".contains("kernelSize") }
        #expect { try AvgPool2d(kernelSize: 2, padding: 2) } throws: { "\($0)".contains("padding") }
        #expect { try ReLU(gradientAtZero: 2) } throws: { "\($0)".contains("gradientAtZero") }
        #expect { try Hardtanh(minValue: 1, maxValue: -1) } throws: { "\($0)".contains("Hardtanh") }
        #expect { try OptionAShortcut(channelPadding: -1) } throws: { "\($0)".contains("channelPadding") }
    }

    @Test("tracing ResNet-20 records every op with its module path, parameters and per-image shape")
    func traceResNet20() throws {
        let model = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 1)
        model.train()
        let graph = try NetworkGraph.trace(model, inputShape: [32, 32, 3])
        #expect(model.isTraining, "the model's mode is restored")
        func count(_ name: String) -> Int { graph.nodes.filter { $0.operation.name == name }.count }
        #expect(count("conv2d") == 1 && count("binaryConv2d") == 18 && count("batchNorm") == 20)
        #expect(count("add") == 9 && count("shortcutOptionA") == 2 && count("relu") == 19 && count("linear") == 1)
        let first = try #require(graph.nodes.first { $0.operation.name == "binaryConv2d" })
        #expect(first.module == "layer1.0.conv1" && first.parameters == ["weight": "layer1.0.conv1.weight"])
        #expect(first.shape == [32, 32, 16] && first.inputs.count == 1)
        let stride2 = graph.nodes.filter { $0.operation == .binaryConv2d(kernel: 3, stride: 2, padding: 1, binarizeInput: true) }
        #expect(stride2.map(\.module) == ["layer2.0.conv1", "layer3.0.conv1"])
        let norm = try #require(graph.nodes.first { $0.module == "bn2" })
        #expect(norm.parameters["running_var"] == "bn2.running_var" && norm.shape == [64])
        #expect(graph.nodes[graph.output].operation == .linear(bias: true) && graph.nodes[graph.output].shape == [10])
        // Inputs precede their readers, and every node but the input is read or is the output.
        let readers = graph.consumers()
        for node in graph.nodes {
            #expect(node.inputs.allSatisfy { $0 < node.id })
            #expect(node.id == graph.output || !readers[node.id].isEmpty || node.operation == .input)
        }
    }

    /// A module whose forward uses a tensor that no op made.
    final class Opaque: Module {
        override func callAsFunction(_ x: Tensor) throws -> Tensor {
            let copy = try Tensor(shape: x.shape, data: x.scalars)
            return try relu(copy)
        }
    }

    /// A module that scales its input by a constant.
    final class Scaled: Module {
        let conv: BinaryConv2d
        init(binarizeInput: Bool) throws {
            conv = try BinaryConv2d(
                inputChannels: 3, outputChannels: 8, kernelSize: 3, padding: 1, estimator: STE(),
                binarizeInput: binarizeInput, seed: 1)
            super.init()
        }
        override func callAsFunction(_ x: Tensor) throws -> Tensor { try flatten(multiply(conv(x), by: 2)) }
    }

    @Test("what cannot be traced or packed is refused, naming the operation and its module")
    func refusals() throws {
        #expect { try NetworkGraph.trace(Opaque(), inputShape: [4, 4, 3]) } throws: {
            "\($0)".contains("relu") && "\($0)".contains("no traced operation")
        }
        #expect { try NetworkGraph.trace(Opaque(), inputShape: [4, 4]) } throws: { "\($0)".contains("[height, width, channels]") }
        #expect { try PackedModel.pack(Scaled(binarizeInput: true), inputShape: [4, 4, 3], name: "scaled") } throws: {
            "\($0)".contains("scale") && "\($0)".contains("constant")
        }
        #expect { try PackedModel.pack(Scaled(binarizeInput: false), inputShape: [4, 4, 3], name: "scaled") } throws: {
            "\($0)".contains("1W32A") && "\($0)".contains("`conv`")
        }
        let a32 = try ResNet20(variant: .binaryWeights, estimator: ReSTE(), seed: 1)
        #expect { try PackedModel.pack(a32, inputShape: [32, 32, 3], name: "resnet20") } throws: {
            "\($0)".contains("layer1.0.conv1") && "\($0)".contains("1W32A")
        }
    }

    /// Binary layers around every kind of packed step: a stem read as signs only, a binary max-pool, a float
    /// max-pool and average pool, an affine step (batch norm after a pool), a residual add of two non-convolution
    /// values, a hardtanh read only as signs, a 1×1 real downsample, real convolutions with a bias (with few and
    /// with many input channels) and a flatten in PyTorch's order.
    final class Assorted: Module {
        let stem: Conv2d, bn0: BatchNorm2d
        let conv1: BinaryConv2d, bn1: BatchNorm2d, pool: MaxPool2d
        let conv2: BinaryConv2d, bn2: BatchNorm2d, downsample: Sequential, average: AvgPool2d, bn3: BatchNorm2d
        let conv3: BinaryConv2d, clamp: Hardtanh, fc: Linear

        init(seed: UInt64) throws {
            var generator = Xoshiro256StarStar(seed: seed)
            stem = try Conv2d(inputChannels: 3, outputChannels: 16, kernelSize: 3, padding: 1, bias: true, generator: &generator)
            bn0 = try BatchNorm2d(channels: 16)
            conv1 = try BinaryConv2d(inputChannels: 16, outputChannels: 48, kernelSize: 3, padding: 1, estimator: STE(), generator: &generator)
            bn1 = try BatchNorm2d(channels: 48)
            pool = try MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
            conv2 = try BinaryConv2d(inputChannels: 48, outputChannels: 48, kernelSize: 3, stride: 2, padding: 1, estimator: STE(), generator: &generator)
            bn2 = try BatchNorm2d(channels: 48)
            downsample = Sequential(
                try Conv2d(inputChannels: 48, outputChannels: 48, kernelSize: 1, stride: 2, bias: true, generator: &generator),
                try BatchNorm2d(channels: 48))
            average = try AvgPool2d(kernelSize: 2)
            bn3 = try BatchNorm2d(channels: 48)
            conv3 = try BinaryConv2d(inputChannels: 48, outputChannels: 24, kernelSize: 1, estimator: STE(), generator: &generator)
            clamp = try Hardtanh()
            fc = try Linear(inputFeatures: 24 * 2 * 2, outputFeatures: 10, generator: &generator)
            super.init()
        }

        override func callAsFunction(_ x: Tensor) throws -> Tensor {
            let stemOut = try bn0(relu(stem(x)))  // read as signs only
            let pooled = try pool(bn1(relu(conv1(stemOut))))  // 16×16 → 8×8, read as floats and as signs
            let branch = try bn2(relu(conv2(pooled)))  // 4×4
            let sum = try add(branch, downsample(pooled))
            let averaged = try bn3(average(sum))  // 2×2, batch norm after a pool: an affine step
            let out = try conv3(clamp(averaged))  // hardtanh read as signs
            return try fc(flatten(relu(add(out, out))))
        }
    }

    @Test("a network of every packed step kind predicts as its training graph, logits within 1e-4")
    func assortedNetworkPacks() throws {
        let model = try Assorted(seed: 5)
        // Move batch-norm statistics off their initial values.
        model.train()
        var generator = Xoshiro256StarStar(seed: 9)
        for _ in 0..<3 { _ = try withNoGrad { try model(Tensor.randn(shape: [16, 16, 16, 3], using: &generator)) } }
        model.eval()
        let packed = try PackedModel.pack(model, inputShape: [16, 16, 3], name: "assorted")
        let ops = Set(packed.graph.layers.map(\.op))
        #expect(ops.isSuperset(of: [.conv, .bconv, .maxpool, .avgpool, .affine, .linear]), "\(ops)")
        let engine = try PackedEngine(model: packed)
        let images = try Tensor.randn(shape: [32, 16, 16, 3], using: &generator)
        let reference = try withNoGrad { try model(images).scalars }
        let logits = try engine.logits(images: images.scalars, count: 32)
        let scale = reference.map(abs).max()!
        let worst = zip(reference, logits).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-4 * scale, "largest logit difference \(worst) of \(scale)")
        #expect(PackedEngine.predictions(logits: reference, classes: 10) == PackedEngine.predictions(logits: logits, classes: 10))
    }
}

/// The registered networks: state-dict layout and size as the authors' models, training, checkpoints.
@Suite("Networks: the registry")
struct NetworkRegistryTests {
    @Test("parameter counts with 10 classes equal the authors' models", arguments: [
        ("resnet20", 269_850), ("resnet20-bireal", 269_850), ("resnet18", 11_174_986), ("vgg-small", 4_660_106),
    ])
    func parameterCounts(network: String, count: Int) throws {
        for variant in NetworkVariant.allCases {
            let model = try NetworkRegistry.named(network)(NetworkOptions(variant: variant))
            #expect(model.parameterCount == count, "\(network) \(variant.label)")
        }
    }

    @Test("ImageNet networks with their 1,000 classes have the authors' parameter counts", arguments: [
        ("resnet18-imagenet", 11_690_536, 127, 16), ("resnet34-imagenet", 21_798_696, 223, 32),
    ])
    func imageNetParameterCounts(network: String, count: Int, keys: Int, binary: Int) throws {
        for variant in NetworkVariant.allCases {
            let model = try NetworkRegistry.named(network)(NetworkOptions(variant: variant))
            #expect(model.parameterCount == count, "\(network) \(variant.label)")
            #expect(model.stateDictKeys().count == keys, "\(network) \(variant.label)")
            #expect(model.binaryConvolutions.count == (variant == .fullPrecision ? 0 : binary))
        }
        let shapes = try NetworkRegistry.named(network)(NetworkOptions()).stateDict().mapValues(\.shape)
        #expect(shapes["conv1.weight"] == [64, 3, 7, 7] && shapes["layer1.0.conv1.weight"] == [64, 64, 3, 3])
        #expect(shapes["layer2.0.downsample.0.weight"] == [128, 64, 1, 1] && shapes["layer1.0.downsample.0.weight"] == nil)
        #expect(shapes["layer4.0.downsample.1.running_var"] == [512])
        #expect(shapes["bn2.weight"] == [512] && shapes["fc.weight"] == [1000, 512] && shapes["fc.bias"] == [1000])
        let keys = try NetworkRegistry.named(network)(NetworkOptions()).stateDictKeys()
        #expect(keys.suffix(7) == ["bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var",
                                   "bn2.num_batches_tracked", "fc.weight", "fc.bias"])
        #expect(try NetworkRegistry.named(network)(NetworkOptions(classes: 10)).stateDict()["fc.weight"]?.shape == [10, 512])
        expectBNNError(.module) { try ResNetImageNet(depth: 50, variant: .binary, estimator: ReSTE(), seed: 0) }
    }

    @Test("state-dict names and shapes follow the authors' modules")
    func layouts() throws {
        func shapes(_ network: String) throws -> [String: [Int]] {
            let model = try NetworkRegistry.named(network)(NetworkOptions())
            return Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.key, $0.value.shape) })
        }
        let resnet18 = try shapes("resnet18")
        #expect(resnet18.count == 127)
        #expect(resnet18["conv1.weight"] == [64, 3, 3, 3] && resnet18["layer4.1.conv2.weight"] == [512, 512, 3, 3])
        #expect(resnet18["layer2.0.shortcut.0.weight"] == [128, 64, 1, 1])
        #expect(resnet18["layer2.0.shortcut.1.running_var"] == [128] && resnet18["layer1.0.shortcut.0.weight"] == nil)
        #expect(resnet18["bn2.weight"] == [512] && resnet18["linear.weight"] == [10, 512])
        let vgg = try shapes("vgg-small")
        #expect(vgg.count == 38)
        #expect(vgg["conv0.weight"] == [128, 3, 3, 3] && vgg["conv5.weight"] == [512, 512, 3, 3])
        #expect(vgg["bn5.num_batches_tracked"] == [] && vgg["fc.weight"] == [10, 8192] && vgg["fc.bias"] == [10])
        #expect(try shapes("resnet20-bireal") == shapes("resnet20"))
        let model = try NetworkRegistry.named("resnet18")(NetworkOptions())
        #expect(model.binaryConvolutions.count == 16)
        #expect(try NetworkRegistry.named("vgg-small")(NetworkOptions(variant: .fullPrecision)).binaryConvolutions.isEmpty)
        #expect { try NetworkRegistry.named("resnet21") } throws: { "\($0)".contains("resnet20-bireal") }
    }

    @Test("loading another network's weights names the first mismatched key")
    func crossLoading() throws {
        let resnet20 = try NetworkRegistry.named("resnet20")(NetworkOptions())
        let vgg = try NetworkRegistry.named("vgg-small")(NetworkOptions())
        #expect { try resnet20.loadStateDict(vgg.stateDict()) } throws: { error in
            let text = "\(error)"
            return text.contains("missing keys: layer1.0.conv1.weight") && text.contains("unexpected keys: bn0.bias")
                && text.contains("\"conv1.weight\": expected shape [16, 3, 3, 3], found [128, 128, 3, 3]")
        }
    }

    @Test(
        "every network learns: ResNet-20s over an epoch of the bundled sample, the large ones on one batch",
        arguments: [("resnet20", true), ("resnet20-bireal", true), ("resnet18", false), ("vgg-small", false)])
    func learns(network: String, wholeEpoch: Bool) throws {
        let data = try CIFAR10(directory: PackedEngineTests.dataDirectory)
        let model = try NetworkRegistry.named(network)(NetworkOptions(seed: 3, reluGradientAtZero: 0.5))
        model.train()
        var losses: [Float] = []
        func step(_ batch: ImageBatch, _ optimizer: SGD) throws {
            let loss = try crossEntropy(model(Tensor(shape: [batch.count, 32, 32, 3], data: batch.images)), labels: batch.labels)
            losses.append(loss.scalars[0])
            optimizer.zeroGrad()
            try loss.backward()
            try optimizer.step()
        }
        func mean(_ values: ArraySlice<Float>) -> Float { values.reduce(0, +) / Float(values.count) }
        if wholeEpoch {
            // The paper's recipe (lr 0.1, momentum 0.9) over the 2,000 bundled images: the last steps' loss is lower.
            let optimizer = SGD(parameters: model.namedParameters(), learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4)
            for batch in try CIFAR10Batches.training(data.train, batchSize: 64, seed: 1).batches(epoch: 0) {
                try step(batch, optimizer)
            }
            #expect(losses.count == 32 && losses.allSatisfy { $0.isFinite }, "\(network): \(losses)")
            #expect(mean(losses.suffix(6)) < mean(losses.prefix(6)) - 0.05, "\(network): \(losses)")
        } else {
            // Ten steps on one batch of 32 images (an epoch of a large network would cost a minute here).
            let batch = try CIFAR10Batches.evaluation(data.train, batchSize: 32).batches(epoch: 0).batch(at: 0)
            let optimizer = SGD(parameters: model.namedParameters(), learningRate: 0.002, momentum: 0.9)
            for _ in 0..<10 { try step(batch, optimizer) }
            #expect(losses.allSatisfy { $0.isFinite }, "\(network): \(losses)")
            #expect(mean(losses.suffix(3)) < losses[0] - 0.2, "\(network): \(losses)")
        }
    }

    @Test("the trainer trains any registered network and its checkpoint records the name", arguments: ["resnet20-bireal", "vgg-small"])
    func trainerTakesAnyNetwork(network: String) throws {
        let data = try CIFAR10(directory: PackedEngineTests.dataDirectory)
        let subset = CIFAR10Split(images: Array(data.train.images.prefix(64 * CIFAR10.imageSize)), labels: Array(data.train.labels.prefix(64)))!
        let validation = CIFAR10Split(images: Array(data.test.images.prefix(32 * CIFAR10.imageSize)), labels: Array(data.test.labels.prefix(32)))!
        var configuration = TrainingConfiguration(epochs: 1)
        configuration.model = network
        configuration.batchSize = 32
        configuration.learningRate = 0.01
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("networks-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trainer = try Trainer(configuration: configuration, training: subset, validation: validation, runDirectory: directory)
        #expect(try trainer.run() == .finished)
        let checkpoint = try Checkpoint.read(from: trainer.checkpointURL)
        #expect(checkpoint.configuration.model == network && checkpoint.configuration.variant == .binary)
        let rebuilt = try NetworkRegistry.named(network)(NetworkOptions())
        try rebuilt.loadStateDict(checkpoint.model)
        var unknown = configuration
        unknown.model = "resnet21"
        #expect {
            try Trainer(configuration: unknown, training: subset, validation: nil, runDirectory: directory.appendingPathComponent("x"))
        } throws: { "\($0)".contains("resnet21") }
    }
}
