import Foundation
import Testing
@testable import BNN

/// Helpers shared by the data-pipeline tests.
enum DataFixtures {
    /// The sample shipped with the repository (2000 training and 500 test records of CIFAR-10).
    static let cifar10SampleDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Examples/data/cifar10-sample")

    /// A fresh empty directory under the system temporary directory; the caller removes it.
    static func makeTemporaryDirectory(_ label: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("bnn-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// `count` synthetic records: label = labels[i], pixel bytes = (i · 7 + byte index) mod 251.
    static func syntheticRecords(labels: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (i, label) in labels.enumerated() {
            bytes.append(label)
            for j in 0..<CIFAR10.imageSize { bytes.append(UInt8((i * 7 + j) % 251)) }
        }
        return bytes
    }
}

@Suite("Data: CIFAR-10 reader")
struct DataCIFAR10ReaderTests {
    @Test("the bundled sample: 2000 + 500 records, labels and pixels as in the files")
    func bundledSample() throws {
        let data = try CIFAR10(directory: DataFixtures.cifar10SampleDirectory)
        #expect(data.train.count == 2000)
        #expect(data.test.count == 500)
        #expect(data.train.images.count == 2000 * 3072)
        #expect(data.test.images.count == 500 * 3072)
        #expect(data.classNames == CIFAR10.defaultClassNames)
        #expect(data.trainingFiles.map(\.lastPathComponent) == ["data_batch_1.bin"])

        // Histogram against a direct count over the raw file bytes.
        for (split, file) in [(data.train, "data_batch_1.bin"), (data.test, "test_batch.bin")] {
            let raw = [UInt8](try Data(contentsOf: DataFixtures.cifar10SampleDirectory.appendingPathComponent(file)))
            var expected = [Int](repeating: 0, count: 10)
            for record in 0..<(raw.count / 3073) { expected[Int(raw[record * 3073])] += 1 }
            #expect(split.labelHistogram == expected)
            #expect(split.labelHistogram.reduce(0, +) == split.count)
            // Every class present and none dominating: a sane sample of a balanced data set.
            #expect(split.labelHistogram.allSatisfy { $0 >= split.count / 20 && $0 <= split.count / 5 })
            // First, a middle and the last record, byte for byte.
            for record in [0, split.count / 2, split.count - 1] {
                #expect(split.labels[record] == raw[record * 3073])
                #expect(Array(split.images[(record * 3072)..<((record + 1) * 3072)]) == Array(raw[(record * 3073 + 1)..<((record + 1) * 3073)]))
            }
        }
    }

    @Test("several training files are read in numeric order; other names are ignored")
    func severalTrainingFiles() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("cifar-order")
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(DataFixtures.syntheticRecords(labels: [1, 1])).write(to: directory.appendingPathComponent("data_batch_1.bin"))
        try Data(DataFixtures.syntheticRecords(labels: [2])).write(to: directory.appendingPathComponent("data_batch_2.bin"))
        try Data(DataFixtures.syntheticRecords(labels: [9, 0, 9])).write(to: directory.appendingPathComponent("data_batch_10.bin"))
        try Data([7]).write(to: directory.appendingPathComponent("data_batch_x.bin"))
        try Data(DataFixtures.syntheticRecords(labels: [3])).write(to: directory.appendingPathComponent("test_batch.bin"))
        try "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n".write(to: directory.appendingPathComponent("batches.meta.txt"), atomically: true, encoding: .utf8)

        let data = try CIFAR10(directory: directory)
        #expect(data.trainingFiles.map(\.lastPathComponent) == ["data_batch_1.bin", "data_batch_2.bin", "data_batch_10.bin"])
        #expect(data.train.labels == [1, 1, 2, 9, 0, 9])
        #expect(data.test.labels == [3])
        #expect(data.classNames == ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
        let expectedFirstOfThird = DataFixtures.syntheticRecords(labels: [9, 0, 9])
        #expect(Array(data.train.images[(3 * 3072)..<(4 * 3072)]) == Array(expectedFirstOfThird[1..<3073]))
    }

    @Test("a truncated file names the complete records and the trailing bytes")
    func truncatedFile() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("cifar-truncated")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("data_batch_1.bin")
        try Data(DataFixtures.syntheticRecords(labels: [0, 1, 2]).prefix(2 * 3073 + 100)).write(to: file)
        try Data(DataFixtures.syntheticRecords(labels: [3])).write(to: directory.appendingPathComponent("test_batch.bin"))
        #expect(throws: CIFAR10Error.truncatedFile(path: file.path, size: 2 * 3073 + 100, completeRecords: 2, trailingBytes: 100)) {
            try CIFAR10(directory: directory)
        }
        do {
            _ = try CIFAR10(directory: directory)
        } catch {
            #expect(error.description.contains("data_batch_1.bin"))
            #expect(error.description.contains("2 complete record(s) and 100 trailing byte(s)"))
        }
    }

    @Test("a label byte above 9 names the file, record, offset and value")
    func badLabel() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("cifar-label")
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(DataFixtures.syntheticRecords(labels: [0, 1])).write(to: directory.appendingPathComponent("data_batch_1.bin"))
        let test = directory.appendingPathComponent("test_batch.bin")
        try Data(DataFixtures.syntheticRecords(labels: [4, 5, 200])).write(to: test)
        #expect(throws: CIFAR10Error.badLabel(path: test.path, record: 2, offset: 2 * 3073, value: 200)) {
            try CIFAR10(directory: directory)
        }
        #expect(CIFAR10Error.badLabel(path: test.path, record: 2, offset: 2 * 3073, value: 200).description
            .contains("record 2 (byte offset 6146): label 200 is out of range"))
    }

    @Test("missing directory, no training file, missing test file, empty file, bad class names")
    func otherErrors() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("cifar-errors")
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("nope")
        #expect(throws: CIFAR10Error.missingDirectory(path: missing.path)) { try CIFAR10(directory: missing) }

        let test = directory.appendingPathComponent("test_batch.bin")
        try Data(DataFixtures.syntheticRecords(labels: [1])).write(to: test)
        #expect(throws: CIFAR10Error.noTrainingFiles(directory: directory.path)) { try CIFAR10(directory: directory) }

        let train = directory.appendingPathComponent("data_batch_1.bin")
        try Data().write(to: train)
        #expect(throws: CIFAR10Error.emptyFile(path: train.path)) { try CIFAR10(directory: directory) }

        try Data(DataFixtures.syntheticRecords(labels: [1])).write(to: train)
        try FileManager.default.removeItem(at: test)
        #expect(throws: CIFAR10Error.missingTestFile(path: test.path)) { try CIFAR10(directory: directory) }

        try Data(DataFixtures.syntheticRecords(labels: [1])).write(to: test)
        let meta = directory.appendingPathComponent("batches.meta.txt")
        try "cat\ndog\n".write(to: meta, atomically: true, encoding: .utf8)
        #expect(throws: CIFAR10Error.badClassNames(path: meta.path, found: 2)) { try CIFAR10(directory: directory) }

        try FileManager.default.removeItem(at: meta)
        #expect(try CIFAR10(directory: directory).train.count == 1)
    }
}
