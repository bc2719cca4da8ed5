import Foundation

/// Why a CIFAR-10 directory could not be read (or a data-pipeline argument was refused); the
/// description names the file, the record and the byte offset where that applies.
public enum CIFAR10Error: Error, CustomStringConvertible, Equatable, Sendable {
    /// The directory does not exist (or is not a directory).
    case missingDirectory(path: String)
    /// No `data_batch_N.bin` file in the directory.
    case noTrainingFiles(directory: String)
    /// No `test_batch.bin` file in the directory.
    case missingTestFile(path: String)
    /// A batch file holds no bytes at all.
    case emptyFile(path: String)
    /// A batch file's size is not a multiple of 3073 bytes.
    case truncatedFile(path: String, size: Int, completeRecords: Int, trailingBytes: Int)
    /// A label byte is outside 0...9.
    case badLabel(path: String, record: Int, offset: Int, value: UInt8)
    /// `batches.meta.txt` does not list exactly ten class names.
    case badClassNames(path: String, found: Int)
    /// The file exists but could not be read.
    case unreadable(path: String, reason: String)
    /// A pipeline parameter is out of range (e.g. batch size 0).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .missingDirectory(let path):
            return "CIFAR-10 directory \(path) does not exist or is not a directory"
        case .noTrainingFiles(let directory):
            return "CIFAR-10 directory \(directory) holds no training file: expected data_batch_1.bin, data_batch_2.bin, ..."
        case .missingTestFile(let path):
            return "CIFAR-10 test file \(path) is missing: expected test_batch.bin beside the training files"
        case .emptyFile(let path):
            return "CIFAR-10 file \(path) is empty: expected a multiple of \(CIFAR10.recordSize) bytes (1 label byte + 3072 pixel bytes per record)"
        case .truncatedFile(let path, let size, let complete, let trailing):
            return "CIFAR-10 file \(path) is truncated: \(size) bytes is not a multiple of \(CIFAR10.recordSize); "
                + "it holds \(complete) complete record(s) and \(trailing) trailing byte(s) at offset \(complete * CIFAR10.recordSize)"
        case .badLabel(let path, let record, let offset, let value):
            return "CIFAR-10 file \(path), record \(record) (byte offset \(offset)): label \(value) is out of range, expected 0...9"
        case .badClassNames(let path, let found):
            return "CIFAR-10 class-name file \(path) lists \(found) name(s), expected 10 (one per line)"
        case .unreadable(let path, let reason):
            return "CIFAR-10 file \(path) could not be read: \(reason)"
        case .invalidArgument(let message):
            return message
        }
    }
}

/// One split of CIFAR-10 in memory: images as bytes in the file's own layout (N × 3 × 32 × 32,
/// channel planes R, G, B, rows top to bottom) and one label 0...9 per image.
public struct CIFAR10Split: Sendable, Equatable {
    /// N × 3072 bytes, image `i` at `i * 3072`.
    public let images: [UInt8]
    /// N labels in 0...9.
    public let labels: [UInt8]

    /// Wraps images and labels that are already known to be consistent (3072 bytes per label, labels < 10);
    /// returns nil otherwise.
    public init?(images: [UInt8], labels: [UInt8]) {
        guard images.count == labels.count * CIFAR10.imageSize, labels.allSatisfy({ $0 < 10 }) else { return nil }
        self.images = images
        self.labels = labels
    }

    /// The number of images.
    public var count: Int { labels.count }

    /// How many images carry each label 0...9.
    public var labelHistogram: [Int] {
        var histogram = [Int](repeating: 0, count: CIFAR10.classCount)
        for label in labels { histogram[Int(label)] += 1 }
        return histogram
    }
}

/// The CIFAR-10 data set read from the binary distribution (`data_batch_N.bin`, `test_batch.bin`,
/// optional `batches.meta.txt`).
public struct CIFAR10: Sendable, Equatable {
    /// Image geometry of the data set.
    public static let height = 32
    public static let width = 32
    public static let channels = 3
    /// Bytes per image (3 × 32 × 32).
    public static let imageSize = height * width * channels
    /// One label byte followed by the image.
    public static let recordSize = 1 + imageSize
    /// Number of classes (labels 0...9).
    public static let classCount = 10
    /// The class names of the original distribution, used when `batches.meta.txt` is absent.
    public static let defaultClassNames = [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ]

    /// All `data_batch_N.bin` files, concatenated in increasing N.
    public let train: CIFAR10Split
    /// `test_batch.bin`.
    public let test: CIFAR10Split
    /// Ten class names, index = label.
    public let classNames: [String]
    /// The training files that were read, in order.
    public let trainingFiles: [URL]

    /// Reads every `data_batch_N.bin` (N ≥ 1, any subset, sorted by N) and `test_batch.bin` in `directory`.
    public init(directory: URL) throws(CIFAR10Error) {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .missingDirectory(path: directory.path)
        }
        let names: [String]
        do {
            names = try fileManager.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw .unreadable(path: directory.path, reason: "\(error.localizedDescription)")
        }
        let numbered = names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("data_batch_"), name.hasSuffix(".bin") else { return nil }
            let digits = name.dropFirst("data_batch_".count).dropLast(".bin".count)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits), n >= 1 else {
                return nil
            }
            return (n, name)
        }.sorted { $0.0 < $1.0 }
        guard !numbered.isEmpty else { throw .noTrainingFiles(directory: directory.path) }
        trainingFiles = numbered.map { directory.appendingPathComponent($0.1) }

        var images: [UInt8] = []
        var labels: [UInt8] = []
        for file in trainingFiles {
            try CIFAR10.readBatch(file, images: &images, labels: &labels)
        }
        train = CIFAR10Split(validatedImages: images, labels: labels)

        let testFile = directory.appendingPathComponent("test_batch.bin")
        guard fileManager.fileExists(atPath: testFile.path) else { throw .missingTestFile(path: testFile.path) }
        images = []
        labels = []
        try CIFAR10.readBatch(testFile, images: &images, labels: &labels)
        test = CIFAR10Split(validatedImages: images, labels: labels)

        let metaFile = directory.appendingPathComponent("batches.meta.txt")
        if fileManager.fileExists(atPath: metaFile.path) {
            classNames = try CIFAR10.readClassNames(metaFile)
        } else {
            classNames = CIFAR10.defaultClassNames
        }
    }

    /// Reads one batch file and appends its records; validates size and every label before appending.
    public static func readBatch(_ file: URL, images: inout [UInt8], labels: inout [UInt8]) throws(CIFAR10Error) {
        let data: Data
        do {
            data = try FileAccess.readRegularFile(file.path)
        } catch {
            throw .unreadable(path: file.path, reason: error.reason)
        }
        if data.isEmpty { throw .emptyFile(path: file.path) }
        let records = data.count / recordSize
        let trailing = data.count % recordSize
        if trailing != 0 {
            throw .truncatedFile(path: file.path, size: data.count, completeRecords: records, trailingBytes: trailing)
        }
        let base = data.startIndex
        for record in 0..<records where data[base + record * recordSize] > 9 {
            throw .badLabel(path: file.path, record: record, offset: record * recordSize,
                            value: data[base + record * recordSize])
        }
        let imageStart = images.count
        images.append(contentsOf: repeatElement(0, count: records * imageSize))
        labels.reserveCapacity(labels.count + records)
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            images.withUnsafeMutableBytes { destination in
                for record in 0..<records {
                    labels.append(raw[record * recordSize])
                    let source = UnsafeRawBufferPointer(rebasing: raw[(record * recordSize + 1)..<((record + 1) * recordSize)])
                    UnsafeMutableRawBufferPointer(rebasing: destination[(imageStart + record * imageSize)...])
                        .copyMemory(from: source)
                }
            }
        }
    }

    /// Reads `batches.meta.txt`: one class name per non-empty line, exactly ten.
    public static func readClassNames(_ file: URL) throws(CIFAR10Error) -> [String] {
        let data: Data
        do {
            // Ten short names: a larger file is not a class-name list.
            data = try FileAccess.readRegularFile(file.path, limit: 1 << 20)
        } catch {
            throw .unreadable(path: file.path, reason: error.reason)
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw .unreadable(path: file.path, reason: "not valid UTF-8 text")
        }
        let names = text.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        guard names.count == classCount else { throw .badClassNames(path: file.path, found: names.count) }
        return names
    }
}

extension CIFAR10Split {
    /// For the reader, which has already validated sizes and labels.
    init(validatedImages images: [UInt8], labels: [UInt8]) {
        self.images = images
        self.labels = labels
    }
}
