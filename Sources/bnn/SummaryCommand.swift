import ArgumentParser
import BNN
import Foundation

/// `bnn summary`: a per-layer account of a network, either of a packed model file (`--packed`: what the file holds,
/// byte by byte) or of a registered network (`--model`: parameters, MACs and memory by precision, as Larq's
/// `larq.models.summary` reports them).
struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary",
        abstract: "Summarise a network by layer: a packed model file (--packed) or a registered network (--model).",
        discussion: """
            Give exactly one of --packed and --model.

            --packed FILE lists the layers of a packed model (.bnn): operation, shapes, bytes, and the float32 \
            equivalent. The bytes of a layer are those of its tensors in the file. The float32 column is what the same \
            tensors would take with every binary weight stored as a float32 (the per-channel factors are float32 \
            either way). The layers' bytes add up to the file size minus its header (the 8-byte length and the JSON \
            header with the graph); both numbers are printed.

            --model NAME [--variant V | --a32] [--json] traces the network's evaluation-mode forward pass on one \
            image and lists every operation: output shape per image; binary parameters (latent weights of binary \
            convolutions, 1W1A and 1W32A: one bit each when packed) and float parameters (every other trainable \
            value: real weights and biases, batch-norm gamma and beta); non-trainable parameters (batch-norm running \
            mean and variance: not trained, but float32 state of the deployed network, counted in memory as Larq \
            does); MACs per image by operand precision: binary (1W1A convolutions), mixed (1W32A convolutions: \
            binary weights on float inputs, shown as a column only when present) and float (real convolutions and \
            linear layers; batch norm, pooling, activations and additions count none); memory as float32 (every \
            parameter 32 bits) and packed (binary weights 1 bit, the rest 32 bits). The totals give the training \
            memory of the weights (the float32 figure: binary weights train as latent floats) and the packed memory \
            on separate lines, the compression ratio (float32 / packed) and the share of MACs that are binary. \
            Packed memory is not the size of a `bnn export` file, which folds batch norm into per-channel factors \
            and pads each filter's bits to 64-bit words: export it and run `bnn summary --packed` for that. \
            --json prints one JSON object {model, variant, input, layers, totals} with snake_case keys instead.
            """
    )

    @Option(help: "A packed model (.bnn) written by `bnn export`: list what the file holds.")
    var packed: String?

    @OptionGroup var network: ModelOptions

    @Flag(help: "With --model: print one JSON object {model, variant, input, layers, totals} instead of the table.")
    var json = false

    func validate() throws {
        let requested = try network.requested()
        switch (packed, network.model) {
        case (nil, nil):
            throw ValidationError("give --packed FILE (a packed model) or --model NAME (a registered network).")
        case (.some, .some):
            throw ValidationError("give one of --packed and --model, not both.")
        case (.some, nil):
            if requested.variant != nil {
                throw ValidationError("--variant and --a32 apply to --model; a packed file records its variant.")
            }
            if json { throw ValidationError("--json applies to --model.") }
        case (nil, .some):
            break
        }
    }

    func run() throws {
        if let packed { try summarisePacked(packed) } else { try summariseNetwork() }
    }

    /// `--model`: trace the registered network and print its `NetworkSummary`.
    private func summariseNetwork() throws {
        let (name, variant) = try network.requested()
        let definition = try NetworkRegistry.named(name ?? "")
        let variantValue = variant ?? .binary
        let model = try definition(NetworkOptions(variant: variantValue))
        let summary = try NetworkSummary(model: model, inputShape: definition.inputShape)
        if json {
            let text = try summary.json(model: definition.name, variant: variantValue.shortName)
            print(String(decoding: text, as: UTF8.self))
            return
        }
        print("\(definition.name) \(variantValue.label): \(definition.summary); input "
            + "\(definition.inputShape.map(String.init).joined(separator: "×")), counts per image")
        print(summary.table())
        for line in summary.totalsLines() { print(line) }
    }

    /// `--packed`: what the file holds, layer by layer, and how its bytes add up to the file.
    private func summarisePacked(_ packed: String) throws {
        let url = URL(fileURLWithPath: packed)
        let model = try PackedModel.load(contentsOf: url)
        let file = try PackedFileSize(url)
        print("\(url.path): \(model.graph.model), input \(model.graph.input.map(String.init).joined(separator: "×")), "
            + "\(model.graph.classes) classes, \(model.graph.layers.count) layers")
        print(PackedReport.table(model))
        let total = model.layerBytes().reduce(0) { $0 + $1.bytes }
        print(PackedReport.totals(model))
        let adds = total == file.size - file.header
        print("""
            file \(PackedReport.grouped(file.size)) bytes = header \(PackedReport.grouped(file.header)) \
            (8-byte length + \(PackedReport.grouped(file.header - 8)) bytes of JSON) + tensors \
            \(PackedReport.grouped(file.size - file.header)); the layers hold \(PackedReport.grouped(total)) bytes\
            \(adds ? ", all of it" : " — they do NOT add up to the file's tensor data")
            """)
        if !adds { throw ExitCode.failure }
    }
}

/// The size of a packed file and of its header (the 8-byte length plus the JSON it announces).
struct PackedFileSize {
    let size: Int
    let header: Int

    init(_ url: URL) throws {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        let prefix = try handle.read(upToCount: 8) ?? Data()
        size = Int(try handle.seekToEnd())
        guard prefix.count == 8 else { throw CommandError("\(url.path): shorter than the 8-byte header length") }
        let length = prefix.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length <= UInt64(size - 8) else {
            throw CommandError("\(url.path): header length \(length) exceeds the \(size - 8) bytes that follow it")
        }
        header = 8 + Int(length)
    }
}

/// The layer table and totals shared by `bnn summary` and `bnn export`.
enum PackedReport {
    /// One row per layer: name, operation, input → output geometry, main tensor, bytes, float32 bytes.
    static func table(_ model: PackedModel) -> String {
        var rows = [["layer", "op", "input → output", "tensor", "bytes", "as float32"]]
        for (layer, bytes) in model.layerBytes() {
            rows.append([
                layer.name, operation(layer), "\(geometry(input: layer)) → \(geometry(output: layer))",
                mainTensor(layer, model), grouped(bytes), grouped(float32Bytes(layer, model)),
            ])
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max()! }
        return rows.map { row in
            row.enumerated().map { column, text in
                let pad = String(repeating: " ", count: widths[column] - text.count)
                return column >= 4 ? pad + text : text + pad  // numbers right-aligned
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// "packed N bytes, float32 M bytes: R× smaller (binary convolutions alone: r×)".
    static func totals(_ model: PackedModel) -> String {
        let layers = model.layerBytes()
        let packed = layers.reduce(0) { $0 + $1.bytes }
        let float = layers.reduce(0) { $0 + float32Bytes($1.layer, model) }
        let binary = layers.filter { $0.layer.op == .bconv }
        let binaryPacked = binary.reduce(0) { $0 + $1.bytes }
        let binaryFloat = binary.reduce(0) { $0 + float32Bytes($1.layer, model) }
        return "weights: packed \(grouped(packed)) bytes, as float32 \(grouped(float)) bytes: "
            + String(format: "%.1f", Double(float) / Double(max(packed, 1))) + "× smaller"
            + (binary.isEmpty ? "" : " (the \(binary.count) binary convolutions alone: "
                + String(format: "%.1f", Double(binaryFloat) / Double(max(binaryPacked, 1))) + "×)")
    }

    /// The layer's tensors with each weight bit counted as a float32 (per-channel factors as they are).
    static func float32Bytes(_ layer: PackedLayer, _ model: PackedModel) -> Int {
        parts(layer.op).reduce(0) { sum, part in
            if part == "bits" {
                let k = layer.kernel ?? 1
                return sum + layer.outChannels * k * k * layer.channels * MemoryLayout<Float>.size
            }
            return sum + (model.tensors["\(layer.name).\(part)"]?.bytes.count ?? 0)
        }
    }

    /// The tensors of a layer (`<layer>.<part>`), as `PackedLayer.Operation` documents them.
    static func parts(_ op: PackedLayer.Operation) -> [String] {
        switch op {
        case .conv: ["weight", "scale", "bias"]
        case .bconv: ["bits", "prescale", "scale", "bias"]
        case .globalAvgPool, .affine: ["scale", "bias"]
        case .linear: ["weight", "bias"]
        case .shortcut, .bmaxpool, .maxpool, .avgpool: []
        }
    }

    static func operation(_ layer: PackedLayer) -> String {
        let k = layer.kernel ?? 1, stride = layer.stride ?? 1
        switch layer.op {
        case .conv, .bconv, .bmaxpool, .maxpool, .avgpool: return "\(layer.op.rawValue) \(k)×\(k)/\(stride)"
        case .shortcut: return "shortcut /\(stride)"
        case .globalAvgPool, .linear, .affine: return layer.op.rawValue
        }
    }

    static func geometry(input layer: PackedLayer) -> String { "\(layer.height)×\(layer.width)×\(layer.channels)" }

    static func geometry(output layer: PackedLayer) -> String {
        let k = layer.kernel ?? 1, stride = max(layer.stride ?? 1, 1), padding = layer.padding ?? 0
        switch layer.op {
        case .conv, .bconv, .bmaxpool, .maxpool, .avgpool:
            let height = (layer.height + 2 * padding - k) / stride + 1, width = (layer.width + 2 * padding - k) / stride + 1
            return "\(height)×\(width)×\(layer.outChannels)"
        case .affine: return geometry(input: layer)
        case .shortcut:
            return "\((layer.height - 1) / stride + 1)×\((layer.width - 1) / stride + 1)×\(layer.outChannels)"
        case .globalAvgPool: return "1×1×\(layer.channels)"
        case .linear: return "\(layer.outChannels)"
        }
    }

    /// The tensor that holds the layer's weights, e.g. "u64 [144, 1]"; "-" for layers without weights.
    static func mainTensor(_ layer: PackedLayer, _ model: PackedModel) -> String {
        let part: String?
        switch layer.op {
        case .conv, .linear: part = "weight"
        case .bconv: part = "bits"
        case .globalAvgPool, .affine: part = "scale"
        case .shortcut, .bmaxpool, .maxpool, .avgpool: part = nil
        }
        guard let part, let tensor = model.tensors["\(layer.name).\(part)"] else { return "-" }
        return "\(tensor.dtype.rawValue.lowercased()) \(tensor.shape)"
    }

    /// 1234567 → "1,234,567".
    static func grouped(_ value: Int) -> String { NetworkSummary.grouped(value) }
}
