import Foundation

/// Why an image folder could not be used; the description names the directory or file and what is wrong.
public enum ImageFolderError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The directory does not exist or is not a directory.
    case missingDirectory(path: String)
    /// A directory could not be listed.
    case unreadableDirectory(path: String, reason: String)
    /// A split directory holds no class directory.
    case noClasses(directory: String)
    /// A class directory holds no file.
    case emptyClass(directory: String)
    /// The training and validation splits do not have the same classes.
    case classMismatch(training: String, validation: String, detail: String)
    /// A file is not a readable JPEG or PNG image.
    case badImage(path: String, reason: String)
    /// Every file of a split was skipped as unreadable.
    case noReadableImage(directory: String)
    /// An image of a folder read with the CIFAR transforms is not 32×32.
    case notCIFARSized(path: String, width: Int, height: Int)
    /// An option is out of range.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .missingDirectory(let path):
            return "image folder \(path) does not exist or is not a directory"
        case .unreadableDirectory(let path, let reason):
            return "image folder \(path) could not be listed: \(reason)"
        case .noClasses(let directory):
            return "image folder \(directory) holds no class directory: expected \(directory)/<class>/<image files>"
        case .emptyClass(let directory):
            return "class directory \(directory) holds no file"
        case .classMismatch(let training, let validation, let detail):
            return "the classes of \(training) and \(validation) differ: \(detail)"
        case .badImage(let path, let reason):
            return "image file \(path): \(reason)"
        case .noReadableImage(let directory):
            return "no file of \(directory) is a readable image"
        case .notCIFARSized(let path, let width, let height):
            return "image file \(path) is \(width)×\(height), but this folder is read with the CIFAR-10 transforms "
                + "(its first image is 32×32), which take 32×32 images; pass --image-size to use the ImageNet ones"
        case .invalidArgument(let message):
            return message
        }
    }
}

/// The transforms of an image folder, as torchvision defines them.
public enum ImageFolderTransform: Sendable, Equatable, Hashable {
    /// For 32×32 images: the CIFAR-10 recipe of `CIFAR10Transform` (training: random crop of the image padded by 4
    /// and horizontal flip; evaluation: the image itself), then normalisation.
    case cifar
    /// Training: `RandomResizedCrop(size)` (scale 0.08–1, ratio 3/4–4/3) and horizontal flip; evaluation:
    /// `Resize(resize)` of the shorter side and `CenterCrop(size)`; bilinear resampling (`BilinearResize`), then
    /// normalisation with the ImageNet mean and standard deviation.
    case imagenet(size: Int, resize: Int)

    /// The ImageNet recipe at 224 (resize 256).
    public static let imagenetDefault = ImageFolderTransform.imagenet(size: 224, resize: 256)

    /// `[height, width, 3]` of the transformed images.
    public var outputShape: [Int] {
        switch self {
        case .cifar: return [CIFAR10.height, CIFAR10.width, CIFAR10.channels]
        case .imagenet(let size, _): return [size, size, 3]
        }
    }

    /// The resize of an evaluation for a crop of `size`: size / 0.875 rounded (256 for 224), torchvision's ratio.
    public static func defaultResize(for size: Int) -> Int { Int((Double(size) / 0.875).rounded()) }
}

/// How an image folder is read.
public struct ImageFolderOptions: Sendable {
    /// The transforms; nil chooses from the split's first readable image: `.cifar` when it is 32×32, otherwise
    /// `.imagenetDefault`.
    public var transform: ImageFolderTransform?
    /// Threads that decode and transform the images of a batch (at least 1).
    public var threads: Int
    /// Skip unreadable files (one warning per file, and the batch holds fewer images) instead of failing.
    public var skipBadImages: Bool
    /// Decode JPEGs at a reduced size (libjpeg-turbo's DCT-domain scaling, 1/8 to 8/8) when the crop still covers
    /// the output size there; off, every image is decoded at full size (then a training crop or evaluation image
    /// is exactly what Pillow's bilinear resize gives).
    public var reducedDecoding: Bool
    /// Where the warnings of skipped files go (one line each); standard error by default.
    public var warn: @Sendable (String) -> Void

    public init(
        transform: ImageFolderTransform? = nil, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
        skipBadImages: Bool = false, reducedDecoding: Bool = true,
        warn: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    ) {
        self.transform = transform
        self.threads = threads
        self.skipBadImages = skipBadImages
        self.reducedDecoding = reducedDecoding
        self.warn = warn
    }

    /// Throws for a thread count outside 1...`Limits.threads` or a transform size outside 1...4096 (or a resize
    /// smaller than the crop).
    public func validate() throws(ImageFolderError) {
        guard threads >= 1 && threads <= Limits.threads else {
            throw .invalidArgument("decode threads must be in 1...\(Limits.threads), got \(threads)")
        }
        if case .imagenet(let size, let resize) = transform {
            guard size >= 1 && size <= ImageFolder.maximumSide else {
                throw .invalidArgument("image size must be in 1...\(ImageFolder.maximumSide), got \(size)")
            }
            guard resize >= size && resize <= ImageFolder.maximumSide else {
                throw .invalidArgument(
                    "resize size must be in \(size)...\(ImageFolder.maximumSide) (at least the image size \(size)), got \(resize)")
            }
        }
    }
}

/// An image classification data set in torchvision's `ImageFolder` layout: `DIR/train/<class>/...` and
/// `DIR/val/<class>/...`. Classes are the sub-directories of a split sorted by name (code point order, as Python
/// sorts strings), label = index; the files of a class are every non-hidden file below its directory, in the order
/// of `sorted(os.walk(...))` with each directory's names sorted. Whether a file is a JPEG or a PNG is read from its
/// content; its name does not matter. Names starting with "." (hidden files and directories) are ignored.
public struct ImageFolder: Sendable {
    /// The largest `--image-size` / `--resize-size`.
    public static let maximumSide = 4096
    /// Nesting below a class directory beyond which directories are not followed (a guard against symbolic-link
    /// cycles).
    public static let maximumDepth = 32

    /// `DIR/train`.
    public let train: ImageFolderSplit
    /// `DIR/val`.
    public let validation: ImageFolderSplit

    /// Lists `directory/train` and `directory/val` (which must have the same class names) and settles the
    /// transforms (from the training split's first image unless `options` give them).
    public init(directory: URL, options: ImageFolderOptions = ImageFolderOptions()) throws(ImageFolderError) {
        try ImageFolder.requireDirectory(directory)
        var options = options
        let train = try ImageFolderSplit(directory: directory.appendingPathComponent("train"), options: options)
        options.transform = train.transform
        let validation = try ImageFolderSplit(directory: directory.appendingPathComponent("val"), options: options)
        if train.classNames != validation.classNames {
            let onlyTrain = Set(train.classNames).subtracting(validation.classNames).sorted().prefix(5)
            let onlyValidation = Set(validation.classNames).subtracting(train.classNames).sorted().prefix(5)
            var detail = "\(train.classNames.count) and \(validation.classNames.count) classes"
            if !onlyTrain.isEmpty { detail += "; only in train: \(onlyTrain.joined(separator: ", "))" }
            if !onlyValidation.isEmpty { detail += "; only in val: \(onlyValidation.joined(separator: ", "))" }
            throw .classMismatch(training: train.directory.path, validation: validation.directory.path, detail: detail)
        }
        self.train = train
        self.validation = validation
    }

    /// Whether `directory` holds `train/` and `val/` directories (`train` false: `val/` alone).
    public static func looksLikeFolder(_ directory: URL, needsTrain: Bool = true) -> Bool {
        (!needsTrain || isDirectory(directory.appendingPathComponent("train")))
            && isDirectory(directory.appendingPathComponent("val"))
    }

    static func isDirectory(_ url: URL) -> Bool {
        var flag: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &flag) && flag.boolValue
    }

    static func requireDirectory(_ url: URL) throws(ImageFolderError) {
        guard isDirectory(url) else { throw .missingDirectory(path: url.path) }
    }

    /// Python's string order: by Unicode code points.
    static func precedes(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
    }

    /// The visible entries of a directory, sorted.
    static func entries(_ directory: String) throws(ImageFolderError) -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { !$0.hasPrefix(".") }
                .sorted(by: precedes)
        } catch {
            throw .unreadableDirectory(path: directory, reason: error.localizedDescription)
        }
    }

    /// Every file below `root`, in `sorted(os.walk(root))` order.
    static func files(below root: String) throws(ImageFolderError) -> [String] {
        var directories: [(path: String, files: [String])] = []
        func walk(_ path: String, depth: Int) throws(ImageFolderError) {
            var files: [String] = []
            for name in try entries(path) {
                let child = path + "/" + name
                var flag: ObjCBool = false
                guard FileManager.default.fileExists(atPath: child, isDirectory: &flag) else { continue }   // dangling link
                if flag.boolValue {
                    if depth < maximumDepth { try walk(child, depth: depth + 1) }
                } else {
                    files.append(child)
                }
            }
            directories.append((path, files))
        }
        try walk(root, depth: 0)
        return directories.sorted { precedes($0.path, $1.path) }.flatMap(\.files)
    }
}

/// One split of an image folder: the files and their labels, and how they become batches.
public struct ImageFolderSplit: ImageSplit {
    /// `DIR/train` or `DIR/val`.
    public let directory: URL
    /// Class names, index = label.
    public let classNames: [String]
    /// Every file, class by class.
    public let files: [String]
    /// The label of each file.
    public let labels: [Int32]
    /// The transforms of the batches.
    public let transform: ImageFolderTransform
    /// The options the split was read with (`transform` settled).
    public let options: ImageFolderOptions
    /// Files found unreadable so far (with `skipBadImages`), each reported once.
    let badImages: BadImageRecord

    /// Lists `directory` (`<class>/<files>`); settles the transforms from its first readable image unless
    /// `options.transform` gives them.
    public init(directory: URL, options: ImageFolderOptions = ImageFolderOptions()) throws(ImageFolderError) {
        try options.validate()
        try ImageFolder.requireDirectory(directory)
        var classNames: [String] = []
        var files: [String] = []
        var labels: [Int32] = []
        for name in try ImageFolder.entries(directory.path) {
            let classDirectory = directory.path + "/" + name
            guard ImageFolder.isDirectory(URL(fileURLWithPath: classDirectory)) else { continue }
            let classFiles = try ImageFolder.files(below: classDirectory)
            guard !classFiles.isEmpty else { throw .emptyClass(directory: classDirectory) }
            guard classNames.count < Int(Int32.max) else { throw .invalidArgument("\(directory.path): too many classes") }
            labels.append(contentsOf: repeatElement(Int32(classNames.count), count: classFiles.count))
            classNames.append(name)
            files.append(contentsOf: classFiles)
        }
        guard !classNames.isEmpty else { throw .noClasses(directory: directory.path) }
        self.directory = directory
        self.classNames = classNames
        self.files = files
        self.labels = labels
        badImages = BadImageRecord(warn: options.warn)
        if let transform = options.transform {
            self.transform = transform
        } else {
            self.transform = try ImageFolderSplit.detectTransform(files: files, options: options, badImages: badImages)
        }
        var settled = options
        settled.transform = transform
        self.options = settled
    }

    /// `.cifar` when the first readable image is 32×32, else `.imagenetDefault`.
    static func detectTransform(files: [String], options: ImageFolderOptions, badImages: BadImageRecord)
        throws(ImageFolderError) -> ImageFolderTransform
    {
        for path in files {
            do {
                let header = try ImageDecoder.header(of: ImageDecoder.read(path), path: path)
                return header.width == CIFAR10.width && header.height == CIFAR10.height ? .cifar : .imagenetDefault
            } catch {
                guard options.skipBadImages else { throw error }
                badImages.report(error, path: path)
            }
        }
        throw .noReadableImage(directory: files.first.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? "")
    }

    public var count: Int { files.count }
    public var imageShape: [Int] { transform.outputShape }
    public var classCount: Int { classNames.count }

    /// Images per class.
    public var labelHistogram: [Int] {
        var histogram = [Int](repeating: 0, count: classNames.count)
        for label in labels { histogram[Int(label)] += 1 }
        return histogram
    }

    public func batchPlan(batchSize: Int, seed: UInt64, training: Bool) throws -> any BatchPlan {
        try ImageFolderBatches(split: self, batchSize: batchSize, seed: seed, training: training)
    }

    /// The normalised HWC floats of file `record`, as the batch at (`epoch`, `position`) holds it: the training
    /// transform with the draws of (seed, epoch, position), or the evaluation transform.
    public func transformed(record: Int, seed: UInt64, epoch: Int, position: Int, training: Bool) throws(ImageFolderError) -> [Float] {
        var output = [Float](repeating: 0, count: imageShape.reduce(1, *))
        try output.withUnsafeMutableBufferPointer { (buffer) throws(ImageFolderError) in
            try prepare(record: record, seed: seed, epoch: epoch, position: position, training: training, into: buffer)
        }
        return output
    }

    /// Reads, decodes and transforms file `record` into `output` (the image's floats, HWC).
    func prepare(
        record: Int, seed: UInt64, epoch: Int, position: Int, training: Bool, into output: UnsafeMutableBufferPointer<Float>
    ) throws(ImageFolderError) {
        let path = files[record]
        let bytes = try ImageDecoder.read(path)
        var generator = Xoshiro256StarStar(
            seed: SplitMix64.derive(seed, UInt64(bitPattern: Int64(epoch)), 1, UInt64(bitPattern: Int64(position))))
        let table = CIFAR10Transform.normalisationTable
        switch transform {
        case .cifar:
            let image = try ImageDecoder.decode(bytes, path: path)
            guard image.width == CIFAR10.width && image.height == CIFAR10.height else {
                throw .notCIFARSized(path: path, width: image.width, height: image.height)
            }
            // The binary files' layout (channel planes), so the transform is the very one of `CIFAR10Batches`.
            let plane = CIFAR10.width * CIFAR10.height
            var planar = [UInt8](repeating: 0, count: CIFAR10.imageSize)
            for index in 0..<plane {
                for channel in 0..<3 { planar[channel * plane + index] = image.pixels[index * 3 + channel] }
            }
            let draw = training ? CIFAR10Transform.Draw.random(using: &generator) : .identity
            planar.withUnsafeBufferPointer { image in
                table.withUnsafeBufferPointer { table in
                    CIFAR10Transform.apply(draw, image: image, table: table, into: output)
                }
            }
        case .imagenet(let size, let resize):
            let header = try ImageDecoder.header(of: bytes, path: path)
            let jpeg = header.format == .jpeg && options.reducedDecoding
            let pixels: [UInt8]
            var flip = false
            if training {
                let region = RandomResizedCrop.region(width: header.width, height: header.height, using: &generator)
                flip = generator.next(below: 2) == 1
                let scale = jpeg ? ImageDecoder.scaleEighths(
                    regionWidth: Double(region.width), regionHeight: Double(region.height),
                    targetWidth: size, targetHeight: size) : 8
                let image = try ImageDecoder.decode(bytes, path: path, scaleEighths: scale)
                let f = Double(scale) / 8
                pixels = BilinearResize.resample(
                    image,
                    box: (Double(region.left) * f, Double(region.top) * f,
                          Double(region.left + region.width) * f, Double(region.top + region.height) * f),
                    outputWidth: size, outputHeight: size, columns: 0..<size, rows: 0..<size)
            } else {
                let resized = ResizeCenterCrop.resized(width: header.width, height: header.height, shorter: resize)
                let crop = ResizeCenterCrop.centre(width: resized.width, height: resized.height, size: size)
                let scale = jpeg ? ImageDecoder.scaleEighths(
                    regionWidth: Double(header.width), regionHeight: Double(header.height),
                    targetWidth: resized.width, targetHeight: resized.height) : 8
                let image = try ImageDecoder.decode(bytes, path: path, scaleEighths: scale)
                let f = Double(scale) / 8
                pixels = BilinearResize.resample(
                    image, box: (0, 0, Double(header.width) * f, Double(header.height) * f),
                    outputWidth: resized.width, outputHeight: resized.height,
                    columns: crop.left..<(crop.left + size), rows: crop.top..<(crop.top + size))
            }
            for y in 0..<size {
                for x in 0..<size {
                    let source = (y * size + (flip ? size - 1 - x : x)) * 3
                    let target = (y * size + x) * 3
                    output[target] = table[Int(pixels[source])]
                    output[target + 1] = table[256 + Int(pixels[source + 1])]
                    output[target + 2] = table[512 + Int(pixels[source + 2])]
                }
            }
        }
    }
}

/// The files found unreadable while skipping bad images: each is reported once (one warning line) and not read
/// again. All state is guarded by `lock`.
final class BadImageRecord: @unchecked Sendable {
    private let lock = NSLock()
    private var paths: Set<String> = []
    private let warn: @Sendable (String) -> Void

    init(warn: @escaping @Sendable (String) -> Void) { self.warn = warn }

    func contains(_ path: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return paths.contains(path)
    }

    /// Records `path` and warns, the first time only.
    func report(_ error: ImageFolderError, path: String) {
        lock.lock()
        let isNew = paths.insert(path).inserted
        lock.unlock()
        if isNew { warn("warning: skipping \(error)") }
    }
}
