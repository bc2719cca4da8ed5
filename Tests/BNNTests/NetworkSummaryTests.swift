import Foundation
import Testing

@testable import BNN

/// `NetworkSummary`: parameters, MACs and memory by precision, checked against counts worked out by hand from the
/// architectures rather than against the code's own arithmetic.
@Suite("NetworkSummary: per-layer parameters, MACs and memory")
struct NetworkSummaryTests {
    /// The registered network `name` in `variant`, summarised on its own input shape.
    private func summary(_ name: String, _ variant: NetworkVariant) throws -> NetworkSummary {
        let definition = try NetworkRegistry.named(name)
        let model = try definition(NetworkOptions(variant: variant))
        return try NetworkSummary(model: model, inputShape: definition.inputShape)
    }

    /// The binary weights of ResNet-20's 18 block convolutions (3×3, no bias), stage by stage.
    private let resnet20BinaryWeights =
        6 * 16 * 16 * 9  // stage 1: six 16 → 16 convolutions
        + 32 * 16 * 9 + 5 * 32 * 32 * 9  // stage 2: one 16 → 32 (stride 2), five 32 → 32
        + 64 * 32 * 9 + 5 * 64 * 64 * 9  // stage 3: one 32 → 64 (stride 2), five 64 → 64

    @Test("ResNet-20 1W1A: binary parameters are the 18 block convolutions' weights, float ones the rest")
    func resnet20Parameters() throws {
        let result = try summary("resnet20", .binary)
        #expect(resnet20BinaryWeights == 267_264)
        #expect(result.totals.binaryParameters == resnet20BinaryWeights)
        #expect(result.totals.floatParameters == 269_850 - resnet20BinaryWeights)
        #expect(result.totals.parameters == 269_850)
        #expect(result.totals.untracedParameters == 0)
        // Running mean and variance of the 19 BatchNorm2d (16; 6 × 16, 6 × 32, 6 × 64 channels) and the
        // BatchNorm1d(64).
        #expect(result.totals.nonTrainableParameters == 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64 + 64))
        #expect(result.layers.filter { $0.binaryParameters > 0 }.count == 18)
        #expect(!result.layers.contains { $0.operation == .input })
    }

    @Test("ResNet-20 1W1A: the stem's MACs are float, a block convolution's binary, the classifier's float")
    func resnet20MACs() throws {
        let result = try summary("resnet20", .binary)
        let stem = try #require(result.layers.first { $0.name == "conv1" })
        #expect(stem.floatMACs == 32 * 32 * 16 * 27)  // 32×32 outputs × 16 filters × (3 channels × 3×3 taps)
        #expect(stem.binaryMACs == 0 && stem.floatParameters == 16 * 3 * 9)
        let block = try #require(result.layers.first { $0.name == "layer1.0.conv1" })
        #expect(block.binaryMACs == 32 * 32 * 16 * 16 * 9)
        #expect(block.floatMACs == 0 && block.mixedMACs == 0)
        #expect(block.kind == "BinaryConv2d 3×3/1 1W1A" && block.outputShape == [32, 32, 16])
        let downsampling = try #require(result.layers.first { $0.name == "layer2.0.conv1" })
        #expect(downsampling.kind == "BinaryConv2d 3×3/2 1W1A" && downsampling.outputShape == [16, 16, 32])
        #expect(downsampling.binaryMACs == 16 * 16 * 32 * 16 * 9)
        let classifier = try #require(result.layers.first { $0.name == "linear" })
        #expect(classifier.floatMACs == 10 * 64 && classifier.floatParameters == 10 * 64 + 10)
        // Halving the resolution while doubling the channels keeps a block convolution's H·W·C_out·C_in·9 the same,
        // except for the first convolution of stages 2 and 3, whose input has half the channels.
        let perStage = 32 * 32 * 16 * 16 * 9
        #expect(result.totals.binaryMACs == 6 * perStage + (perStage / 2 + 5 * perStage) * 2)
        #expect(result.totals.floatMACs == 32 * 32 * 16 * 27 + 640)
        #expect(result.totals.binaryMACShare == Double(result.totals.binaryMACs) / Double(result.totals.macs))
    }

    @Test("ResNet-20 1W1A: compression ratio = float32 memory / packed memory, each counted by hand")
    func resnet20Compression() throws {
        let totals = try summary("resnet20", .binary).totals
        let floatValues = (269_850 - resnet20BinaryWeights) + totals.nonTrainableParameters
        let float32Bits = (resnet20BinaryWeights + floatValues) * 32
        let packedBits = resnet20BinaryWeights + floatValues * 32
        #expect(totals.float32Bits == float32Bits)
        #expect(totals.packedBits == packedBits)
        #expect(totals.compressionRatio == Double(float32Bits) / Double(packedBits))
        #expect(totals.compressionRatio > 21 && totals.compressionRatio < 22)
    }

    @Test("full precision has no binary parameters or MACs and a compression ratio of 1")
    func fullPrecision() throws {
        let totals = try summary("resnet20", .fullPrecision).totals
        #expect(totals.binaryParameters == 0)
        #expect(totals.floatParameters == 269_850)
        #expect(totals.binaryMACs == 0 && totals.mixedMACs == 0)
        #expect(totals.compressionRatio == 1)
        #expect(totals.binaryMACShare == 0)
    }

    @Test("1W32A: binary weights are reported, their MACs are mixed, not binary")
    func binaryWeights() throws {
        let result = try summary("resnet20", .binaryWeights)
        let binary = try summary("resnet20", .binary)
        #expect(result.totals.binaryParameters == resnet20BinaryWeights)
        #expect(result.totals.binaryMACs == 0)
        #expect(result.totals.mixedMACs == binary.totals.binaryMACs)
        #expect(result.totals.floatMACs == binary.totals.floatMACs)
        #expect(result.totals.packedBits == binary.totals.packedBits)
        let block = try #require(result.layers.first { $0.name == "layer1.0.conv1" })
        #expect(block.kind == "BinaryConv2d 3×3/1 1W32A" && block.mixedMACs == 32 * 32 * 16 * 16 * 9)
        // The mixed column appears in the table only when there are mixed MACs.
        #expect(result.table().contains("mixed MACs"))
        #expect(!binary.table().contains("mixed MACs"))
    }

    @Test("binary plus float parameters equal the parameter count of every registered network", arguments: [
        ("resnet20", 269_850), ("resnet20-bireal", 269_850), ("resnet18", 11_174_986), ("vgg-small", 4_660_106),
    ])
    func parameterCounts(network: String, count: Int) throws {
        let totals = try summary(network, .binary).totals
        #expect(totals.binaryParameters + totals.floatParameters == count)
        #expect(totals.binaryParameters > 0 && totals.untracedParameters == 0)
    }

    @Test("layer kinds, unique names and inputs for ResNet-18 and VGG-small")
    func kindsAndNames() throws {
        let resnet18 = try summary("resnet18", .binary)
        let downsample = try #require(resnet18.layers.first { $0.name == "layer2.0.shortcut.0" })
        #expect(downsample.kind == "Conv2d 1×1/2" && downsample.outputShape == [16, 16, 128])
        #expect(downsample.floatMACs == 16 * 16 * 128 * 64)
        let vgg = try summary("vgg-small", .binary)
        #expect(vgg.layers.first { $0.name == "pooling" }?.kind == "MaxPool2d 2×2/2")
        // VGG-small calls its one ReLU and its one max-pool module several times: each run is its own row.
        #expect(vgg.layers.filter { $0.module == "pooling" }.map(\.name) == ["pooling", "pooling#2", "pooling#3"])
        #expect(vgg.layers.first { $0.name == "flatten" }?.outputShape == [8192])
        for summary in [resnet18, vgg] {
            #expect(Set(summary.layers.map(\.name)).count == summary.layers.count)
            #expect(summary.layers.first?.inputs == ["input"])
        }
        let bn = try #require(vgg.layers.first { $0.name == "bn0" })
        #expect(bn.kind == "BatchNorm2d" && bn.floatParameters == 256 && bn.nonTrainableParameters == 256)
    }

    @Test("a tensor read twice is counted once; parameters no op reads are reported apart")
    func sharedAndUnread() throws {
        final class Twice: Module {
            let conv: Conv2d
            let unused: Linear
            init(seed: UInt64) throws {
                conv = try Conv2d(inputChannels: 3, outputChannels: 3, kernelSize: 3, padding: 1, seed: seed)
                unused = try Linear(inputFeatures: 4, outputFeatures: 2)
                super.init()
            }
            override func callAsFunction(_ x: Tensor) throws -> Tensor { try conv(conv(x)) }
        }
        let result = try NetworkSummary(model: try Twice(seed: 1), inputShape: [4, 4, 3])
        #expect(result.layers.map(\.name) == ["conv", "conv#2"])
        #expect(result.totals.floatParameters == 3 * 3 * 9 + 3)
        #expect(result.layers[1].floatParameters == 0)
        #expect(result.totals.floatMACs == 2 * (4 * 4 * 3 * 3 * 9))
        #expect(result.totals.untracedParameters == 4 * 2 + 2)
        #expect(result.totalsLines().last?.contains("never reads") == true)
    }

    @Test("a graph alone needs every tensor's shape")
    func missingShape() throws {
        let model = try Conv2d(inputChannels: 3, outputChannels: 2, kernelSize: 3, seed: 1)
        let graph = try NetworkGraph.trace(model, inputShape: [5, 5, 3])
        #expect { try NetworkSummary(graph: graph, parameterShapes: ["weight": [2, 3, 3, 3]]) } throws: {
            "\($0)".contains("`bias`")
        }
        let summary = try NetworkSummary(graph: graph, parameterShapes: ["weight": [2, 3, 3, 3], "bias": [2]])
        #expect(summary.totals.floatParameters == 56 && summary.totals.floatMACs == 3 * 3 * 2 * 27)
    }

    @Test("JSON: one object with stable snake_case keys, the same numbers as the summary")
    func json() throws {
        let result = try summary("resnet20", .binary)
        let data = try result.json(model: "resnet20", variant: "1w1a")
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == ["model", "variant", "input", "layers", "totals"])
        #expect(object["model"] as? String == "resnet20" && object["variant"] as? String == "1w1a")
        #expect(object["input"] as? [Int] == [32, 32, 3])
        let layers = try #require(object["layers"] as? [[String: Any]])
        #expect(layers.count == result.layers.count)
        #expect(Set(layers[0].keys) == [
            "name", "module", "op", "kind", "inputs", "output_shape", "binary_parameters", "float_parameters",
            "non_trainable_parameters", "binary_macs", "mixed_macs", "float_macs", "memory_float32_bytes",
            "memory_packed_bytes",
        ])
        #expect(layers[0]["name"] as? String == "conv1" && layers[0]["float_macs"] as? Int == 32 * 32 * 16 * 27)
        let totals = try #require(object["totals"] as? [String: Any])
        #expect(Set(totals.keys) == [
            "layers", "parameters", "binary_parameters", "float_parameters", "non_trainable_parameters",
            "untraced_parameters", "macs", "binary_macs", "mixed_macs", "float_macs", "binary_mac_share",
            "memory_float32_bytes", "memory_packed_bytes", "compression_ratio",
        ])
        #expect(totals["binary_parameters"] as? Int == resnet20BinaryWeights)
        #expect(totals["memory_packed_bytes"] as? Int == result.totals.packedBits / 8)
        #expect(totals["compression_ratio"] as? Double == result.totals.compressionRatio)
        // Sorted keys on one line: the same text every time.
        #expect(String(decoding: data, as: UTF8.self).split(separator: "\n").count == 1)
        #expect(try result.json(model: "resnet20", variant: "1w1a") == data)
    }

    @Test("the table ends with a totals row and the totals lines keep training and packed memory apart")
    func text() throws {
        let result = try summary("resnet20", .binary)
        let rows = result.table().split(separator: "\n")
        #expect(rows.count == result.layers.count + 2)  // header, layers, totals
        #expect(rows.last?.hasPrefix("total") == true && rows.last?.contains("267,264") == true)
        let lines = result.totalsLines()
        #expect(lines.contains { $0.hasPrefix("training memory") && $0.contains("1,085,416 bytes") })
        #expect(lines.contains {
            $0.hasPrefix("packed memory") && $0.contains("49,768 bytes") && $0.contains("21.81×")
        })
    }
}
