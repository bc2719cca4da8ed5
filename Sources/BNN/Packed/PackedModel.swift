import BNNRuntime
import CKernels
import Foundation

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

    /// A layer from its fields (the packer builds them; files are read through the C reader).
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

    /// A graph from its fields.
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
/// `__metadata__` holds `format` = "swift-bnn-packed", `version` = "2" ("1" still loads), `graph` (the JSON of
/// `PackedGraph`) and `checksum` = "fnv1a64:<16 hex digits>" over the graph text and every tensor (name, dtype,
/// shape, bytes, in the byte order of the names), so that any corrupted byte is reported rather than silently
/// changing the network.
///
/// Files are read and validated by the C reader of the BNNRuntime target (`bnn_model_file.h`), the same code that
/// serves the C inference API: one parser and one set of checks for Swift and C. A model built in memory
/// (`init(graph:tensors:)`, the packer) is serialised and read back through it too, so it is checked exactly as
/// a file would be, and the engine runs what the reader produced.
public struct PackedModel: Sendable, Equatable {
    /// The metadata `format` of every packed file.
    public static let format = "swift-bnn-packed"
    /// The version this build writes: 2 added the float pools, the affine step and `variant`.
    public static let version = "2"

    /// The wiring: layers in execution order and their buffers.
    public let graph: PackedGraph
    /// The layers' tensors by `<layer>.<part>` name.
    public let tensors: [String: SafeTensors.TensorData]
    /// The C reader's model, which the engine compiles.
    let file: ParsedPackedFile

    /// Two models are equal when their graphs and tensors are.
    public static func == (lhs: PackedModel, rhs: PackedModel) -> Bool {
        lhs.graph == rhs.graph && lhs.tensors == rhs.tensors
    }

    /// A model from its parts; checks them as the reader checks a file (every layer has exactly the tensors it
    /// needs, with their dtypes and shapes; buffers and sizes in range).
    public init(graph: PackedGraph, tensors: [String: SafeTensors.TensorData]) throws {
        let bytes: [UInt8]
        do {
            bytes = try PackedModel.serialize(graph: graph, tensors: tensors)
        } catch let error as SafeTensorsError {
            throw BNNError(.packedModel, "packed model: \(error)")
        }
        file = try ParsedPackedFile(bytes: bytes, label: "packed model")
        self.graph = graph
        self.tensors = tensors
    }

    /// Reads and validates a `.bnn` file.
    public static func load(contentsOf url: URL) throws -> PackedModel {
        try PackedModel(file: ParsedPackedFile(path: url.path))
    }

    /// Parses and validates the bytes of a `.bnn` file (`path` names it in errors).
    public static func parse(_ data: Data, path: String = "<memory>") throws -> PackedModel {
        try PackedModel(file: ParsedPackedFile(bytes: [UInt8](data), label: path))
    }

    /// The graph and tensors of what the C reader accepted.
    private init(file: ParsedPackedFile) throws {
        self.file = file
        let model = file.pointer.pointee
        var layers: [PackedLayer] = []
        layers.reserveCapacity(model.layer_count)
        func optional(_ value: Int64) -> Int? { value < 0 ? nil : Int(value) }
        func optional(_ value: Int32) -> Int? { value < 0 ? nil : Int(value) }
        func flag(_ value: Int32) -> Bool? { value < 0 ? nil : value == 1 }
        for index in 0..<model.layer_count {
            let layer = model.layers[index]
            guard let op = PackedLayer.Operation(rawValue: String(cString: bnn_op_name(layer.op))) else {
                throw BNNError(.packedModel, "layer \(index): op \(layer.op.rawValue) has no Swift name (internal error)")
            }
            layers.append(PackedLayer(
                name: runtimeString(layer.name), op: op, input: Int(layer.input), residual: optional(layer.residual),
                output: optional(layer.output), outputBits: optional(layer.output_bits), height: Int(layer.height),
                width: Int(layer.width), channels: Int(layer.channels), outChannels: Int(layer.out_channels),
                kernel: optional(layer.kernel), stride: optional(layer.stride), padding: optional(layer.padding),
                reluBefore: flag(layer.relu_before), reluAfter: flag(layer.relu_after)))
        }
        graph = PackedGraph(
            model: runtimeString(model.model), variant: model.variant.bytes == nil ? nil : runtimeString(model.variant),
            input: [Int(model.input.0), Int(model.input.1), Int(model.input.2)], classes: Int(model.classes),
            layers: layers)
        do {
            tensors = try SafeTensors.contents(of: model.file.pointee, file: file.label).tensors
        } catch {
            throw BNNError(.packedModel, "\(file.label): not a readable packed model: \(error)")
        }
    }

    /// The complete file: the tensors and the metadata with the graph and its checksum.
    static func serialize(graph: PackedGraph, tensors: [String: SafeTensors.TensorData]) throws -> [UInt8] {
        try SafeTensors.serialize(tensors, metadata: metadata(graph: graph, tensors: tensors))
    }

    private static func metadata(graph: PackedGraph, tensors: [String: SafeTensors.TensorData]) throws -> [String: String] {
        let graphText = try graphJSON(graph)
        return [
            "format": PackedModel.format, "version": PackedModel.version, "graph": graphText,
            "checksum": PackedModel.checksum(graph: graphText, tensors: tensors),
        ]
    }

    /// Writes the model atomically (temporary file, then rename).
    public func write(to url: URL) throws {
        try SafeTensors.write(tensors, metadata: PackedModel.metadata(graph: graph, tensors: tensors), to: url)
    }

    /// The graph as the JSON text stored in the file.
    func graphJSON() throws -> String { try PackedModel.graphJSON(graph) }

    static func graphJSON(_ graph: PackedGraph) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(graph), as: UTF8.self)
    }

    /// FNV-1a (64 bit) over the graph text and every tensor in the byte order of the names (UTF-8, the order the
    /// C reader checks in).
    static func checksum(graph: String, tensors: [String: SafeTensors.TensorData]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
        }
        mix(graph.utf8)
        for name in tensors.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            let tensor = tensors[name]!
            mix(name.utf8)
            mix(tensor.dtype.rawValue.utf8)
            mix(tensor.shape.map(String.init).joined(separator: ",").utf8)
            mix(tensor.bytes)
        }
        return "fnv1a64:" + String(format: "%016llx", hash)
    }

    /// Bytes of each layer's tensors, in graph order, and their total (the file size minus its header).
    public func layerBytes() -> [(layer: PackedLayer, bytes: Int)] {
        graph.layers.map { layer in
            (layer, layer.expectedTensors().reduce(0) { $0 + (tensors["\(layer.name).\($1.suffix)"]?.bytes.count ?? 0) })
        }
    }
}

/// A packed model as the C reader holds it (`bnn_packed_model`), freed with the last `PackedModel` that uses it.
/// The C model is immutable once parsed, so it may be read from any thread.
final class ParsedPackedFile: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<bnn_packed_model>
    /// How the file is named in messages.
    let label: String

    /// Parses bytes held in memory (the reader keeps its own copy).
    init(bytes: [UInt8], label: String) throws {
        var model: UnsafeMutablePointer<bnn_packed_model>?
        var message: UnsafeMutablePointer<CChar>?
        let status = bytes.withUnsafeBufferPointer { bnn_packed_model_parse($0.baseAddress, $0.count, label, &model, &message) }
        guard status == Int32(BNN_OK), let model else {
            throw BNNError(.packedModel, takeRuntimeMessage(message, status: status))
        }
        pointer = model
        self.label = label
    }

    /// Reads and parses the file at `path`.
    init(path: String) throws {
        var model: UnsafeMutablePointer<bnn_packed_model>?
        var message: UnsafeMutablePointer<CChar>?
        let status = bnn_packed_model_read(path, &model, &message)
        guard status == Int32(BNN_OK), let model else {
            throw BNNError(.packedModel, takeRuntimeMessage(message, status: status))
        }
        pointer = model
        label = path
    }

    deinit { bnn_packed_model_free(pointer) }
}

/// A message of the C runtime as a String (then freed), or the status's fixed description if there is none.
func takeRuntimeMessage(_ message: UnsafeMutablePointer<CChar>?, status: Int32) -> String {
    guard let message else { return String(cString: bnn_status_message(status)) }
    defer { free(message) }
    return String(cString: message)
}

/// Swift text of the C reader's bytes (valid UTF-8: the reader checked it).
func runtimeString(_ view: bnn_text_view) -> String {
    guard let bytes = view.bytes else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: bytes, count: view.length), as: UTF8.self)
}
