import BNN
import BNNRuntime
import Foundation
import Testing

/// The C inference API (bnn_inference.h, implemented in C by BNNRuntime), called as a C program would.
/// Every test is synchronous so that it stays on one thread: `bnn_last_error` is per thread.
@Suite("C inference API", .serialized)
struct InferenceAPITests {
    static let dataDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Examples/data/cifar10-sample")

    /// A ResNet-20 1W1A whose batch-norm statistics moved away from their initial values (two training-mode
    /// forward passes on bundled images), packed and written to a temporary file; and 16 normalised test images.
    static func exportedModel() throws -> (url: URL, packed: PackedModel, images: [Float], count: Int) {
        let data = try CIFAR10(directory: dataDirectory)
        let model = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 11)
        let batches = try CIFAR10Batches.evaluation(data.train, batchSize: 32).batches(epoch: 0)
        model.train()
        try withNoGrad {
            for index in 0..<2 {
                let batch = batches.batch(at: index)
                _ = try model(Tensor(shape: [batch.count, 32, 32, 3], data: batch.images))
            }
        }
        model.eval()
        let packed = try PackedModel.pack(model, inputShape: [32, 32, 3], name: "resnet20")
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("capi-\(UUID().uuidString).bnn")
        try packed.write(to: url)
        let test = try CIFAR10Batches.evaluation(data.test, batchSize: 16).batches(epoch: 0).batch(at: 0)
        return (url, packed, test.images, test.count)
    }

    static var lastError: String { String(cString: bnn_last_error()) }

    @Test("an exported model runs through the C API with exactly the PackedEngine's logits")
    func runMatchesEngine() throws {
        let (url, packed, images, count) = try Self.exportedModel()
        defer { try? FileManager.default.removeItem(at: url) }
        var handle: OpaquePointer?
        #expect(bnn_model_open(url.path, &handle) == InferenceStatus.ok.rawValue, "\(Self.lastError)")
        #expect(Self.lastError == "")
        defer { bnn_model_close(handle) }
        #expect(bnn_model_input_size(handle) == 32 * 32 * 3)
        #expect(bnn_model_classes(handle) == 10)
        var (height, width, channels): (Int64, Int64, Int64) = (0, 0, 0)
        #expect(bnn_model_input_shape(handle, &height, &width, &channels) == 0)
        #expect([height, width, channels] == [32, 32, 3])
        #expect(bnn_model_input_shape(handle, nil, nil, nil) == 0)

        let expected = try PackedEngine(model: packed).logits(images: images, count: count)
        var logits = [Float](repeating: .nan, count: count * 10)
        #expect(bnn_model_run(handle, images, Int64(count), &logits) == 0, "\(Self.lastError)")
        #expect(logits == expected)
        // One image at a time gives the same numbers (threads inside layers instead of across images).
        for image in [0, 9, 15] {
            var one = [Float](repeating: .nan, count: 10)
            let input = Array(images[(image * 3072)..<((image + 1) * 3072)])
            #expect(bnn_model_run(handle, input, 1, &one) == 0)
            #expect(one == Array(expected[(image * 10)..<((image + 1) * 10)]), "image \(image)")
        }
    }

    @Test("NULL pointers, counts below 1 and huge counts are refused with a message; nothing is written")
    func badArguments() throws {
        let (url, _, images, _) = try Self.exportedModel()
        defer { try? FileManager.default.removeItem(at: url) }
        var handle: OpaquePointer?
        try #require(bnn_model_open(url.path, &handle) == 0)
        defer { bnn_model_close(handle) }
        let invalid = InferenceStatus.invalidArgument.rawValue
        var logits = [Float](repeating: 42, count: 20)
        let cases: [(String, () -> Int32, String)] = [
            ("NULL model", { bnn_model_run(nil, images, 1, &logits) }, "model is NULL"),
            ("NULL images", { bnn_model_run(handle, nil, 1, &logits) }, "images_nhwc is NULL"),
            ("NULL logits", { bnn_model_run(handle, images, 1, nil) }, "logits is NULL"),
            ("n = 0", { bnn_model_run(handle, images, 0, &logits) }, "n is 0"),
            ("n = -3", { bnn_model_run(handle, images, -3, &logits) }, "n is -3"),
            ("n = Int64.max", { bnn_model_run(handle, images, .max, &logits) }, "too many"),
            ("shape of NULL", { bnn_model_input_shape(nil, nil, nil, nil) }, "model is NULL"),
            ("0 threads", { bnn_set_threads(0) }, "between 1 and 4096"),
            ("5000 threads", { bnn_set_threads(5000) }, "between 1 and 4096"),
        ]
        for (name, call, fragment) in cases {
            #expect(call() == invalid, "\(name)")
            #expect(Self.lastError.contains(fragment), "\(name): message \"\(Self.lastError)\"")
        }
        #expect(logits.allSatisfy { $0 == 42 }, "a refused run wrote logits")
        #expect(bnn_model_input_size(nil) == -1)
        #expect(Self.lastError.contains("NULL"))
        #expect(bnn_model_classes(nil) == -1)
        bnn_model_close(nil)
        // A successful call clears the message. (Not bnn_set_threads: other suites running in parallel read the
        // process-wide thread count.)
        #expect(bnn_model_input_shape(handle, nil, nil, nil) == 0)
        #expect(Self.lastError == "", "a successful call clears the message")
    }

    @Test("files that cannot be read or are not packed models give the matching status and name the file")
    func badFiles() throws {
        var handle = OpaquePointer(bitPattern: 1)
        #expect(bnn_model_open(nil, &handle) == InferenceStatus.invalidArgument.rawValue)
        #expect(handle == nil, "*out is set to NULL on failure")
        #expect(bnn_model_open("/nonexistent/model.bnn", nil) == InferenceStatus.invalidArgument.rawValue)

        let missing = "/nonexistent/model.bnn"
        #expect(bnn_model_open(missing, &handle) == InferenceStatus.ioError.rawValue)
        #expect(Self.lastError.contains(missing) && Self.lastError.contains("No such file"), "\(Self.lastError)")
        let directory = FileManager.default.temporaryDirectory.path
        #expect(bnn_model_open(directory, &handle) == InferenceStatus.ioError.rawValue)
        #expect(Self.lastError.contains("not a regular file"), "\(Self.lastError)")

        let url = FileManager.default.temporaryDirectory.appendingPathComponent("capi-bad-\(UUID().uuidString).bnn")
        defer { try? FileManager.default.removeItem(at: url) }
        for (name, bytes) in [("empty", [UInt8]()), ("text", Array("hello, not a model".utf8)),
                              ("huge header length", [255, 255, 255, 255, 255, 255, 255, 127, 0, 0])] {
            try Data(bytes).write(to: url)
            #expect(bnn_model_open(url.path, &handle) == InferenceStatus.invalidModel.rawValue, "\(name)")
            #expect(handle == nil)
            #expect(Self.lastError.contains(url.path), "\(name): \(Self.lastError)")
        }
        // A safetensors file that is not a packed model (a training state dict).
        let stateDict = try ResNet20(variant: .binary, estimator: ReSTE(), seed: 1).stateDict()
        try SafeTensors.write(stateDict, to: url)
        #expect(bnn_model_open(url.path, &handle) == InferenceStatus.invalidModel.rawValue)
        #expect(Self.lastError.contains("bnn export"), "\(Self.lastError)")
    }

    @Test("the message is per thread: a failure on another thread leaves this thread's message alone")
    func threadLocalMessage() throws {
        #expect(bnn_model_open("/nonexistent/a.bnn", nil) == InferenceStatus.invalidArgument.rawValue)
        let mine = Self.lastError
        let done = DispatchSemaphore(value: 0)
        let other = Thread {
            _ = bnn_model_run(nil, nil, 0, nil)
            done.signal()
        }
        other.start()
        done.wait()
        #expect(Self.lastError == mine)
    }

    @Test("every status code has its own description")
    func statusMessages() {
        #expect(InferenceStatus.allCodes == [BNN_OK, BNN_INVALID_ARGUMENT, BNN_IO_ERROR, BNN_INVALID_MODEL, BNN_RUN_FAILED].map { Int32($0) })
        let codes = InferenceStatus.allCodes.map { String(cString: bnn_status_message($0)) }
        #expect(Set(codes).count == codes.count && codes.allSatisfy { !$0.isEmpty }, "\(codes)")
        #expect(String(cString: bnn_status_message(99)) == "unknown status code")
        #expect(String(cString: bnn_status_message(-1)) == "unknown status code")
    }

    @Test("1,000 random byte flips and truncations of a model file opened through the C API: an error or the same network")
    func corruptedFiles() throws {
        let (url, _, images, _) = try Self.exportedModel()
        defer { try? FileManager.default.removeItem(at: url) }
        let original = try Data(contentsOf: url)
        var handle: OpaquePointer?
        try #require(bnn_model_open(url.path, &handle) == 0)
        let probe = Array(images[0..<(2 * 3072)])
        var expected = [Float](repeating: 0, count: 20)
        try #require(bnn_model_run(handle, probe, 2, &expected) == 0)
        bnn_model_close(handle)

        let headerEnd = 8 + original.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        var generator = Xoshiro256StarStar(seed: 2024)
        let corrupted = FileManager.default.temporaryDirectory.appendingPathComponent("capi-fuzz-\(UUID().uuidString).bnn")
        defer { try? FileManager.default.removeItem(at: corrupted) }
        var rejected = 0
        for trial in 0..<1000 {
            var bytes = original
            if trial % 4 == 3 {
                bytes = bytes.prefix(Int(generator.next(below: UInt64(bytes.count))))
            } else {
                // Half the flips land in the header, where the structure lives.
                let limit = trial % 2 == 0 ? headerEnd : bytes.count
                let position = Int(generator.next(below: UInt64(limit)))
                bytes[position] ^= UInt8(1 << generator.next(below: 8))
            }
            try bytes.write(to: corrupted)
            let status = bnn_model_open(corrupted.path, &handle)
            if status == 0 {
                var logits = [Float](repeating: 0, count: 20)
                #expect(bnn_model_run(handle, probe, 2, &logits) == 0)
                #expect(logits == expected, "trial \(trial) opened a different network without an error")
                bnn_model_close(handle)
            } else {
                #expect(status == InferenceStatus.invalidModel.rawValue, "trial \(trial): status \(status)")
                #expect(handle == nil)
                #expect(!Self.lastError.isEmpty)
                rejected += 1
            }
        }
        #expect(rejected >= 900, "only \(rejected) of 1000 corrupted files were rejected")
    }
}

/// The status codes of bnn_inference.h, typed for the tests.
enum InferenceStatus: Int32, CaseIterable {
    case ok = 0
    case invalidArgument = 1
    case ioError = 2
    case invalidModel = 3
    case runFailed = 4

    /// Every code of the header.
    static let allCodes: [Int32] = allCases.map(\.rawValue)
}
