import CKernels
import Foundation

/// Runs a `PackedModel` on batches of images with the binary kernels: packed weights only (no float copy of a
/// binary weight exists at run time), fused output transforms, buffers planned once, OpenMP across the batch
/// (whole images per thread, kept in cache from layer to layer) or within layers for small batches.
///
/// One engine runs one batch at a time; use one engine per thread to run several at once.
public final class PackedEngine: @unchecked Sendable {
    /// The model it runs.
    public let model: PackedModel
    /// Floats per input image (height · width · channels, NHWC) and logits per image.
    public let inputSize: Int
    /// Logits per image.
    public let classes: Int

    private var program: OpaquePointer?
    private var binaryWeights: [OpaquePointer?] = []
    private var floatStorage: [UnsafeMutableBufferPointer<Float>] = []
    private let lock = NSLock()

    /// Prepares `model`: packs each binary convolution's bits into kernel panels and checks the wiring.
    public init(model: PackedModel) throws {
        self.model = model
        let graph = model.graph
        inputSize = graph.input.reduce(1, *)
        classes = graph.classes
        var steps: [ck_step] = []
        do {
            for layer in graph.layers { steps.append(try makeStep(layer)) }
            try createProgram(steps)
        } catch {
            release()
            throw error
        }
    }

    deinit { release() }

    private func release() {
        ck_program_destroy(program)
        program = nil
        for weights in binaryWeights { ck_bconv_weights_destroy(weights) }
        binaryWeights = []
        for storage in floatStorage { storage.deallocate() }
        floatStorage = []
    }

    /// A stable copy of a float tensor of the model, owned by the engine.
    private func floats(_ layer: PackedLayer, _ part: String) throws -> UnsafePointer<Float> {
        let values = try model.tensors["\(layer.name).\(part)"]!.floats()
        let storage = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(values.count, 1))
        _ = storage.initialize(from: values)
        floatStorage.append(storage)
        return UnsafePointer(storage.baseAddress!)
    }

    private func makeStep(_ layer: PackedLayer) throws -> ck_step {
        func fail(_ what: String) -> PackedModelError { PackedModelError("layer \"\(layer.name)\": \(what)") }
        for (label, id) in [("input", layer.input), ("residual", layer.residual ?? -1), ("output", layer.output ?? -1),
                            ("output_bits", layer.outputBits ?? -1)] where id < -1 || id > 63 {
            throw fail("buffer `\(label)` = \(id) is outside 0...63")
        }
        let k = layer.kernel ?? 1, stride = layer.stride ?? 1, padding = layer.padding ?? 0
        guard [layer.height, layer.width, layer.channels, layer.outChannels, k, stride].allSatisfy({ $0 >= 1 && $0 <= 1 << 24 }),
            padding >= 0, padding <= 1 << 24
        else { throw fail("sizes must be positive (padding non-negative)") }
        var step = ck_step()
        step.shape = ck_conv_shape(
            batch: 1, height: Int64(layer.height), width: Int64(layer.width), channels: Int64(layer.channels),
            kernel_h: Int64(k), kernel_w: Int64(k), stride_h: Int64(stride), stride_w: Int64(stride),
            pad_h: Int64(padding), pad_w: Int64(padding))
        step.out_channels = Int64(layer.outChannels)
        step.flags = Int32((layer.reluBefore == true ? Int(CK_RELU_BEFORE) : 0)
            | (layer.reluAfter == true ? Int(CK_RELU_AFTER) : 0))
        step.input = Int32(layer.input)
        step.residual = Int32(layer.residual ?? -1)
        step.output = Int32(layer.output ?? -1)
        step.output_bits = Int32(layer.outputBits ?? -1)
        switch layer.op {
        case .conv:
            step.kind = CK_STEP_CONV_F32
            step.weights = try floats(layer, "weight")
            step.scale = try floats(layer, "scale")
            step.bias = try floats(layer, "bias")
        case .bconv:
            step.kind = CK_STEP_BCONV
            let bits = try model.tensors["\(layer.name).bits"]!.uint64s()
            var weights: OpaquePointer?
            let status = bits.withUnsafeBufferPointer {
                ck_bconv_weights_create_from_bits(
                    $0.baseAddress, Int64(layer.outChannels), Int64(layer.channels), Int64(k), Int64(k), &weights)
            }
            guard status == CK_OK else { throw fail("packing the binary weights: \(String(cString: ck_status_message(status)))") }
            binaryWeights.append(weights)
            step.binary_weights = weights
            step.prescale = try floats(layer, "prescale")
            step.scale = try floats(layer, "scale")
            step.bias = try floats(layer, "bias")
        case .shortcut:
            step.kind = CK_STEP_SHORTCUT
        case .bmaxpool:
            step.kind = CK_STEP_BMAXPOOL
        case .maxpool:
            step.kind = CK_STEP_MAXPOOL_F32
        case .avgpool:
            step.kind = CK_STEP_AVGPOOL_F32
        case .affine:
            step.kind = CK_STEP_AFFINE
            step.scale = try floats(layer, "scale")
            step.bias = try floats(layer, "bias")
        case .globalAvgPool:
            step.kind = CK_STEP_GLOBAL_AVGPOOL
            step.scale = try floats(layer, "scale")
            step.bias = try floats(layer, "bias")
        case .linear:
            step.kind = CK_STEP_LINEAR
            step.weights = try floats(layer, "weight")
            step.bias = try floats(layer, "bias")
        }
        return step
    }

    private func createProgram(_ steps: [ck_step]) throws {
        var created: OpaquePointer?
        var failed: Int32 = -1
        let status = steps.withUnsafeBufferPointer {
            ck_program_create_checked($0.baseAddress, Int32($0.count), &created, &failed)
        }
        if status != CK_OK {
            let layer = model.graph.layers[Int(max(0, min(failed, Int32(steps.count - 1))))]
            throw PackedModelError(
                "layer \"\(layer.name)\" (\(layer.op.rawValue)): \(String(cString: ck_status_message(status))) — its "
                    + "buffers must be written by earlier layers with the shape it reads, and its window must fit")
        }
        program = created
        var input: Int64 = 0
        var output: Int64 = 0
        ck_program_sizes(program, &input, &output)
        guard input == Int64(inputSize), output == Int64(classes) else {
            throw PackedModelError(
                "graph: the layers read \(input) floats per image and produce \(output), but the graph declares "
                    + "input \(model.graph.input) (\(inputSize)) and \(classes) classes")
        }
    }

    /// Logits `[count, classes]` of `count` NHWC images (`count · inputSize` floats).
    public func logits(images: UnsafeBufferPointer<Float>, count: Int) throws -> [Float] {
        guard count >= 1, images.count == count * inputSize else {
            throw PackedModelError("PackedEngine.logits: \(images.count) floats for \(count) images of \(inputSize) floats each")
        }
        var result = [Float](repeating: 0, count: count * classes)
        lock.lock()
        defer { lock.unlock() }
        let status = result.withUnsafeMutableBufferPointer {
            ck_program_run(program, images.baseAddress, Int64(count), $0.baseAddress)
        }
        guard status == CK_OK else {
            throw PackedModelError("PackedEngine.logits: \(String(cString: ck_status_message(status)))")
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
