import BNN
import CKernels
import Testing

/// Expects `body` to throw a KernelError that names `argument`, in its field and its message, with `status`.
func expectKernelError(
    _ argument: String, _ status: ck_status, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("expected a KernelError naming `\(argument)`, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as KernelError {
        #expect(error.argument == argument, "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains("`\(argument)`"), "\(error)", sourceLocation: sourceLocation)
        #expect(error.code == status, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a KernelError, got \(error)", sourceLocation: sourceLocation)
    }
}

/// A small valid convolution shape for the C calls below.
let smallShape = ck_conv_shape(
    batch: 1, height: 4, width: 4, channels: 8, kernel_h: 3, kernel_w: 3, stride_h: 1, stride_w: 1, pad_h: 1, pad_w: 1)

@Suite struct BadArgumentsInC {
    @Test("packing rejects null pointers and sizes below 1")
    func packing() {
        var words = [UInt64](repeating: 0, count: 4)
        var floats = [Float](repeating: 0, count: 4)
        let x: [Float] = [1, -1, 0, 2]
        #expect(ck_pack_signs(nil, 1, 4, &words) == CK_ERR_NULL_POINTER)
        #expect(ck_pack_signs(x, 1, 4, nil) == CK_ERR_NULL_POINTER)
        #expect(ck_pack_signs(x, 0, 4, &words) == CK_ERR_INVALID_SIZE)
        #expect(ck_pack_signs(x, 1, -4, &words) == CK_ERR_INVALID_SIZE)
        #expect(ck_pack_signs_nchw(nil, 1, 1, 2, 2, &words) == CK_ERR_NULL_POINTER)
        #expect(ck_pack_signs_nchw(x, 1, 0, 2, 2, &words) == CK_ERR_INVALID_SIZE)
        #expect(ck_pack_signs_nchw(x, 1, 1, 2, -2, &words) == CK_ERR_INVALID_SIZE)
        #expect(ck_unpack_signs(nil, 1, 4, &floats) == CK_ERR_NULL_POINTER)
        #expect(ck_unpack_signs(words, 1, 4, nil) == CK_ERR_NULL_POINTER)
        #expect(ck_unpack_signs(words, -1, 4, &floats) == CK_ERR_INVALID_SIZE)
        #expect(ck_unpack_signs(words, 1, 0, &floats) == CK_ERR_INVALID_SIZE)
    }

    @Test("bgemm rejects null pointers, sizes below 1 and ldo < n")
    func bgemm() {
        let bits = [UInt64](repeating: 0, count: 16)
        var out = [Int32](repeating: 0, count: 16)
        var weights: OpaquePointer? = OpaquePointer(bitPattern: 0x1)
        #expect(ck_bgemm_weights_create(bits, 2, 64, nil) == CK_ERR_NULL_POINTER)
        #expect(ck_bgemm_weights_create(nil, 2, 64, &weights) == CK_ERR_NULL_POINTER)
        #expect(weights == nil, "a failed create must leave *out NULL")
        #expect(ck_bgemm_weights_create(bits, 0, 64, &weights) == CK_ERR_INVALID_SIZE)
        #expect(ck_bgemm_weights_create(bits, 2, -64, &weights) == CK_ERR_INVALID_SIZE)
        #expect(ck_bgemm_weights_shape(nil, nil, nil) == CK_ERR_NULL_POINTER)
        ck_bgemm_weights_destroy(nil)

        #expect(ck_bgemm_weights_create(bits, 4, 64, &weights) == CK_OK)
        defer { ck_bgemm_weights_destroy(weights) }
        var n: Int64 = 0
        var k: Int64 = 0
        #expect(ck_bgemm_weights_shape(weights, &n, &k) == CK_OK && n == 4 && k == 64)
        #expect(ck_bgemm_packed(nil, 2, weights, &out, 4) == CK_ERR_NULL_POINTER)
        #expect(ck_bgemm_packed(bits, 2, nil, &out, 4) == CK_ERR_NULL_POINTER)
        #expect(ck_bgemm_packed(bits, 2, weights, nil, 4) == CK_ERR_NULL_POINTER)
        #expect(ck_bgemm_packed(bits, 0, weights, &out, 4) == CK_ERR_INVALID_SIZE)
        #expect(ck_bgemm_packed(bits, -3, weights, &out, 4) == CK_ERR_INVALID_SIZE)
        #expect(ck_bgemm_packed(bits, 2, weights, &out, 3) == CK_ERR_SHAPE_MISMATCH)
        #expect(ck_bgemm_packed(bits, 2, weights, &out, 4) == CK_OK)

        #expect(ck_bgemm(nil, bits, 2, 2, 64, &out) == CK_ERR_NULL_POINTER)
        #expect(ck_bgemm(bits, nil, 2, 2, 64, &out) == CK_ERR_NULL_POINTER)
        #expect(ck_bgemm(bits, bits, 2, 2, 64, nil) == CK_ERR_NULL_POINTER)
        #expect(ck_bgemm(bits, bits, 0, 2, 64, &out) == CK_ERR_INVALID_SIZE)
        #expect(ck_bgemm(bits, bits, 2, 0, 64, &out) == CK_ERR_INVALID_SIZE)
        #expect(ck_bgemm(bits, bits, 2, 2, 0, &out) == CK_ERR_INVALID_SIZE)
    }

    @Test("conv geometry rejects invalid sizes and windows larger than the padded input")
    func geometry() {
        var oh: Int64 = 0
        var ow: Int64 = 0
        var shape = smallShape
        #expect(ck_conv_output_size(&shape, &oh, &ow) == CK_OK && oh == 4 && ow == 4)
        #expect(ck_conv_output_size(nil, &oh, &ow) == CK_ERR_NULL_POINTER)
        let invalid: [(String, (inout ck_conv_shape) -> Void)] = [
            ("batch 0", { $0.batch = 0 }), ("height -1", { $0.height = -1 }), ("channels 0", { $0.channels = 0 }),
            ("kernel_w 0", { $0.kernel_w = 0 }), ("stride_h 0", { $0.stride_h = 0 }),
            ("pad_w -1", { $0.pad_w = -1 }),
        ]
        for (name, change) in invalid {
            var s = smallShape
            change(&s)
            #expect(ck_conv_output_size(&s, &oh, &ow) == CK_ERR_INVALID_SIZE, "\(name)")
        }
        var tooLarge = smallShape
        tooLarge.kernel_h = 7  // 4 + 2·1 = 6 rows with padding
        #expect(ck_conv_output_size(&tooLarge, &oh, &ow) == CK_ERR_SHAPE_MISMATCH)
        var justFits = smallShape
        justFits.kernel_w = 6
        #expect(ck_conv_output_size(&justFits, &oh, &ow) == CK_OK && ow == 1)
    }

    @Test("binary convolution and max-pool reject null pointers and inconsistent shapes")
    func convolution() {
        let w = [Float](repeating: 1, count: 16 * 8 * 3 * 3)
        var weights: OpaquePointer? = OpaquePointer(bitPattern: 0x1)
        #expect(ck_bconv_weights_create(nil, 16, 8, 3, 3, &weights) == CK_ERR_NULL_POINTER)
        #expect(weights == nil, "a failed create must leave *out NULL")
        #expect(ck_bconv_weights_create(w, 16, 8, 3, 3, nil) == CK_ERR_NULL_POINTER)
        #expect(ck_bconv_weights_create(w, 0, 8, 3, 3, &weights) == CK_ERR_INVALID_SIZE)
        #expect(ck_bconv_weights_create(w, 16, -8, 3, 3, &weights) == CK_ERR_INVALID_SIZE)
        #expect(ck_bconv_weights_create(w, 16, 8, 0, 3, &weights) == CK_ERR_INVALID_SIZE)
        let bits = [UInt64](repeating: 0, count: 16 * 9)
        #expect(ck_bconv_weights_create_from_bits(nil, 16, 8, 3, 3, &weights) == CK_ERR_NULL_POINTER)
        #expect(ck_bconv_weights_create_from_bits(bits, 16, 8, 3, 3, nil) == CK_ERR_NULL_POINTER)
        #expect(ck_bconv_weights_create_from_bits(bits, 16, 8, 3, -3, &weights) == CK_ERR_INVALID_SIZE)
        #expect(ck_bconv_weights_bit_level(nil) == -1)
        ck_bconv_weights_destroy(nil)

        #expect(ck_bconv_weights_create(w, 16, 8, 3, 3, &weights) == CK_OK)
        defer { ck_bconv_weights_destroy(weights) }
        let input = [UInt64](repeating: 0, count: 16)
        var out = [Int32](repeating: 0, count: 16 * 16)
        var pooled = [UInt64](repeating: 0, count: 16)
        out.withUnsafeMutableBufferPointer { out in
            var transform = ck_output_transform(
                scale: nil, bias: nil, residual: nil, flags: 0, out_int: out.baseAddress, out: nil, out_bits: nil)
            var noOutput = ck_output_transform(
                scale: nil, bias: nil, residual: nil, flags: 0, out_int: nil, out: nil, out_bits: nil)
            var shape = smallShape
            #expect(ck_bconv2d(input, &shape, weights, &transform) == CK_OK)
            #expect(ck_bconv2d(nil, &shape, weights, &transform) == CK_ERR_NULL_POINTER)
            #expect(ck_bconv2d(input, nil, weights, &transform) == CK_ERR_NULL_POINTER)
            #expect(ck_bconv2d(input, &shape, nil, &transform) == CK_ERR_NULL_POINTER)
            #expect(ck_bconv2d(input, &shape, weights, nil) == CK_ERR_NULL_POINTER)
            #expect(ck_bconv2d(input, &shape, weights, &noOutput) == CK_ERR_NULL_POINTER)
            var otherChannels = smallShape
            otherChannels.channels = 9
            #expect(ck_bconv2d(input, &otherChannels, weights, &transform) == CK_ERR_SHAPE_MISMATCH)
            var otherKernel = smallShape
            otherKernel.kernel_w = 1
            #expect(ck_bconv2d(input, &otherKernel, weights, &transform) == CK_ERR_SHAPE_MISMATCH)
            var tooLarge = smallShape
            tooLarge.pad_h = 0
            tooLarge.height = 2
            #expect(ck_bconv2d(input, &tooLarge, weights, &transform) == CK_ERR_SHAPE_MISMATCH)
            var zeroStride = smallShape
            zeroStride.stride_w = 0
            #expect(ck_bconv2d(input, &zeroStride, weights, &transform) == CK_ERR_INVALID_SIZE)

            #expect(ck_bmaxpool2d(input, &shape, &pooled) == CK_OK)
            #expect(ck_bmaxpool2d(nil, &shape, &pooled) == CK_ERR_NULL_POINTER)
            #expect(ck_bmaxpool2d(input, nil, &pooled) == CK_ERR_NULL_POINTER)
            #expect(ck_bmaxpool2d(input, &shape, nil) == CK_ERR_NULL_POINTER)
            #expect(ck_bmaxpool2d(input, &tooLarge, &pooled) == CK_ERR_SHAPE_MISMATCH)
            // Padding beyond half the window could leave a window without a real pixel (PyTorch refuses it too).
            var widePadding = smallShape
            widePadding.pad_w = 2
            #expect(ck_bmaxpool2d(input, &widePadding, &pooled) == CK_ERR_SHAPE_MISMATCH)
            var negativePad = smallShape
            negativePad.pad_h = -1
            #expect(ck_bmaxpool2d(input, &negativePad, &pooled) == CK_ERR_INVALID_SIZE)
        }
    }

    @Test("float kernels reject null pointers, sizes below 1 and short leading dimensions")
    func floatKernels() {
        let x = [Float](repeating: 1, count: 16 * 8)
        var cols = [Float](repeating: 0, count: 16 * 72)
        var shape = smallShape
        #expect(ck_im2col_nhwc_f32(nil, &shape, &cols) == CK_ERR_NULL_POINTER)
        #expect(ck_im2col_nhwc_f32(x, nil, &cols) == CK_ERR_NULL_POINTER)
        #expect(ck_im2col_nhwc_f32(x, &shape, nil) == CK_ERR_NULL_POINTER)
        var tooLarge = smallShape
        tooLarge.kernel_h = 9
        #expect(ck_im2col_nhwc_f32(x, &tooLarge, &cols) == CK_ERR_SHAPE_MISMATCH)

        let a = [Float](repeating: 1, count: 64)
        var c = [Float](repeating: 0, count: 64)
        #expect(ck_sgemm(0, 0, 4, 4, 4, 1, nil, 4, a, 4, 0, &c, 4) == CK_ERR_NULL_POINTER)
        #expect(ck_sgemm(0, 0, 4, 4, 4, 1, a, 4, nil, 4, 0, &c, 4) == CK_ERR_NULL_POINTER)
        #expect(ck_sgemm(0, 0, 4, 4, 4, 1, a, 4, a, 4, 0, nil, 4) == CK_ERR_NULL_POINTER)
        #expect(ck_sgemm(0, 0, 0, 4, 4, 1, a, 4, a, 4, 0, &c, 4) == CK_ERR_INVALID_SIZE)
        #expect(ck_sgemm(0, 0, 4, -4, 4, 1, a, 4, a, 4, 0, &c, 4) == CK_ERR_INVALID_SIZE)
        #expect(ck_sgemm(0, 0, 4, 4, 0, 1, a, 4, a, 4, 0, &c, 4) == CK_ERR_INVALID_SIZE)
        #expect(ck_sgemm(0, 0, 4, 4, 5, 1, a, 4, a, 4, 0, &c, 4) == CK_ERR_SHAPE_MISMATCH)  // lda < k
        #expect(ck_sgemm(1, 0, 5, 4, 4, 1, a, 4, a, 4, 0, &c, 4) == CK_ERR_SHAPE_MISMATCH)  // Aᵀ: lda < m
        #expect(ck_sgemm(0, 1, 4, 4, 5, 1, a, 5, a, 4, 0, &c, 4) == CK_ERR_SHAPE_MISMATCH)  // Bᵀ: ldb < k
        #expect(ck_sgemm(0, 0, 4, 5, 4, 1, a, 4, a, 5, 0, &c, 4) == CK_ERR_SHAPE_MISMATCH)  // ldc < n
    }

    @Test("settings and measurement reject out-of-range values")
    func settings() {
        let before = ck_isa_active()
        #expect(ck_isa_force(ck_isa(7)) != CK_OK)
        #expect(ck_isa_active() == before, "a rejected force must not change the path")
        #expect(ck_set_num_threads(0) == CK_ERR_INVALID_SIZE)
        #expect(ck_set_num_threads(-2) == CK_ERR_INVALID_SIZE)
        #expect(ck_blas_set_num_threads(0) == CK_ERR_INVALID_SIZE)
        var rate = 0.0
        #expect(ck_popcount_peak(1, 0.01, nil) == CK_ERR_NULL_POINTER)
        #expect(ck_popcount_peak(0, 0.01, &rate) == CK_ERR_INVALID_SIZE)
        #expect(ck_popcount_peak(1, 0, &rate) == CK_ERR_INVALID_SIZE)
        #expect(ck_popcount_peak(1, .nan, &rate) == CK_ERR_INVALID_SIZE)
        #expect(ck_popcount_peak(1, -1, &rate) == CK_ERR_INVALID_SIZE)
        #expect(ck_fma_peak(1, 0.01, nil) == CK_ERR_NULL_POINTER)
        #expect(ck_fma_peak(0, 0.01, &rate) == CK_ERR_INVALID_SIZE)
        #expect(ck_fma_peak(1, .nan, &rate) == CK_ERR_INVALID_SIZE)
    }

    @Test("every status has its own message")
    func statusMessages() {
        let codes: [ck_status] = [
            CK_OK, CK_ERR_NULL_POINTER, CK_ERR_INVALID_SIZE, CK_ERR_SHAPE_MISMATCH, CK_ERR_OUT_OF_MEMORY,
            CK_ERR_UNSUPPORTED, CK_ERR_BLAS_UNAVAILABLE,
        ]
        let messages = codes.map { String(cString: ck_status_message($0)) }
        #expect(Set(messages).count == codes.count)
        #expect(!String(cString: ck_status_message(ck_status(99))).isEmpty)
    }
}

@Suite struct BadArgumentsInSwift {
    @Test("PackedBits names the wrong argument")
    func packedBits() {
        expectKernelError("rows", CK_ERR_INVALID_SIZE) { _ = try PackedBits(rows: 0, columns: 5) }
        expectKernelError("columns", CK_ERR_INVALID_SIZE) { _ = try PackedBits(signsOf: [], rows: 1, columns: -1) }
        expectKernelError("signsOf", CK_ERR_SHAPE_MISMATCH) { _ = try PackedBits(signsOf: [1, 2, 3], rows: 2, columns: 2) }
        expectKernelError("c", CK_ERR_INVALID_SIZE) { _ = try PackedBits(signsOfNCHW: [], n: 1, c: 0, h: 1, w: 1) }
        expectKernelError("signsOfNCHW", CK_ERR_SHAPE_MISMATCH) {
            _ = try PackedBits(signsOfNCHW: [1, 2, 3], n: 1, c: 2, h: 1, w: 2)
        }
        expectKernelError("words", CK_ERR_SHAPE_MISMATCH) { _ = try PackedBits(words: [0], rows: 2, columns: 3) }
    }

    @Test("bgemm wrappers name the wrong argument")
    func bgemm() throws {
        let b = try PackedBits(rows: 4, columns: 100)
        let weights = try BinaryGEMMWeights(packing: b)
        #expect(weights.rows == 4 && weights.columns == 100)
        expectKernelError("a", CK_ERR_SHAPE_MISMATCH) { _ = try weights.multiply(try PackedBits(rows: 2, columns: 99)) }
        expectKernelError("b", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.bgemm(a: try PackedBits(rows: 2, columns: 64), b: b)
        }
        expectKernelError("packing", CK_ERR_SHAPE_MISMATCH) {
            _ = try [UInt64](repeating: 0, count: 3).withUnsafeBufferPointer {
                try BinaryGEMMWeights(packing: $0, rows: 2, columns: 100)
            }
        }
        let a = [UInt64](repeating: 0, count: 6)
        var out = [Int32](repeating: 0, count: 15)
        func multiply(rows: Int, outCount: Int, stride: Int, aCount: Int = 6) throws {
            try a.withUnsafeBufferPointer { a in
                try out.withUnsafeMutableBufferPointer { out in
                    try weights.multiply(
                        UnsafeBufferPointer(rebasing: a[0..<aCount]), rows: rows,
                        into: UnsafeMutableBufferPointer(rebasing: out[0..<outCount]), rowStride: stride)
                }
            }
        }
        try multiply(rows: 3, outCount: 15, stride: 5)
        try multiply(rows: 3, outCount: 14, stride: 5)  // the last row needs only its 4 results, not a full stride
        expectKernelError("rowStride", CK_ERR_SHAPE_MISMATCH) { try multiply(rows: 3, outCount: 12, stride: 3) }
        expectKernelError("into", CK_ERR_SHAPE_MISMATCH) { try multiply(rows: 3, outCount: 13, stride: 5) }
        expectKernelError("rows", CK_ERR_INVALID_SIZE) { try multiply(rows: 0, outCount: 12, stride: 4) }
        expectKernelError("a", CK_ERR_SHAPE_MISMATCH) { try multiply(rows: 3, outCount: 12, stride: 4, aCount: 5) }
    }

    @Test("ConvGeometry names the wrong field")
    func geometry() throws {
        let good = ConvGeometry(batch: 2, height: 5, width: 6, channels: 3, kernelSize: 3, stride: 2, padding: 1)
        let size = try good.outputSize()
        #expect(size.height == 3 && size.width == 3)
        var g = good
        g.kernelHeight = 8
        expectKernelError("kernelHeight", CK_ERR_SHAPE_MISMATCH) { _ = try g.outputSize() }
        g = good
        g.kernelWidth = 9
        expectKernelError("kernelWidth", CK_ERR_SHAPE_MISMATCH) { _ = try g.outputSize() }
        g = good
        g.strideWidth = 0
        expectKernelError("strideWidth", CK_ERR_INVALID_SIZE) { _ = try g.outputSize() }
        g = good
        g.padHeight = -1
        expectKernelError("padHeight", CK_ERR_INVALID_SIZE) { _ = try g.outputSize() }
        g = good
        g.batch = 0
        expectKernelError("batch", CK_ERR_INVALID_SIZE) { _ = try g.outputSize() }
    }

    @Test("binary convolution and max-pool wrappers name the wrong argument")
    func convolution() throws {
        let g = ConvGeometry(batch: 1, height: 4, width: 4, channels: 8, kernelSize: 3, stride: 1, padding: 1)
        let weights = try BinaryConvWeights(
            oihw: [Float](repeating: -1, count: 5 * 8 * 9), outputChannels: 5, inputChannels: 8, kernelHeight: 3,
            kernelWidth: 3)
        let input = try PackedBits(rows: 16, columns: 8)
        let result = try Kernels.binaryConv2d(input: input, geometry: g, weights: weights)
        #expect(result.integers?.count == 16 * 5 && result.floats == nil && result.bits == nil)

        expectKernelError("oihw", CK_ERR_SHAPE_MISMATCH) {
            _ = try BinaryConvWeights(oihw: [1], outputChannels: 5, inputChannels: 8, kernelHeight: 3, kernelWidth: 3)
        }
        expectKernelError("outputChannels", CK_ERR_INVALID_SIZE) {
            _ = try BinaryConvWeights(oihw: [], outputChannels: 0, inputChannels: 8, kernelHeight: 3, kernelWidth: 3)
        }
        expectKernelError("packedOHWI", CK_ERR_SHAPE_MISMATCH) {
            _ = try BinaryConvWeights(
                packedOHWI: try PackedBits(rows: 44, columns: 8), outputChannels: 5, kernelHeight: 3, kernelWidth: 3)
        }
        var tooLarge = g
        tooLarge.kernelHeight = 7
        expectKernelError("geometry.kernelHeight", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryConv2d(input: input, geometry: tooLarge, weights: weights)
        }
        var otherChannels = g
        otherChannels.channels = 9
        expectKernelError("input", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryConv2d(input: input, geometry: otherChannels, weights: weights)
        }
        expectKernelError("weights", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryConv2d(
                input: try PackedBits(rows: 16, columns: 9), geometry: otherChannels, weights: weights)
        }
        var otherKernel = g
        otherKernel.kernelWidth = 1
        expectKernelError("weights", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryConv2d(input: input, geometry: otherKernel, weights: weights)
        }
        expectKernelError("input", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryConv2d(input: try PackedBits(rows: 15, columns: 8), geometry: g, weights: weights)
        }
        expectKernelError("transform.scale", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryConv2d(
                input: input, geometry: g, weights: weights, transform: OutputTransform(scale: [1, 2], outputs: .floats))
        }
        expectKernelError("transform.bias", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryConv2d(
                input: input, geometry: g, weights: weights, transform: OutputTransform(bias: [1, 2, 3, 4, 5, 6]))
        }
        expectKernelError("transform.residual", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryConv2d(
                input: input, geometry: g, weights: weights, transform: OutputTransform(residual: [0], outputs: .bits))
        }
        expectKernelError("transform.outputs", CK_ERR_NULL_POINTER) {
            _ = try Kernels.binaryConv2d(input: input, geometry: g, weights: weights, transform: OutputTransform(outputs: []))
        }
        expectKernelError("integers", CK_ERR_NULL_POINTER) {
            try input.withUnsafeWords { try Kernels.binaryConv2d(input: $0, geometry: g, weights: weights) }
        }
        expectKernelError("floats", CK_ERR_SHAPE_MISMATCH) {
            var floats = [Float](repeating: 0, count: 79)
            try input.withUnsafeWords { x in
                try floats.withUnsafeMutableBufferPointer {
                    try Kernels.binaryConv2d(input: x, geometry: g, weights: weights, floats: $0)
                }
            }
        }

        expectKernelError("geometry.kernelHeight", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryMaxPool2d(input: input, geometry: tooLarge)
        }
        expectKernelError("input", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryMaxPool2d(input: try PackedBits(rows: 16, columns: 7), geometry: g)
        }
        var widePadding = g
        widePadding.padWidth = 2
        expectKernelError("geometry.padWidth", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.binaryMaxPool2d(input: input, geometry: widePadding)
        }
        expectKernelError("into", CK_ERR_SHAPE_MISMATCH) {
            var out = [UInt64](repeating: 0, count: 3)
            try input.withUnsafeWords { x in
                try out.withUnsafeMutableBufferPointer { try Kernels.binaryMaxPool2d(input: x, geometry: g, into: $0) }
            }
        }
    }

    @Test("float kernel wrappers name the wrong argument")
    func floatKernels() throws {
        let g = ConvGeometry(batch: 1, height: 4, width: 4, channels: 2, kernelSize: 3, stride: 1, padding: 1)
        expectKernelError("input", CK_ERR_SHAPE_MISMATCH) { _ = try Kernels.im2colNHWC(input: [1, 2, 3], geometry: g) }
        var tooLarge = g
        tooLarge.kernelWidth = 7
        expectKernelError("geometry.kernelWidth", CK_ERR_SHAPE_MISMATCH) {
            _ = try Kernels.im2colNHWC(input: [Float](repeating: 0, count: 32), geometry: tooLarge)
        }

        let a = [Float](repeating: 1, count: 12)
        var c = [Float](repeating: 0, count: 9)
        try Kernels.sgemm(transA: false, transB: false, m: 3, n: 3, k: 4, alpha: 1, a: a, lda: 4, b: a, ldb: 3, beta: 0, c: &c, ldc: 3)
        #expect(c == [Float](repeating: 4, count: 9))
        expectKernelError("m", CK_ERR_INVALID_SIZE) {
            try Kernels.sgemm(transA: false, transB: false, m: 0, n: 3, k: 4, alpha: 1, a: a, lda: 4, b: a, ldb: 3, beta: 0, c: &c, ldc: 3)
        }
        expectKernelError("lda", CK_ERR_SHAPE_MISMATCH) {
            try Kernels.sgemm(transA: false, transB: false, m: 3, n: 3, k: 4, alpha: 1, a: a, lda: 3, b: a, ldb: 3, beta: 0, c: &c, ldc: 3)
        }
        expectKernelError("ldb", CK_ERR_SHAPE_MISMATCH) {
            try Kernels.sgemm(transA: false, transB: true, m: 3, n: 3, k: 4, alpha: 1, a: a, lda: 4, b: a, ldb: 3, beta: 0, c: &c, ldc: 3)
        }
        expectKernelError("ldc", CK_ERR_SHAPE_MISMATCH) {
            try Kernels.sgemm(transA: false, transB: false, m: 3, n: 3, k: 4, alpha: 1, a: a, lda: 4, b: a, ldb: 3, beta: 0, c: &c, ldc: 2)
        }
        expectKernelError("a", CK_ERR_SHAPE_MISMATCH) {
            try Kernels.sgemm(transA: false, transB: false, m: 4, n: 3, k: 4, alpha: 1, a: a, lda: 4, b: a, ldb: 3, beta: 0, c: &c, ldc: 3)
        }
        expectKernelError("c", CK_ERR_SHAPE_MISMATCH) {
            try Kernels.sgemm(transA: true, transB: false, m: 4, n: 3, k: 3, alpha: 1, a: a, lda: 4, b: a, ldb: 3, beta: 0, c: &c, ldc: 3)
        }
    }

    @Test("settings name the wrong argument")
    func settings() {
        expectKernelError("count", CK_ERR_INVALID_SIZE) { try Kernels.setThreads(0) }
        expectKernelError("count", CK_ERR_INVALID_SIZE) { try Kernels.setThreads(-1) }
        expectKernelError("count", CK_ERR_INVALID_SIZE) { try Kernels.setBLASThreads(0) }
        expectKernelError("threads", CK_ERR_INVALID_SIZE) { _ = try Kernels.popcountPeak(threads: 0, seconds: 0.01) }
        expectKernelError("seconds", CK_ERR_INVALID_SIZE) { _ = try Kernels.popcountPeak(threads: 1, seconds: 0) }
        expectKernelError("seconds", CK_ERR_INVALID_SIZE) { _ = try Kernels.popcountPeak(threads: 1, seconds: .nan) }
        expectKernelError("threads", CK_ERR_INVALID_SIZE) { _ = try Kernels.fmaPeak(threads: 0, seconds: 0.01) }
        expectKernelError("seconds", CK_ERR_INVALID_SIZE) { _ = try Kernels.fmaPeak(threads: 1, seconds: 0) }
        for path in KernelPath.allCases where !path.isSupported {
            expectKernelError("path", CK_ERR_UNSUPPORTED) { try Kernels.force(path) }
        }
    }
}
