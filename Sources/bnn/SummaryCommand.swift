import ArgumentParser
import BNN
import Foundation

/// `bnn summary --packed`: what a packed model holds, layer by layer, and how its bytes add up to the file.
struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary",
        abstract: "List the layers of a packed model (.bnn): operation, shapes, bytes, and the float32 equivalent.",
        discussion: """
            The bytes of a layer are those of its tensors in the file. The float32 column is what the same tensors \
            would take with every binary weight stored as a float32 (the per-channel factors are float32 either \
            way). The layers' bytes add up to the file size minus its header (the 8-byte length and the JSON \
            header with the graph); both numbers are printed.
            """
    )

    @Option(help: "The packed model (.bnn) written by `bnn export`.")
    var packed: String

    func run() throws {
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
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var result = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(digit)
        }
        return (value < 0 ? "-" : "") + result
    }
}
