import BNNRuntime
import CKernels
import Foundation

/// Runs a `PackedModel` on batches of images with the binary kernels: packed weights only (no float copy of a
/// binary weight exists at run time), fused output transforms, buffers planned once, OpenMP across the batch
/// (whole images per thread, kept in cache from layer to layer) or within layers for small batches.
///
/// The kernel program is built by the C runtime (`bnn_packed_program_create`, the code behind the C inference
/// API) from the model the C reader accepted, so Swift and C run the same steps. One engine runs one batch at a
/// time (a mutex in the program); use one engine per thread to run several at once.
public final class PackedEngine: @unchecked Sendable {
    /// The model it runs.
    public let model: PackedModel
    /// Floats per input image (height · width · channels, NHWC) and logits per image.
    public let inputSize: Int
    /// Logits per image.
    public let classes: Int

    private let program: OpaquePointer

    /// Prepares `model`: packs each binary convolution's bits into kernel panels and checks the wiring.
    public init(model: PackedModel) throws {
        self.model = model
        var created: OpaquePointer?
        var message: UnsafeMutablePointer<CChar>?
        let status = bnn_packed_program_create(model.file.pointer, &created, &message)
        guard status == Int32(BNN_OK), let created else {
            throw BNNError(.packedModel, takeRuntimeMessage(message, status: status))
        }
        program = created
        var input: Int64 = 0
        var output: Int64 = 0
        bnn_packed_program_sizes(created, &input, &output)
        inputSize = Int(input)
        classes = Int(output)
    }

    deinit { bnn_packed_program_destroy(program) }

    /// Logits `[count, classes]` of `count` NHWC images (`count · inputSize` floats).
    public func logits(images: UnsafeBufferPointer<Float>, count: Int) throws -> [Float] {
        guard count >= 1, images.count == count * inputSize, let base = images.baseAddress else {
            throw BNNError(.packedModel, "PackedEngine.logits: \(images.count) floats for \(count) images of \(inputSize) floats each")
        }
        var result = [Float](repeating: 0, count: count * classes)
        var message: UnsafeMutablePointer<CChar>?
        let status = result.withUnsafeMutableBufferPointer {
            bnn_packed_program_run(program, base, Int64(count), $0.baseAddress, &message)
        }
        guard status == Int32(BNN_OK) else {
            throw BNNError(.packedModel, "PackedEngine.logits: \(takeRuntimeMessage(message, status: status))")
        }
        return result
    }

    /// Logits of `count` NHWC images given as an array.
    public func logits(images: [Float], count: Int) throws -> [Float] {
        try images.withUnsafeBufferPointer { try logits(images: $0, count: count) }
    }

    /// Index of the largest logit of each image.
    public static func predictions(logits: [Float], classes: Int) -> [Int] {
        stride(from: 0, to: logits.count, by: classes).map { start in
            var best = start
            for i in start..<(start + classes) where logits[i] > logits[best] { best = i }
            return best - start
        }
    }
}
