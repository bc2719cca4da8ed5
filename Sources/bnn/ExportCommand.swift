import ArgumentParser
import BNN
import Foundation

/// `bnn export`: packs trained ResNet-20 1W1A weights into a `.bnn` file for `bnn infer` and the C API.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Pack trained ResNet-20 1W1A weights into a .bnn file: sign(W) as bits, α and batch norm folded in.",
        discussion: """
            --weights is any safetensors file with the ResNet-20 state-dict names: a checkpoint of `bnn train` \
            (its "optimizer." entries are ignored) or a state dict saved from the authors' PyTorch model (a \
            "module." prefix from DataParallel is removed). Only the 1W1A network can be packed: the kernels take \
            binary activations. A checkpoint of `bnn train` records its variant (metadata `config`), and a 1W32A \
            or full-precision one is refused; other files have no such record and are taken as 1W1A (their state \
            dicts have the same names), so say --a32 or --model resnet20-fp to be told instead. The file is written \
            atomically (a temporary file renamed over --out).
            """
    )

    @Option(help: "Network: resnet20 (1W1A; resnet20-fp is refused, as is --a32).")
    var model: ModelName = .resnet20

    @Option(help: "The safetensors file with the trained weights.")
    var weights: String

    @Option(help: "The packed model to write, e.g. model.bnn.")
    var out: String

    @Flag(help: "The weights are 1W32A, as with `bnn train --a32` (refused: real-valued activations).")
    var a32 = false

    func validate() throws {
        if a32 && model == .resnet20FullPrecision {
            throw ValidationError("--a32 applies to the binary resnet20, not to resnet20-fp.")
        }
        if let refusal = Self.refusal(model.variant(a32: a32), source: model == .resnet20FullPrecision ? "--model resnet20-fp" : "--a32") {
            throw ValidationError(refusal)
        }
    }

    /// Why `variant` cannot be packed, or nil for 1W1A.
    static func refusal(_ variant: ResNet20.Variant, source: String) -> String? {
        switch variant {
        case .binary: nil
        case .binaryWeights:
            "\(source): a ResNet-20 1W32A has real-valued activations, which the packed binary kernels cannot take; "
                + "only 1W1A networks can be exported (`bnn eval` evaluates 1W32A weights)."
        case .fullPrecision:
            "\(source): a full-precision ResNet-20 has no binary layers to pack; only 1W1A networks can be exported "
                + "(`bnn eval` evaluates full-precision weights)."
        }
    }

    func run() throws {
        let weightsURL = URL(fileURLWithPath: weights)
        guard FileManager.default.fileExists(atPath: weightsURL.path) else {
            throw CommandError("--weights \(weightsURL.path) does not exist.")
        }
        let packed = try Self.pack(weightsURL)
        let outURL = URL(fileURLWithPath: out)
        do {
            try packed.write(to: outURL)
        } catch {
            throw CommandError("cannot write --out \(outURL.path): \(error)")
        }
        let file = try PackedFileSize(outURL)
        print("\(weightsURL.path) → \(outURL.path) (\(packed.graph.model), \(packed.graph.layers.count) layers)")
        print(PackedReport.table(packed))
        print(PackedReport.totals(packed))
        print("file: \(PackedReport.grouped(file.size)) bytes (header \(PackedReport.grouped(file.header)) bytes with the graph)")
    }

    /// Reads `url`, refuses a checkpoint that records a 1W32A or full-precision run, and packs the state dict.
    static func pack(_ url: URL) throws -> PackedModel {
        let file: SafeTensorsFile
        do {
            file = try SafeTensors.read(url)
        } catch {
            throw CommandError("\(url.path): cannot read the weights: \(error)")
        }
        if let config = file.metadata["config"] {
            do {
                let recorded = try TrainingConfiguration(json: config, place: url.path).variant
                if let refusal = refusal(recorded, source: "\(url.path) (checkpoint metadata `config`)") {
                    throw CommandError(refusal)
                }
            } catch let error as TrainingError {
                // Only a checkpoint of `bnn train` promises a readable record; another file's `config` is not ours.
                if file.metadata["format"] == Checkpoint.format { throw CommandError("\(error)") }
            }
        }
        var tensors = Checkpoint.splitOptimizer(file.tensors).model
        let prefix = "module."
        if !tensors.isEmpty && tensors.keys.allSatisfy({ $0.hasPrefix(prefix) }) {
            tensors = Dictionary(uniqueKeysWithValues: tensors.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
        }
        do {
            return try PackedModel.resNet20(stateDict: tensors)
        } catch let error as PackedModelError {
            throw CommandError("\(url.path): \(error.message)")
        }
    }
}
