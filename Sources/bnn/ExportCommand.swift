import ArgumentParser
import BNN
import Foundation

/// `bnn export`: packs a trained 1W1A network into a `.bnn` file for `bnn infer` and the C API.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Pack trained 1W1A weights into a .bnn file: sign(W) as bits, α and batch norm folded in.",
        discussion: """
            --weights is any safetensors file with the network's state-dict names: a checkpoint of `bnn train` \
            (its "optimizer." entries are ignored; it records its network and variant) or a state dict saved from \
            the authors' PyTorch model (a "module." prefix from DataParallel is removed; say --model for another \
            network than resnet20). The network is traced and packed by the generic packer: binary convolutions \
            keep sign(W) as bits, α, ReLU, batch norm and residual adds are folded into their output transforms. \
            Only 1W1A networks can be packed (the kernels take binary activations): 1W32A and full-precision \
            weights are refused. The file is written atomically (a temporary file renamed over --out).
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The safetensors file with the trained weights.")
    var weights: String

    @Option(help: "The packed model to write, e.g. model.bnn.")
    var out: String

    func validate() throws {
        if let variant = try modelOptions.requested().variant, let refusal = Self.refusal(variant, source: "the options") {
            throw ValidationError(refusal)
        }
    }

    /// Why `variant` cannot be packed, or nil for 1W1A.
    static func refusal(_ variant: NetworkVariant, source: String) -> String? {
        switch variant {
        case .binary: nil
        case .binaryWeights:
            "\(source): a 1W32A network has real-valued activations, which the packed binary kernels cannot take; "
                + "only 1W1A networks can be exported (`bnn eval` evaluates 1W32A weights)."
        case .fullPrecision:
            "\(source): a full-precision network has no binary layers to pack; only 1W1A networks can be exported "
                + "(`bnn eval` evaluates full-precision weights)."
        }
    }

    func run() throws {
        let weightsURL = URL(fileURLWithPath: weights)
        let packed = try Self.pack(weightsURL, options: modelOptions)
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

    /// Builds the network the file holds, refuses a 1W32A or full-precision one, and packs it.
    static func pack(_ url: URL, options: ModelOptions) throws -> PackedModel {
        let (network, _, definition, variant, inputShape) = try loadNetwork(url, options: options)
        if let refusal = refusal(variant, source: url.path) { throw CommandError(refusal) }
        do {
            return try PackedModel.pack(network, inputShape: inputShape, name: definition.name, variant: variant.shortName)
        } catch {
            throw CommandError("\(url.path): \(error)")
        }
    }
}
