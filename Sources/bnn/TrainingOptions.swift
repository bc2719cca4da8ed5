import ArgumentParser
import BNN
import Foundation

/// `--model`: the network to build.
enum ModelName: String, ExpressibleByArgument, CaseIterable {
    /// ResNet-20 with binary block convolutions (1W1A, or 1W32A with `--a32`).
    case resnet20
    /// Its full-precision twin.
    case resnet20FullPrecision = "resnet20-fp"

    /// The variant, given the `--a32` flag.
    func variant(a32: Bool) -> ResNet20.Variant {
        switch self {
        case .resnet20: a32 ? .binaryWeights : .binary
        case .resnet20FullPrecision: .fullPrecision
        }
    }
}

/// `--estimator`: the backward of sign().
enum EstimatorName: String, ExpressibleByArgument, CaseIterable {
    case reste, ste, identity, approx, ede
}

/// `--threads`, shared by the commands that compute.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Threads for the kernels and OpenBLAS (default: OpenMP's default, \(Kernels.threads) here).")
    var threads: Int?

    func validate() throws {
        if let threads, !(1...4096).contains(threads) {
            throw ValidationError("--threads must be between 1 and 4096, got \(threads).")
        }
    }

    /// Applies the setting to the kernels and OpenBLAS (which is loaded now, so its core can be reported).
    func apply() throws {
        if let threads {
            try Kernels.setThreads(threads)
            try Kernels.setBLASThreads(threads)
        } else {
            try Kernels.loadBLAS()
        }
    }
}

/// Where the CIFAR-10 files are: `--data`, else the sample bundled with the package.
enum DataLocation {
    /// The bundled sample, relative to the package root.
    static let bundledSample = "Examples/data/cifar10-sample"

    /// `explicit` if given; otherwise the bundled sample, searched for upward from the current directory and
    /// from the executable's directory (a build directory lies inside the package).
    static func resolve(_ explicit: String?) throws -> URL {
        if let explicit { return URL(fileURLWithPath: explicit) }
        var starts = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
        if let executable = Bundle.main.executableURL?.resolvingSymlinksInPath() {
            starts.append(executable.deletingLastPathComponent())
        }
        for start in starts {
            var directory = start.standardizedFileURL
            while true {
                let candidate = directory.appendingPathComponent(bundledSample)
                if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("test_batch.bin").path) {
                    return candidate
                }
                let parent = directory.deletingLastPathComponent()
                if parent.path == directory.path { break }
                directory = parent
            }
        }
        throw CommandError(
            "no --data given and the bundled sample \(bundledSample) was not found above the current directory or "
                + "the executable; pass --data DIR (a directory holding data_batch_N.bin and test_batch.bin).")
    }
}

/// Reads `test_batch.bin` alone (evaluation needs no training file).
func readTestSplit(_ directory: URL) throws -> CIFAR10Split {
    let file = directory.appendingPathComponent("test_batch.bin")
    guard FileManager.default.fileExists(atPath: file.path) else {
        throw CommandError("\(file.path) does not exist: --data must name a directory holding test_batch.bin.")
    }
    var images: [UInt8] = []
    var labels: [UInt8] = []
    try CIFAR10.readBatch(file, images: &images, labels: &labels)
    guard let split = CIFAR10Split(images: images, labels: labels) else {
        throw CommandError("\(file.path): inconsistent images and labels")
    }
    return split
}

/// A failure while running a command (not a usage error): printed as "Error: <message>", exit code 1.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Writes to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// "48.20 %".
func percent(_ fraction: Double) -> String { String(format: "%.2f %%", 100 * fraction) }
