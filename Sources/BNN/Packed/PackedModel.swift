import CKernels
import Foundation

/// An error in a packed model file or in what it describes, naming the file, layer or tensor at fault.
public struct PackedModelError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What is wrong, and where.
    public let message: String
    /// An error saying `message`.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One layer of a packed network: what it computes, which buffers it reads and writes, its geometry.
///
/// Buffers are numbered: 0 is the input image (NHWC floats); a layer's float output, packed-sign output and
/// residual are other buffers. Conv layers compute `y = max(acc·prescale, floor)·scale + bias (+ residual)`,
/// then `max(y, 0)` if `reluAfter` — see `ckernels_engine.h`.
public struct PackedLayer: Codable, Sendable, Equatable {
    /// What a layer computes.
    public enum Operation: String, Codable, Sendable {
        /// Real-valued convolution (tensors `weight` [O, kh, kw, C], `scale`, `bias`).
        case conv
        /// Binary convolution on packed signs (tensors `bits` U64 [O·kh·kw, words(C)], `prescale`, `scale`, `bias`).
        case bconv
        /// Every `stride`-th pixel, channels zero-padded equally on both sides to `outChannels` (the CIFAR ResNet's
        /// option-A shortcut).
        case shortcut
        /// Binary max-pool on packed signs (the sign of a max-pool is the max-pool of the signs).
        case bmaxpool
        /// Float max-pool (padding −∞), float and/or sign output.
        case maxpool
        /// Float average pool (zero padding counted in the divisor), float and/or sign output.
        case avgpool
        /// Per-channel `max(x, floor)·scale + bias (+ residual)`, then the ReLU after if asked (tensors `scale`,
        /// `bias`): a batch norm, ReLU or sum that no convolution could absorb, or the signs of a float value.
        case affine
        /// Mean over the pixels, then the optional per-channel `scale`, `bias` (a folded BatchNorm1d).
        case globalAvgPool = "global_avgpool"
        /// Fully connected (tensors `weight` [O, C], `bias`).
        case linear
    }

    /// Prefix of the layer's tensors in the file (`<name>.weight`, `<name>.bits`, ...).
    public var name: String
    /// What the layer computes.
    public var op: Operation
    /// Buffer read.
    public var input: Int
    /// Buffer added after the affine transform (the shortcut), if any.
    public var residual: Int?
    /// Buffer of the float result, if it is needed.
    public var output: Int?
    /// Buffer of the packed signs of the result, for a following binary layer.
    public var outputBits: Int?
    /// Input geometry per image: height.
    public var height: Int
    /// Input geometry per image: width.
    public var width: Int
    /// Input geometry per image: channels.
    public var channels: Int
    /// Channels (or features) of the result.
    public var outChannels: Int
    /// Square kernel size (conv, bconv, bmaxpool).
    public var kernel: Int?
    /// Step between output pixels (conv, bconv, shortcut, bmaxpool).
    public var stride: Int?
    /// Zero rows and columns on each side (conv, bconv, bmaxpool).
    public var padding: Int?
    /// ReLU on `acc·prescale` before the affine transform.
    public var reluBefore: Bool?
    /// ReLU after the affine transform and the residual.
    public var reluAfter: Bool?

    enum CodingKeys: String, CodingKey {
        case name, op, input, residual, output, height, width, channels, kernel, stride, padding
        case outputBits = "output_bits", outChannels = "out_channels", reluBefore = "relu_before"
        case reluAfter = "relu_after"
    }

    public init(
        name: String, op: Operation, input: Int, residual: Int? = nil, output: Int? = nil, outputBits: Int? = nil,
        height: Int, width: Int, channels: Int, outChannels: Int, kernel: Int? = nil, stride: Int? = nil,
        padding: Int? = nil, reluBefore: Bool? = nil, reluAfter: Bool? = nil
    ) {
        self.name = name
        self.op = op
        self.input = input
        self.residual = residual
        self.output = output
        self.outputBits = outputBits
        self.height = height
        self.width = width
        self.channels = channels
        self.outChannels = outChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.reluBefore = reluBefore
        self.reluAfter = reluAfter
    }

    /// The tensors this layer needs, with their element types and shapes.
    func expectedTensors() -> [(suffix: String, dtype: SafeTensors.DType, shape: [Int])] {
        let k = kernel ?? 1
        switch op {
        case .conv:
            return [("weight", .f32, [outChannels, k, k, channels]), ("scale", .f32, [outChannels]),
                    ("bias", .f32, [outChannels])]
        case .bconv:
            return [("bits", .u64, [outChannels * k * k, (channels + 63) / 64]), ("prescale", .f32, [outChannels]),
                    ("scale", .f32, [outChannels]), ("bias", .f32, [outChannels])]
        case .globalAvgPool, .affine:
            return [("scale", .f32, [channels]), ("bias", .f32, [channels])]
        case .linear:
            return [("weight", .f32, [outChannels, channels]), ("bias", .f32, [outChannels])]
        case .shortcut, .bmaxpool, .maxpool, .avgpool:
            return []
        }
    }
}

/// The wiring of a packed network, stored as JSON in the file's metadata.
public struct PackedGraph: Codable, Sendable, Equatable {
    /// The registered network it came from (informative), e.g. "resnet20", or a name the user chose.
    public var model: String
    /// Which of its variants: "1w1a" for every packed network so far (informative; absent in version-1 files).
    public var variant: String?
    /// Input height, width, channels of one image (NHWC).
    public var input: [Int]
    /// Logits per image.
    public var classes: Int
    /// The layers in execution order.
    public var layers: [PackedLayer]

    public init(model: String, variant: String? = "1w1a", input: [Int], classes: Int, layers: [PackedLayer]) {
        self.model = model
        self.variant = variant
        self.input = input
        self.classes = classes
        self.layers = layers
    }
}

/// A trained binary network in deployable form: sign(W) of every binary convolution as bits, real layers as
/// float32, α and eval-mode batch norm folded into per-channel multiply/add, and the graph.
///
/// File format (`.bnn`): a safetensors file. Tensors are named `<layer>.<part>` (see `PackedLayer.Operation`);
/// `__metadata__` holds `format` = "swift-bnn-packed", `version` = "1", `graph` (the JSON of `PackedGraph`) and
/// `checksum` = "fnv1a64:<16 hex digits>" over the graph text and every tensor (name, dtype, shape, bytes, in name
/// order), so that any corrupted byte is reported rather than silently changing the network.
public struct PackedModel: Sendable, Equatable {
    public static let format = "swift-bnn-packed"
    /// The version this build writes: 2 added the float pools, the affine step and `variant`.
    public static let version = "2"
    /// Versions this build reads (a version-1 file uses a subset of version 2).
    public static let readableVersions: Set<String> = ["1", "2"]

    public let graph: PackedGraph
    public let tensors: [String: SafeTensors.TensorData]

    /// A model from its parts; checks that every layer has exactly the tensors it needs.
    public init(graph: PackedGraph, tensors: [String: SafeTensors.TensorData]) throws {
        try PackedModel.validate(graph: graph, tensors: tensors, file: "packed model")
        self.graph = graph
        self.tensors = tensors
    }

    /// Reads and validates a `.bnn` file.
    public static func load(contentsOf url: URL) throws -> PackedModel {
        let file: SafeTensorsFile
        do {
            file = try SafeTensors.read(url)
        } catch {
            throw PackedModelError("\(url.path): not a readable packed model: \(error)")
        }
        return try PackedModel(file: file, path: url.path)
    }

    /// Parses and validates the bytes of a `.bnn` file (`path` names it in errors).
    public static func parse(_ data: Data, path: String = "<memory>") throws -> PackedModel {
        let file: SafeTensorsFile
        do {
            file = try SafeTensors.parse(data, file: path)
        } catch {
            throw PackedModelError("\(path): not a readable packed model: \(error)")
        }
        return try PackedModel(file: file, path: path)
    }

    private init(file: SafeTensorsFile, path: String) throws {
        let metadata = file.metadata
        guard metadata["format"] == PackedModel.format else {
            throw PackedModelError(
                "\(path): metadata `format` is \(metadata["format"].map { "\"\($0)\"" } ?? "missing"), expected "
                    + "\"\(PackedModel.format)\" (is this a packed model written by `bnn export`?)")
        }
        guard let version = metadata["version"], PackedModel.readableVersions.contains(version) else {
            throw PackedModelError(
                "\(path): packed model version \(metadata["version"] ?? "missing") is not supported (this build "
                    + "reads versions \(PackedModel.readableVersions.sorted().joined(separator: " and ")))")
        }
        guard let graphText = metadata["graph"] else { throw PackedModelError("\(path): metadata has no `graph`") }
        guard let stored = metadata["checksum"] else { throw PackedModelError("\(path): metadata has no `checksum`") }
        let computed = PackedModel.checksum(graph: graphText, tensors: file.tensors)
        guard stored == computed else {
            throw PackedModelError("\(path): checksum mismatch (stored \(stored), computed \(computed)): the file is corrupted")
        }
        let graph: PackedGraph
        do {
            graph = try JSONDecoder().decode(PackedGraph.self, from: Data(graphText.utf8))
        } catch {
            throw PackedModelError("\(path): metadata `graph` is not a valid graph: \(error)")
        }
        try PackedModel.validate(graph: graph, tensors: file.tensors, file: path)
        self.graph = graph
        self.tensors = file.tensors
    }

    /// Writes the model atomically (temporary file, then rename).
    public func write(to url: URL) throws {
        let graphText = try graphJSON()
        let metadata = [
            "format": PackedModel.format, "version": PackedModel.version, "graph": graphText,
            "checksum": PackedModel.checksum(graph: graphText, tensors: tensors),
        ]
        try SafeTensors.write(tensors, metadata: metadata, to: url)
    }

    /// The graph as the JSON text stored in the file.
    func graphJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(graph), as: UTF8.self)
    }

    /// FNV-1a (64 bit) over the graph text and every tensor in name order.
    static func checksum(graph: String, tensors: [String: SafeTensors.TensorData]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
        }
        mix(graph.utf8)
        for name in tensors.keys.sorted() {
            let tensor = tensors[name]!
            mix(name.utf8)
            mix(tensor.dtype.rawValue.utf8)
            mix(tensor.shape.map(String.init).joined(separator: ",").utf8)
            mix(tensor.bytes)
        }
        return "fnv1a64:" + String(format: "%016llx", hash)
    }

    private static func validate(graph: PackedGraph, tensors: [String: SafeTensors.TensorData], file: String) throws {
        guard graph.input.count == 3, graph.input.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else {
            throw PackedModelError("\(file): graph `input` must be [height, width, channels], got \(graph.input)")
        }
        guard graph.classes >= 1, !graph.layers.isEmpty else {
            throw PackedModelError("\(file): graph needs at least one layer and one class")
        }
        var expected = Set<String>()
        for layer in graph.layers {
            for (suffix, dtype, shape) in layer.expectedTensors() {
                let name = "\(layer.name).\(suffix)"
                guard expected.insert(name).inserted else {
                    throw PackedModelError("\(file): two layers are named \"\(layer.name)\"")
                }
                guard let tensor = tensors[name] else {
                    throw PackedModelError("\(file): layer \"\(layer.name)\" (\(layer.op.rawValue)) needs tensor \"\(name)\", which is missing")
                }
                guard tensor.dtype == dtype, tensor.shape == shape else {
                    throw PackedModelError(
                        "\(file): tensor \"\(name)\" is \(tensor.dtype.rawValue) \(tensor.shape), expected "
                            + "\(dtype.rawValue) \(shape) for layer \"\(layer.name)\"")
                }
            }
        }
        if let extra = tensors.keys.sorted().first(where: { !expected.contains($0) }) {
            throw PackedModelError("\(file): tensor \"\(extra)\" belongs to no layer of the graph")
        }
    }

    /// Bytes of each layer's tensors, in graph order, and their total (the file size minus its header).
    public func layerBytes() -> [(layer: PackedLayer, bytes: Int)] {
        graph.layers.map { layer in
            (layer, layer.expectedTensors().reduce(0) { $0 + (tensors["\(layer.name).\($1.suffix)"]?.bytes.count ?? 0) })
        }
    }
}
