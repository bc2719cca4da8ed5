import Foundation

// A per-layer account of a network — parameters, multiply-accumulates and memory by precision — computed from the
// traced graph, so it describes what the forward pass runs rather than what the module tree declares.
//
// Conventions, chosen to match what BNN papers and Larq's model summary report, and stated here once:
// - Binary parameters are the latent weights of binary convolutions, 1W1A and 1W32A alike: deployed, each is one
//   bit. Float parameters are every other trainable tensor (real convolution and linear weights and biases, batch
//   norm γ and β). Batch norm's running mean and variance are not trained but are deployed state, so they are
//   counted as float32 "non-trainable" parameters in memory (as Larq counts Keras's moving statistics), and never
//   in the parameter counts, which stay equal to PyTorch's `sum(p.numel())`.
// - MACs are counted by the precision of both operands, because that decides which hardware does them: a 1W1A
//   binary convolution's are binary (XNOR-popcount), a 1W32A one's are "mixed" (±1 weights on float activations:
//   additions and subtractions, not XNOR-popcount, so neither column would be honest for them), real convolutions'
//   and linear layers' are float. Batch norm, pooling, activations and additions count no MACs (as in Larq: they
//   are a few operations per output, not per weight). The binary share is binary MACs over all MACs.
// - Memory is per parameter: float32 memory stores every parameter and running statistic as 32 bits (what the
//   weights take while training, latent weights included); packed memory stores binary weights as 1 bit and the
//   rest as 32 bits. Neither is the size of a `bnn export` file, which folds batch norm into per-channel factors
//   and pads each filter's bits to 64-bit words (`bnn summary --packed` itemises that file).

/// What one traced network holds and computes, layer by layer, with totals: parameters split into binary (1 bit when
/// deployed) and float, multiply-accumulates split by operand precision, and memory as float32 and as packed bits.
///
/// Built from a `NetworkGraph` and the shapes of the model's tensors (`init(graph:parameterShapes:bufferShapes:)`),
/// or from a model, which is traced (`init(model:inputShape:)`). The conventions are in the comment at the top of
/// NetworkSummary.swift.
public struct NetworkSummary: Equatable, Sendable {
    /// One traced operation (every node but the input).
    public struct Layer: Equatable, Sendable {
        /// The node of the graph this row describes.
        public let node: Int
        /// A name unique in the summary: the module path, or the operation's name when no module ran it, with `#k`
        /// appended for the k-th run (k ≥ 2) of the same name (a module called several times, functional ops).
        public let name: String
        /// Path of the module that ran it (`layer1.0.conv1`), or "" when none can be named.
        public let module: String
        /// What it computes.
        public let operation: GraphOperation
        /// The operation for people: "BinaryConv2d 3×3/2 1W1A", "Conv2d 1×1/2", "MaxPool2d 2×2/2", "BatchNorm2d".
        public let kind: String
        /// The names of the rows it reads ("input" for the image).
        public let inputs: [String]
        /// Its result for one image, e.g. `[16, 16, 32]`.
        public let outputShape: [Int]
        /// Latent weights of a binary convolution: one bit each when packed.
        public let binaryParameters: Int
        /// Every other trainable value it reads: real weights and biases, batch norm γ and β.
        public let floatParameters: Int
        /// Running statistics it reads (batch norm's mean and variance): float32 state that is not trained.
        public let nonTrainableParameters: Int
        /// Multiply-accumulates with ±1 on both sides (1W1A binary convolutions), per image.
        public let binaryMACs: Int
        /// Multiply-accumulates of ±1 weights with float activations (1W32A binary convolutions), per image.
        public let mixedMACs: Int
        /// Multiply-accumulates of floats (real convolutions, linear layers), per image.
        public let floatMACs: Int

        /// Trainable values: binary plus float (running statistics excluded).
        public var parameters: Int { binaryParameters + floatParameters }
        /// All multiply-accumulates per image.
        public var macs: Int { binaryMACs + mixedMACs + floatMACs }
        /// Bits with every parameter and running statistic as float32 (the training-time size of the weights).
        public var float32Bits: Int { (binaryParameters + floatParameters + nonTrainableParameters) * 32 }
        /// Bits with binary weights as 1 bit and everything else as float32.
        public var packedBits: Int { binaryParameters + (floatParameters + nonTrainableParameters) * 32 }
    }

    /// Sums over the layers, and the ratios derived from them.
    public struct Totals: Equatable, Sendable {
        /// Number of rows.
        public let layers: Int
        /// Sum of `Layer.binaryParameters`.
        public let binaryParameters: Int
        /// Sum of `Layer.floatParameters`.
        public let floatParameters: Int
        /// Sum of `Layer.nonTrainableParameters`.
        public let nonTrainableParameters: Int
        /// Parameters of the model that no traced operation reads (0 for a graph given without its model). They are
        /// in no other count: a forward pass that never reads them does not need them.
        public let untracedParameters: Int
        /// Sum of `Layer.binaryMACs`.
        public let binaryMACs: Int
        /// Sum of `Layer.mixedMACs`.
        public let mixedMACs: Int
        /// Sum of `Layer.floatMACs`.
        public let floatMACs: Int
        /// Sum of `Layer.float32Bits`.
        public let float32Bits: Int
        /// Sum of `Layer.packedBits`.
        public let packedBits: Int

        /// Trainable values read by the forward pass: binary plus float.
        public var parameters: Int { binaryParameters + floatParameters }
        /// All multiply-accumulates per image.
        public var macs: Int { binaryMACs + mixedMACs + floatMACs }
        /// `float32Bits / packedBits`: how many times smaller the weights are with binary weights as bits (1 for a
        /// network without binary weights; 0 for one without parameters).
        public var compressionRatio: Double { packedBits == 0 ? 0 : Double(float32Bits) / Double(packedBits) }
        /// `binaryMACs / macs`, in [0, 1] (0 for a network without MACs).
        public var binaryMACShare: Double { macs == 0 ? 0 : Double(binaryMACs) / Double(macs) }
    }

    /// One image, `[H, W, C]`.
    public let inputShape: [Int]
    /// One row per traced operation, in execution order.
    public let layers: [Layer]
    /// The sums.
    public let totals: Totals

    /// Traces `model` on one image of `inputShape` (`[H, W, C]`, see `NetworkGraph.trace`) and summarises the graph
    /// with the shapes of the model's parameters and buffers. Parameters the forward pass never reads are counted in
    /// `totals.untracedParameters` only.
    public init(model: Module, inputShape: [Int]) throws {
        let graph = try NetworkGraph.trace(model, inputShape: inputShape)
        let parameters = model.namedParameters()
        let buffers = model.namedBuffers()
        let read = Set(graph.nodes.flatMap { $0.parameters.values })
        try self.init(
            graph: graph,
            parameterShapes: Dictionary(parameters.map { ($0.name, $0.tensor.shape) }, uniquingKeysWith: { a, _ in a }),
            bufferShapes: Dictionary(buffers.map { ($0.name, $0.tensor.shape) }, uniquingKeysWith: { a, _ in a }),
            untracedParameters: parameters.filter { !read.contains($0.name) }.reduce(0) { $0 + $1.tensor.count })
    }

    /// Summarises `graph`, whose nodes name their tensors by state-dict name: `parameterShapes` holds the trainable
    /// tensors' shapes (convolutions OIHW, linear `[out, in]`), `bufferShapes` the running statistics'. A tensor read
    /// by several nodes is counted once, at its first reader. Fails, naming the node, when a tensor it reads is in
    /// neither dictionary or a weight's shape does not fit its operation.
    public init(graph: NetworkGraph, parameterShapes: [String: [Int]], bufferShapes: [String: [Int]] = [:]) throws {
        try self.init(graph: graph, parameterShapes: parameterShapes, bufferShapes: bufferShapes, untracedParameters: 0)
    }

    /// The graph initialiser, with the count of parameters no node reads (known only when the model is at hand).
    private init(
        graph: NetworkGraph, parameterShapes: [String: [Int]], bufferShapes: [String: [Int]], untracedParameters: Int
    ) throws {
        inputShape = graph.inputShape
        var counted: Set<String> = []
        var seenNames: [String: Int] = [:]
        var names = [String](repeating: "input", count: graph.nodes.count)
        var layers: [Layer] = []
        for node in graph.nodes where node.operation != .input {
            var base = node.module.isEmpty ? node.operation.name : node.module
            if base == "input" { base = "input (op)" }  // keeps "input" meaning the image in `inputs`
            let run = (seenNames[base] ?? 0) + 1
            seenNames[base] = run
            names[node.id] = run == 1 ? base : "\(base)#\(run)"

            var binary = 0, float = 0, nonTrainable = 0
            var weightShape: [Int]?
            for (role, name) in node.parameters.sorted(by: { $0.key < $1.key }) {
                if role == "weight" { weightShape = parameterShapes[name] ?? bufferShapes[name] }
                guard !counted.contains(name) else { continue }
                counted.insert(name)
                if let shape = parameterShapes[name] {
                    let count = shape.reduce(1, *)
                    if role == "weight", case .binaryConv2d = node.operation { binary += count } else { float += count }
                } else if let shape = bufferShapes[name] {
                    nonTrainable += shape.reduce(1, *)
                } else {
                    throw BNNError(.graph, "summary: \(node.label) reads `\(name)` (\(role)), whose shape was not given")
                }
            }

            var binaryMACs = 0, mixedMACs = 0, floatMACs = 0
            let outputs = node.shape.reduce(1, *)
            switch node.operation {
            case .conv2d, .binaryConv2d:
                // Each output element is a dot product over the filter: input channels × kernel taps.
                guard let weightShape, weightShape.count == 4 else {
                    throw BNNError(.graph, "summary: \(node.label) has no OIHW weight shape")
                }
                let macs = node.shape.dropLast().reduce(1, *) * weightShape.reduce(1, *)
                if case .binaryConv2d(_, _, _, let binarizeInput) = node.operation {
                    if binarizeInput { binaryMACs = macs } else { mixedMACs = macs }
                } else {
                    floatMACs = macs
                }
            case .linear:
                guard let weightShape, weightShape.count == 2 else {
                    throw BNNError(.graph, "summary: \(node.label) has no [out, in] weight shape")
                }
                floatMACs = outputs / max(weightShape[0], 1) * weightShape[0] * weightShape[1]
            default:
                break
            }

            layers.append(Layer(
                node: node.id, name: names[node.id], module: node.module, operation: node.operation,
                kind: NetworkSummary.kind(node), inputs: node.inputs.map { names[$0] }, outputShape: node.shape,
                binaryParameters: binary, floatParameters: float, nonTrainableParameters: nonTrainable,
                binaryMACs: binaryMACs, mixedMACs: mixedMACs, floatMACs: floatMACs))
        }
        self.layers = layers
        totals = Totals(
            layers: layers.count,
            binaryParameters: layers.reduce(0) { $0 + $1.binaryParameters },
            floatParameters: layers.reduce(0) { $0 + $1.floatParameters },
            nonTrainableParameters: layers.reduce(0) { $0 + $1.nonTrainableParameters },
            untracedParameters: untracedParameters,
            binaryMACs: layers.reduce(0) { $0 + $1.binaryMACs },
            mixedMACs: layers.reduce(0) { $0 + $1.mixedMACs },
            floatMACs: layers.reduce(0) { $0 + $1.floatMACs },
            float32Bits: layers.reduce(0) { $0 + $1.float32Bits },
            packedBits: layers.reduce(0) { $0 + $1.packedBits })
    }

    /// "BinaryConv2d 3×3/2 1W1A", "Conv2d 1×1/2", "BatchNorm2d", "MaxPool2d 2×2/2", ... for `node`.
    static func kind(_ node: GraphNode) -> String {
        func number(_ value: Float) -> String {
            value == value.rounded() ? String(Int(value)) : String(value)
        }
        func window(_ kernel: Int, _ stride: Int, _ padding: Int) -> String {
            "\(kernel)×\(kernel)/\(stride)" + (padding > 0 ? " pad \(padding)" : "")
        }
        switch node.operation {
        case .input: return "Input"
        case .conv2d(let kernel, let stride, _, let bias):
            return "Conv2d \(kernel)×\(kernel)/\(stride)" + (bias ? " +bias" : "")
        case .binaryConv2d(let kernel, let stride, _, let binarizeInput):
            return "BinaryConv2d \(kernel)×\(kernel)/\(stride) " + (binarizeInput ? "1W1A" : "1W32A")
        case .batchNorm: return node.shape.count == 1 ? "BatchNorm1d" : "BatchNorm2d"
        case .relu: return "ReLU"
        case .hardtanh(let min, let max): return "Hardtanh [\(number(min)), \(number(max))]"
        case .maxPool2d(let kernel, let stride, let padding): return "MaxPool2d " + window(kernel, stride, padding)
        case .avgPool2d(let kernel, let stride, let padding): return "AvgPool2d " + window(kernel, stride, padding)
        case .globalAvgPool: return "GlobalAvgPool"
        case .flatten: return "Flatten"
        case .reshape: return "Reshape"
        case .linear(let bias): return bias ? "Linear" : "Linear (no bias)"
        case .add: return "Add"
        case .scale(let factor): return "Scale ×\(number(factor))"
        case .shortcutOptionA(let padding, let stride): return "Shortcut A /\(stride) +\(padding)+\(padding) ch"
        }
    }
}

// MARK: - Text

extension NetworkSummary {
    /// An aligned table, one row per layer and a last row of totals: name, kind, output shape, binary / float /
    /// non-trainable parameters, binary / (mixed) / float MACs, and bytes as float32 and packed. The mixed-MACs
    /// column appears only when some convolution is 1W32A, so that the common case stays narrow.
    public func table() -> String {
        let mixed = totals.mixedMACs > 0
        var header = ["layer", "kind", "output", "binary params", "float params", "non-trainable", "binary MACs"]
        if mixed { header.append("mixed MACs") }
        header += ["float MACs", "float32 bytes", "packed bytes"]
        var rows = [header]
        func numbers(
            _ binary: Int, _ float: Int, _ nonTrainable: Int, _ binaryMACs: Int, _ mixedMACs: Int, _ floatMACs: Int,
            _ float32Bits: Int, _ packedBits: Int
        ) -> [String] {
            var cells = [binary, float, nonTrainable, binaryMACs].map(NetworkSummary.grouped)
            if mixed { cells.append(NetworkSummary.grouped(mixedMACs)) }
            return cells + [NetworkSummary.grouped(floatMACs), NetworkSummary.bytes(float32Bits),
                            NetworkSummary.bytes(packedBits)]
        }
        for layer in layers {
            rows.append(
                [layer.name, layer.kind, layer.outputShape.map(String.init).joined(separator: "×")]
                    + numbers(
                        layer.binaryParameters, layer.floatParameters, layer.nonTrainableParameters, layer.binaryMACs,
                        layer.mixedMACs, layer.floatMACs, layer.float32Bits, layer.packedBits))
        }
        rows.append(
            ["total", "\(totals.layers) layers", ""]
                + numbers(
                    totals.binaryParameters, totals.floatParameters, totals.nonTrainableParameters, totals.binaryMACs,
                    totals.mixedMACs, totals.floatMACs, totals.float32Bits, totals.packedBits))
        let widths = header.indices.map { column in rows.map { $0[column].count }.max()! }
        return rows.map { row in
            row.enumerated().map { column, text in
                let pad = String(repeating: " ", count: widths[column] - text.count)
                return column >= 3 ? pad + text : text + pad  // numbers right-aligned
            }.joined(separator: "  ").replacingOccurrences(of: " +$", with: "", options: .regularExpression)
        }.joined(separator: "\n")
    }

    /// The totals in words, one line each: parameters, MACs, training memory, packed memory and the compression
    /// ratio. Training memory and packed memory are on separate lines on purpose: one is what the latent float
    /// weights take while training, the other what the deployed weights take, and mixing them misleads.
    public func totalsLines() -> [String] {
        let t = totals
        let n = NetworkSummary.grouped
        var lines = [
            "parameters: \(n(t.parameters)) trainable = \(n(t.binaryParameters)) binary (1 bit each when packed) + "
                + "\(n(t.floatParameters)) float; plus \(n(t.nonTrainableParameters)) non-trainable (batch-norm "
                + "running statistics, float32)",
            "MACs per image: \(n(t.macs)) = \(n(t.binaryMACs)) binary (1W1A) + \(n(t.mixedMACs)) mixed (1W32A: binary "
                + "weights, float inputs) + \(n(t.floatMACs)) float; binary share "
                + String(format: "%.2f %%", 100 * t.binaryMACShare),
            "training memory (all weights as float32, binary ones as their latent floats, with running statistics): "
                + NetworkSummary.bytesInWords(t.float32Bits),
            "packed memory (binary weights as 1 bit, the rest float32): " + NetworkSummary.bytesInWords(t.packedBits)
                + ", " + String(format: "%.2f", t.compressionRatio) + "× smaller than float32",
        ]
        if t.untracedParameters > 0 {
            lines.append(
                "not counted: \(n(t.untracedParameters)) parameters of the model that the forward "
                    + "pass never reads")
        }
        return lines
    }

    /// 1234567 → "1,234,567" (summaries and reports print counts and bytes this way).
    public static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var result = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(digit)
        }
        return (value < 0 ? "-" : "") + result
    }

    /// Bits as bytes, grouped; a fraction of a byte (a binary layer whose weights are not a multiple of 8) with three
    /// decimals, "3.375".
    static func bytes(_ bits: Int) -> String {
        let whole = grouped(bits / 8)
        return bits % 8 == 0 ? whole : whole + String(format: "%.3f", Double(bits % 8) / 8).dropFirst()
    }

    /// "1,079,400 bytes (1.03 MiB)".
    static func bytesInWords(_ bits: Int) -> String {
        let value = Double(bits) / 8
        let kib = 1024.0, mib = 1024.0 * 1024.0
        let scaled = value >= mib ? String(format: "%.2f MiB", value / mib)
            : value >= kib ? String(format: "%.2f KiB", value / kib) : nil
        return "\(bytes(bits)) bytes" + (scaled.map { " (\($0))" } ?? "")
    }
}

// MARK: - JSON

extension NetworkSummary.Layer: Encodable {
    private enum CodingKeys: String, CodingKey {
        case name, module, op, kind, inputs
        case outputShape = "output_shape"
        case binaryParameters = "binary_parameters", floatParameters = "float_parameters"
        case nonTrainableParameters = "non_trainable_parameters"
        case binaryMACs = "binary_macs", mixedMACs = "mixed_macs", floatMACs = "float_macs"
        case float32Bytes = "memory_float32_bytes", packedBytes = "memory_packed_bytes"
    }

    /// The row under snake_case keys; memory in bytes (a fraction only when a binary layer's bits do not fill bytes).
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(module, forKey: .module)
        try container.encode(operation.name, forKey: .op)
        try container.encode(kind, forKey: .kind)
        try container.encode(inputs, forKey: .inputs)
        try container.encode(outputShape, forKey: .outputShape)
        try container.encode(binaryParameters, forKey: .binaryParameters)
        try container.encode(floatParameters, forKey: .floatParameters)
        try container.encode(nonTrainableParameters, forKey: .nonTrainableParameters)
        try container.encode(binaryMACs, forKey: .binaryMACs)
        try container.encode(mixedMACs, forKey: .mixedMACs)
        try container.encode(floatMACs, forKey: .floatMACs)
        try container.encode(NetworkSummary.jsonBytes(float32Bits), forKey: .float32Bytes)
        try container.encode(NetworkSummary.jsonBytes(packedBits), forKey: .packedBytes)
    }
}

extension NetworkSummary.Totals: Encodable {
    private enum CodingKeys: String, CodingKey {
        case layers, parameters, macs
        case binaryParameters = "binary_parameters", floatParameters = "float_parameters"
        case nonTrainableParameters = "non_trainable_parameters", untracedParameters = "untraced_parameters"
        case binaryMACs = "binary_macs", mixedMACs = "mixed_macs", floatMACs = "float_macs"
        case binaryMACShare = "binary_mac_share"
        case float32Bytes = "memory_float32_bytes", packedBytes = "memory_packed_bytes"
        case compressionRatio = "compression_ratio"
    }

    /// The sums and ratios under snake_case keys (`memory_float32_bytes` is the training memory of the weights).
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(layers, forKey: .layers)
        try container.encode(parameters, forKey: .parameters)
        try container.encode(binaryParameters, forKey: .binaryParameters)
        try container.encode(floatParameters, forKey: .floatParameters)
        try container.encode(nonTrainableParameters, forKey: .nonTrainableParameters)
        try container.encode(untracedParameters, forKey: .untracedParameters)
        try container.encode(macs, forKey: .macs)
        try container.encode(binaryMACs, forKey: .binaryMACs)
        try container.encode(mixedMACs, forKey: .mixedMACs)
        try container.encode(floatMACs, forKey: .floatMACs)
        try container.encode(binaryMACShare, forKey: .binaryMACShare)
        try container.encode(NetworkSummary.jsonBytes(float32Bits), forKey: .float32Bytes)
        try container.encode(NetworkSummary.jsonBytes(packedBits), forKey: .packedBytes)
        try container.encode(compressionRatio, forKey: .compressionRatio)
    }
}

extension NetworkSummary {
    /// The whole summary as one JSON object, `{"model", "variant", "input", "layers": [...], "totals": {...}}`, on one
    /// line with snake_case keys in sorted order (so the text is the same from run to run and pipes into jq). `model`
    /// and `variant` are the caller's names for the network (the graph does not know them).
    public func json(model: String, variant: String) throws -> Data {
        struct Document: Encodable {
            let model: String
            let variant: String
            let input: [Int]
            let layers: [NetworkSummary.Layer]
            let totals: NetworkSummary.Totals
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(
            Document(model: model, variant: variant, input: inputShape, layers: layers, totals: totals))
    }

    /// Bits as a JSON number of bytes: an integer when whole, so that the usual case reads as one.
    static func jsonBytes(_ bits: Int) -> JSONNumber { bits % 8 == 0 ? .integer(bits / 8) : .real(Double(bits) / 8) }

    /// An integer or a real, encoded as such (JSONEncoder would write a whole Double as is, but the type says which).
    enum JSONNumber: Encodable {
        case integer(Int), real(Double)

        func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .integer(let value): try container.encode(value)
            case .real(let value): try container.encode(value)
            }
        }
    }
}
