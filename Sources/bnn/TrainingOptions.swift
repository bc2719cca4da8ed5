import ArgumentParser
import BNN
import Foundation

/// `--variant`: which convolutions of the network are binary.
enum VariantName: String, ExpressibleByArgument, CaseIterable {
    case w1a1 = "1w1a", w1a32 = "1w32a", fp

    var value: NetworkVariant {
        switch self {
        case .w1a1: .binary
        case .w1a32: .binaryWeights
        case .fp: .fullPrecision
        }
    }
}

/// `--model`, `--variant` and `--a32`: a registered network and which of its convolutions are binary, shared by
/// every command that builds a network. `NAME-fp` is the full-precision twin of NAME (as `--variant fp`), and
/// `--a32` is `--variant 1w32a`.
struct ModelOptions: ParsableArguments {
    @Option(help: "Network: \(NetworkRegistry.names.joined(separator: ", ")); NAME-fp is its full-precision twin.")
    var model: String?

    @Option(help: "1w1a (binary weights and activations), 1w32a (binary weights) or fp (full precision).")
    var variant: VariantName?

    @Flag(help: "1W32A: binary weights, real-valued activations (as --variant 1w32a).")
    var a32 = false

    func validate() throws { _ = try requested() }

    /// The network name and variant asked for; nil where the options say nothing.
    func requested() throws -> (name: String?, variant: NetworkVariant?) {
        var name = model
        var variant = self.variant?.value
        func conflict(_ a: String, _ b: String) -> ValidationError {
            ValidationError("\(a) and \(b) ask for different variants; give one of them.")
        }
        if let model, model.hasSuffix("-fp"), NetworkRegistry.names.contains(String(model.dropLast(3))) {
            if let variant, variant != .fullPrecision { throw conflict("--model \(model)", "--variant") }
            name = String(model.dropLast(3))
            variant = .fullPrecision
        }
        if let name, !NetworkRegistry.names.contains(name) {
            throw ValidationError(
                "unknown --model `\(name)`; registered: \(NetworkRegistry.names.joined(separator: ", ")) (each also as NAME-fp).")
        }
        if a32 {
            if let variant, variant != .binaryWeights { throw conflict("--a32", model.map { "--model \($0)" } ?? "--variant") }
            variant = .binaryWeights
        }
        return (name, variant)
    }

    /// The network and variant to build: what the options say, else what a checkpoint recorded (`recorded`), else
    /// resnet20 1W1A. A checkpoint that disagrees with the options is an error naming both.
    func resolve(recorded: (name: String, variant: NetworkVariant)? = nil, file: String = "")
        throws -> (definition: NetworkDefinition, variant: NetworkVariant)
    {
        let (name, variant) = try requested()
        if let recorded {
            if let name, name != recorded.name {
                throw CommandError("\(file) holds a \(recorded.name) (its metadata says so), but --model asks for \(name).")
            }
            if let variant, variant != recorded.variant {
                throw CommandError(
                    "\(file) was trained as \(recorded.name) \(recorded.variant.label), but the options ask for "
                        + "\(variant.label); drop --variant/--a32 or make them match.")
            }
        }
        let chosen = name ?? recorded?.name ?? "resnet20"
        guard let definition = NetworkRegistry.all.first(where: { $0.name == chosen }) else {
            throw CommandError(
                "\(file) records the network `\(chosen)`, which this build does not know (registered: "
                    + "\(NetworkRegistry.names.joined(separator: ", "))).")
        }
        return (definition, variant ?? recorded?.variant ?? .binary)
    }
}

/// The network and variant a `bnn train` checkpoint records in its metadata `config`, or nil for another file.
func recordedNetwork(_ file: SafeTensorsFile, path: String) throws -> (name: String, variant: NetworkVariant)? {
    guard let config = file.metadata["config"] else { return nil }
    do {
        let configuration = try TrainingConfiguration(json: config, place: path)
        return (configuration.model, configuration.variant)
    } catch {
        // Only a checkpoint of `bnn train` promises a readable record; another file's `config` is not ours.
        if file.metadata["format"] == Checkpoint.format { throw CommandError("\(error)") }
        return nil
    }
}


/// `--estimator`: the backward of sign().
enum EstimatorName: String, ExpressibleByArgument, CaseIterable {
    case reste, ste, identity, approx, ede
}

// Numeric options are parsed with `.unconditional`: the word after the option is its value even when it starts with
// a dash. By default ArgumentParser takes "-1" for an option, so `--batch-size -1` said the value was missing; now the
// value reaches `validate()`, which says what the range is.

/// Throws the `Limits.violation` message ("--batch-size must be ≥ 1, got -1.") for an integer option outside `range`.
func checkOption(_ option: String, _ value: Int, _ range: ClosedRange<Int>) throws {
    if let message = Limits.violation(option: option, value: value, range: range) { throw ValidationError(message) }
}

/// `--threads`, shared by the commands that compute.
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads for the kernels and OpenBLAS (default: OpenMP's default, \(Kernels.threads) here).")
    var threads: Int?

    func validate() throws {
        if let threads { try checkOption("--threads", threads, 1...Limits.threads) }
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

/// `--data-format`.
enum DataFormat: String, ExpressibleByArgument, CaseIterable {
    case cifar, folder
}

/// `--data` and how to read it: CIFAR-10's binary files or image folders (`train/<class>/*`, `val/<class>/*`), with
/// the options of folders. Shared by the commands that read data.
struct DataOptions: ParsableArguments {
    @Option(help: """
        Data directory: CIFAR-10 binaries (data_batch_N.bin, test_batch.bin) or image folders (train/<class>/<images>, \
        val/<class>/<images>). Default: the bundled CIFAR-10 sample.
        """)
    var data: String?

    @Option(name: .customLong("data-format"), help: "cifar or folder (default: recognised from what --data holds).")
    var dataFormat: DataFormat?

    @Option(
        name: .customLong("image-size"), parsing: .unconditional,
        help: "Folders: side of the square images the network sees (ImageNet transforms; default 224, or the CIFAR-10 transforms when the first image is 32×32).")
    var imageSize: Int?

    @Option(
        name: .customLong("resize-size"), parsing: .unconditional,
        help: "Folders: the shorter side before the evaluation centre crop (default: image size / 0.875, 256 for 224).")
    var resizeSize: Int?

    @Option(
        name: .customLong("data-threads"), parsing: .unconditional,
        help: "Folders: threads that decode and transform images (default: \(ProcessInfo.processInfo.activeProcessorCount), the cores).")
    var dataThreads: Int?

    @Flag(name: .customLong("skip-bad-images"), help: "Folders: leave out unreadable image files, with one warning each, instead of stopping.")
    var skipBadImages = false

    func validate() throws {
        if let imageSize { try checkOption("--image-size", imageSize, 1...ImageFolder.maximumSide) }
        if let resizeSize { try checkOption("--resize-size", resizeSize, 1...ImageFolder.maximumSide) }
        if let dataThreads { try checkOption("--data-threads", dataThreads, 1...Limits.threads) }
        if let imageSize, let resizeSize, resizeSize < imageSize {
            throw ValidationError("--resize-size (\(resizeSize)) must be at least --image-size (\(imageSize)).")
        }
        if let resizeSize, imageSize == nil, resizeSize < 224 {
            throw ValidationError("--resize-size (\(resizeSize)) must be at least the image size (224 unless --image-size says otherwise).")
        }
        if dataFormat == .cifar {
            let folderOnly = [("--image-size", imageSize != nil), ("--resize-size", resizeSize != nil),
                              ("--data-threads", dataThreads != nil), ("--skip-bad-images", skipBadImages)]
            if let (name, _) = folderOnly.first(where: { $0.1 }) {
                throw ValidationError("\(name) applies to image folders only, not to --data-format cifar.")
            }
        }
    }

    /// The directory and its format. `training`: the command needs the training split too (train/ beside val/).
    func resolve(training: Bool) throws -> (directory: URL, format: DataFormat) {
        guard let data else {
            if dataFormat == .folder { throw CommandError("--data-format folder needs --data DIR (a directory holding train/ and val/).") }
            return (try DataLocation.resolve(nil), .cifar)
        }
        let directory = URL(fileURLWithPath: data)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CommandError("--data \(directory.path) does not exist or is not a directory.")
        }
        if let dataFormat { return (directory, dataFormat) }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let cifar = names.contains("test_batch.bin") || names.contains { $0.hasPrefix("data_batch_") && $0.hasSuffix(".bin") }
        let folder = ImageFolder.looksLikeFolder(directory, needsTrain: training)
        let folderLayout = training ? "train/ and val/ directories" : "a val/ directory"
        switch (cifar, folder) {
        case (true, false): return (directory, .cifar)
        case (false, true): return (directory, .folder)
        case (true, true):
            throw CommandError(
                "--data \(directory.path) holds both CIFAR-10 binary files and \(folderLayout); say which to read with "
                    + "--data-format cifar or --data-format folder.")
        case (false, false):
            throw CommandError(
                "--data \(directory.path) holds neither CIFAR-10 binary files (data_batch_N.bin, test_batch.bin) nor "
                    + "image folders (\(folderLayout), each with one directory of images per class).")
        }
    }

    /// The options of an image folder.
    var folderOptions: ImageFolderOptions {
        var options = ImageFolderOptions(skipBadImages: skipBadImages)
        if let dataThreads { options.threads = dataThreads }
        if imageSize != nil || resizeSize != nil {
            let size = imageSize ?? 224
            options.transform = .imagenet(size: size, resize: resizeSize ?? ImageFolderTransform.defaultResize(for: size))
        }
        return options
    }

    /// The training and validation splits and a line describing them.
    func trainingData() throws -> (train: any ImageSplit, validation: any ImageSplit, description: String) {
        let (directory, format) = try resolve(training: true)
        switch format {
        case .cifar:
            let dataset = try CIFAR10(directory: directory)
            return (dataset.train, dataset.test,
                    "\(directory.path) (CIFAR-10 binaries: \(dataset.train.count) training, \(dataset.test.count) test images)")
        case .folder:
            let folder = try ImageFolder(directory: directory, options: folderOptions)
            return (folder.train, folder.validation,
                    "\(directory.path) (image folders: \(folder.train.count) training, \(folder.validation.count) validation "
                        + "images of \(folder.train.classCount) classes; \(describe(folder.train.transform)), "
                        + "\(folder.train.options.threads) decode thread(s))")
        }
    }

    /// The split that evaluation reads (test_batch.bin, or val/) and a line describing it.
    func evaluationData() throws -> (split: any ImageSplit, description: String) {
        let (directory, format) = try resolve(training: false)
        switch format {
        case .cifar:
            return (try readTestSplit(directory), directory.appendingPathComponent("test_batch.bin").path)
        case .folder:
            let split = try ImageFolderSplit(directory: directory.appendingPathComponent("val"), options: folderOptions)
            return (split, "\(split.directory.path) (\(split.count) images of \(split.classCount) classes; \(describe(split.transform)))")
        }
    }

    private func describe(_ transform: ImageFolderTransform) -> String {
        switch transform {
        case .cifar: return "CIFAR-10 transforms for 32×32 images"
        case .imagenet(let size, let resize): return "ImageNet transforms at \(size), evaluation resize \(resize)"
        }
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
