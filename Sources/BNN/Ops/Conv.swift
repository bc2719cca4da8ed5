import CKernels

/// Input channels up to which `conv2d` (without bias) convolves directly rather than through im2col + GEMM.
let directConvolutionChannels = 4

/// 2-d cross-correlation as `torch.nn.functional.conv2d`, on an NHWC input `[N, H, W, C]` with PyTorch's OIHW
/// weight `[O, C, KH, KW]` and optional bias `[O]`, zero padding on each side; result `[N, OH, OW, O]`.
///
/// Forward: a direct convolution or im2col (rows = output pixels, columns ordered (kh, kw, c)) times the weight
/// reordered to OHWI, whichever `ConvolutionPlan` finds faster for the shape; with few input channels and no bias,
/// the packed engine's direct convolution (`ck_conv2d_direct_f32`) instead.
/// Backward: dW = gᵀ·columns, dX = col2im(g·W) (directly or through im2col, as the plan chooses), db = column
/// sums of g.
public func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0) throws
    -> Tensor
{
    let operation = "conv2d"
    try requireRank(input, 4, "input", of: operation, layout: "[N, H, W, C]")
    try requireRank(weight, 4, "weight", of: operation, layout: "[O, C, KH, KW]")
    try requireNonEmpty(input, "input", of: operation)
    try requireNonEmpty(weight, "weight", of: operation)
    let channels = input.shape[3]
    let (outChannels, kernelH, kernelW) = (weight.shape[0], weight.shape[2], weight.shape[3])
    guard weight.shape[1] == channels else {
        throw BNNError(.tensor, 
            "conv2d: `weight` \(weight.shape) expects \(weight.shape[1]) input channels but `input` \(input.shape) "
                + "has \(channels) (input is NHWC)")
    }
    if let bias {
        try requireShape(bias, [outChannels], "bias", of: operation, because: "one value per output channel")
    }
    let geometry = try windowGeometry(
        input: input.shape, kernel: (kernelH, kernelW), stride: stride, padding: padding, operation: operation)
    let plan = ConvolutionPlan(
        geometry: geometry.geometry, outputHeight: geometry.outputHeight, outputWidth: geometry.outputWidth,
        outChannels: outChannels,
        context: "conv2d(input \(input.shape), weight \(weight.shape), stride \(stride), padding \(padding))")

    // OIHW → OHWI so that a weight row matches an im2col row (kh, kw, c).
    let weightRows = Tensor(uninitializedShape: [outChannels, plan.depth])
    try check(
        ck_batched_transpose_f32(
            weight.pointer, Int64(outChannels), Int64(channels), Int64(plan.taps), 0, weightRows.pointer),
        plan.context)
    let result = Tensor(uninitializedShape: [plan.batch, plan.outputHeight, plan.outputWidth, outChannels])
    let recording = Tensor.isRecording([input, weight, bias])
    if channels <= directConvolutionChannels || !recording {
        // The packed engine's order of additions, so that a packed network reproduces the evaluation graph float
        // for float: a stem (few input channels) by the engine's direct convolution, always; any other
        // convolution, when nothing is recorded, by the training's direct kernel, which the engine runs for such
        // layers whatever the plan would choose for speed. The bias is added after the sum, as the engine does.
        var shape = plan.shape
        if channels <= directConvolutionChannels {
            try check(
                ck_conv2d_direct_f32(input.pointer, &shape, weightRows.pointer, Int64(outChannels), result.pointer),
                plan.context)
        } else {
            try check(
                ck_conv2d_forward_f32(input.pointer, &shape, weightRows.pointer, Int64(outChannels), 0, result.pointer),
                plan.context)
        }
        if let bias {
            let ones = [Float](repeating: 1, count: outChannels)
            try check(
                ck_channel_affine_f32(
                    result.pointer, Int64(plan.rows), Int64(outChannels), ones, bias.scalars, result.pointer),
                plan.context)
        }
    } else {
        if let bias {
            try check(
                ck_broadcast_rows_f32(bias.pointer, Int64(plan.rows), Int64(outChannels), result.pointer), plan.context)
        }
        try plan.forward(
            input: input.pointer, weightRows: weightRows.pointer, accumulate: bias != nil, output: result.pointer)
    }
    GraphTracer.record(
        .conv2d(kernel: kernelH, stride: stride, padding: padding, bias: bias != nil), inputs: [input], result: result,
        parameters: [("weight", weight), ("bias", bias)])
    guard recording else { return result }

    result.record(operation, inputs: [input, weight, bias]) { gradient in
        let weightGradient = weight.requiresGrad ? Tensor(uninitializedShape: [outChannels, plan.depth]) : nil
        if input.requiresGrad {
            try input.accumulateGradient { buffer, accumulate in
                try plan.backward(
                    input: input.pointer, weightRows: weightRows.pointer, gradient: gradient.pointer,
                    weightGradient: weightGradient?.pointer, inputGradient: buffer.baseAddress!,
                    accumulateInput: accumulate)
            }
        } else {
            try plan.backward(
                input: input.pointer, weightRows: weightRows.pointer, gradient: gradient.pointer,
                weightGradient: weightGradient?.pointer, inputGradient: nil, accumulateInput: false)
        }
        if let weightGradient {
            // OHWI → OIHW.
            try weight.accumulateGradient { buffer, accumulate in
                try check(
                    ck_batched_transpose_f32(
                        weightGradient.pointer, Int64(outChannels), Int64(plan.taps), Int64(channels),
                        accumulate ? 1 : 0, buffer.baseAddress!),
                    "\(plan.context) backward dW")
            }
        }
        if let bias, bias.requiresGrad {
            var sums = [Float](repeating: 0, count: outChannels)
            try check(
                ck_channel_sums_f32(gradient.pointer, nil, nil, Int64(plan.rows), Int64(outChannels), &sums, nil),
                "\(plan.context) backward db")
            accumulateChannels(sums, into: bias)
        }
        withExtendedLifetime(weightRows) {}
    }
    return result
}

/// How one convolution computes its forward and gradients: direct kernels (`ck_conv2d_forward_f32`,
/// `ck_conv2d_backward_input_f32`, `ck_conv2d_backward_weight_f32`) where they are faster, else im2col + sgemm
/// in chunks of whole images.
///
/// Direct kernels vectorise one channel dimension (16 channels per AVX-512 register): the output channels in the
/// forward, the input channels in the input gradient, whichever fills its vectors better in the weight gradient.
/// Measured at batch 256 on 2 threads (AVX-512), they beat im2col + sgemm on every 3×3 layer of ResNet-20 (16–64
/// channels at 32×32 to 8×8) by 1.3–7×, the stem's weight gradient (3 → 16 channels) by 10×, and still on 3×3
/// layers of 96 and 128 channels; at 256 channels the two are even, and with fewer than 8 vectorised channels most
/// lanes are padding (the input gradient of a 3-channel stem ran 1.6× slower). On the AVX2 path (against
/// OpenBLAS's AVX2 kernels) they win up to 64 channels and lose by 1.2–1.5× at 128. So a pass uses them when its
/// vectorised channels are at least 8 and neither channel count exceeds 128 on an AVX-512 CPU or 64 on an AVX2
/// one; without AVX2, sgemm (which has its own vector code) stays. The choice follows the CPU, not the path in
/// force (`BNN_ISA`, tests), and the kernels' paths give identical bits, so forcing a path changes no result.
/// A 1×1 stride-1 unpadded convolution stays on sgemm: its input is already the column matrix.
///
/// On the im2col path the full column matrix is KH·KW times the input (150 MB for a 3×3 layer of 16 channels at
/// batch 256 on 32×32). Chunks of about `chunkBytes` of columns are built, used by the GEMM while still in cache,
/// and rebuilt in the backward pass instead of being kept: less memory traffic and no per-layer buffer of that
/// size.
struct ConvolutionPlan {
    /// How a pass is computed.
    enum Lowering: Sendable {
        /// The direct kernels where they are faster, im2col + sgemm elsewhere (the default).
        case automatic
        /// im2col + sgemm for every pass (tests use it to check that path on shapes the default sends elsewhere).
        case im2col
        /// The direct kernels for every pass except a 1×1 convolution that reads its input as its columns.
        case direct
    }

    /// Target size of one chunk of columns: well inside the L3 cache of current x86 CPUs.
    static let chunkBytes = 4 << 20
    /// Replaces `chunkBytes` within a task (tests use it to split small convolutions into one image per chunk).
    @TaskLocal static var chunkBytesOverride: Int?
    /// Replaces `.automatic` within a task (tests and benchmarks).
    @TaskLocal static var loweringOverride: Lowering?
    /// Fewest vectorised channels for which the direct kernels are used.
    static let directMinimumChannels = 8

    /// Most channels on either side for which the direct kernels are used on this CPU (0: never).
    static let directMaximumChannels: Int = {
        switch ck_isa_best() {
        case CK_ISA_AVX512: 128
        case CK_ISA_AVX2: 64
        default: 0
        }
    }()

    /// The input and window.
    let geometry: ConvGeometry
    /// The same, for the C kernels.
    let shape: ck_conv_shape
    let outputHeight: Int, outputWidth: Int, outChannels: Int
    let batch: Int, taps: Int, depth: Int, rows: Int
    /// Input floats per image and output rows per image.
    let inputStride: Int, rowsPerImage: Int
    /// A 1×1 stride-1 unpadded convolution reads the input as its own column matrix.
    let direct: Bool
    /// Which passes run on the direct kernels.
    let directForward: Bool, directInputGradient: Bool, directWeightGradient: Bool
    let imagesPerChunk: Int
    let context: String

    init(geometry: ConvGeometry, outputHeight: Int, outputWidth: Int, outChannels: Int, context: String) {
        self.geometry = geometry
        shape = geometry.cShape
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
        self.outChannels = outChannels
        self.context = context
        batch = Int(shape.batch)
        taps = Int(shape.kernel_h * shape.kernel_w)
        depth = taps * Int(shape.channels)
        rowsPerImage = outputHeight * outputWidth
        rows = batch * rowsPerImage
        inputStride = Int(shape.height * shape.width * shape.channels)
        direct = taps == 1 && shape.stride_h == 1 && shape.stride_w == 1 && shape.pad_h == 0 && shape.pad_w == 0
        let channels = Int(shape.channels)
        switch Self.loweringOverride ?? .automatic {
        case .automatic:
            let fits = !direct && max(channels, outChannels) <= Self.directMaximumChannels
            directForward = fits && outChannels >= Self.directMinimumChannels
            directInputGradient = fits && channels >= Self.directMinimumChannels
            directWeightGradient = fits && max(channels, outChannels) >= Self.directMinimumChannels
        case .im2col:
            (directForward, directInputGradient, directWeightGradient) = (false, false, false)
        case .direct:
            (directForward, directInputGradient, directWeightGradient) = (!direct, !direct, !direct)
        }
        let bytesPerImage = rowsPerImage * depth * MemoryLayout<Float>.stride
        imagesPerChunk =
            direct ? batch : max(1, min(batch, (Self.chunkBytesOverride ?? Self.chunkBytes) / max(bytesPerImage, 1)))
    }

    /// Geometry of the chunk of `images` images.
    private func chunkGeometry(_ images: Int) -> ConvGeometry {
        var chunk = geometry
        chunk.batch = images
        return chunk
    }

    /// output (= or +=) columns · weightRowsᵀ, `[rows, outChannels]`.
    func forward(
        input: UnsafePointer<Float>, weightRows: UnsafePointer<Float>, accumulate: Bool,
        output: UnsafeMutablePointer<Float>
    ) throws {
        if directForward {
            var shape = shape
            try check(
                ck_conv2d_forward_f32(input, &shape, weightRows, Int64(outChannels), accumulate ? 1 : 0, output),
                context)
            return
        }
        if direct {
            try Kernels.sgemm(
                transA: false, transB: true, m: rows, n: outChannels, k: depth, a: input, lda: depth,
                b: weightRows, ldb: depth, beta: accumulate ? 1 : 0, c: output, ldc: outChannels, context: context)
            return
        }
        let columns = Tensor(uninitializedShape: [imagesPerChunk * rowsPerImage, depth])
        for first in stride(from: 0, to: batch, by: imagesPerChunk) {
            let images = min(imagesPerChunk, batch - first)
            try Kernels.im2colNHWC(
                input: input + first * inputStride, geometry: chunkGeometry(images), into: columns.pointer,
                context: context)
            try Kernels.sgemm(
                transA: false, transB: true, m: images * rowsPerImage, n: outChannels, k: depth,
                a: columns.pointer, lda: depth, b: weightRows, ldb: depth, beta: accumulate ? 1 : 0,
                c: output + first * rowsPerImage * outChannels, ldc: outChannels, context: context)
        }
        withExtendedLifetime(columns) {}
    }

    /// weightGradient (OHWI, overwritten) = gradientᵀ · columns; inputGradient (= or +=) col2im(gradient ·
    /// weightRows). Either output may be nil. With `signInput` the columns are those of sign(input) (±1, +1 for
    /// 0), as a binary convolution's forward saw them: the direct kernel takes the signs as it reads the input,
    /// the other paths materialise them first. With `estimator` (only on `directInputGradient`), inputGradient
    /// (= or +=) r'(input)·col2im(gradient · weightRows) instead, the estimator applied by the kernel.
    func backward(
        input: UnsafePointer<Float>, signInput: Bool = false, weightRows: UnsafePointer<Float>,
        gradient: UnsafePointer<Float>, weightGradient: UnsafeMutablePointer<Float>?,
        inputGradient: UnsafeMutablePointer<Float>?, accumulateInput: Bool, estimator: ck_estimator? = nil
    ) throws {
        precondition(estimator == nil || directInputGradient, "\(context): an estimator needs the direct input gradient")
        var weightGradient = weightGradient, inputGradient = inputGradient
        var shape = shape
        if directWeightGradient, let output = weightGradient {
            try check(
                ck_conv2d_backward_weight_f32(input, &shape, gradient, Int64(outChannels), signInput ? 1 : 0, output),
                "\(context) backward dW")
            weightGradient = nil
        }
        if directInputGradient, let output = inputGradient {
            if var estimator {
                try check(
                    ck_conv2d_backward_sign_input_f32(
                        gradient, &shape, weightRows, Int64(outChannels), input, &estimator, accumulateInput ? 1 : 0,
                        output),
                    "\(context) backward dX")
            } else {
                try check(
                    ck_conv2d_backward_input_f32(
                        gradient, &shape, weightRows, Int64(outChannels), accumulateInput ? 1 : 0, output),
                    "\(context) backward dX")
            }
            inputGradient = nil
        }
        // What is left goes through sgemm.
        guard weightGradient != nil || inputGradient != nil else { return }
        var signs: Tensor?
        if signInput && weightGradient != nil {
            let count = batch * inputStride
            let materialised = Tensor(uninitializedShape: [count])
            try check(ck_sign_f32(input, Int64(count), 1, 0, materialised.pointer), "\(context) backward")
            signs = materialised
        }
        let columnsSource = UnsafePointer(signs?.pointer) ?? input
        if direct {
            if let weightGradient {
                try Kernels.sgemm(
                    transA: true, transB: false, m: outChannels, n: depth, k: rows, a: gradient,
                    lda: outChannels, b: columnsSource, ldb: depth, beta: 0, c: weightGradient, ldc: depth, context: "\(context) backward dW")
            }
            if let inputGradient {
                try Kernels.sgemm(
                    transA: false, transB: false, m: rows, n: depth, k: outChannels, a: gradient,
                    lda: outChannels, b: weightRows, ldb: depth, beta: accumulateInput ? 1 : 0, c: inputGradient,
                    ldc: depth, context: "\(context) backward dX")
            }
            withExtendedLifetime(signs) {}
            return
        }
        let chunkRows = imagesPerChunk * rowsPerImage
        let columns = weightGradient != nil ? Tensor(uninitializedShape: [chunkRows, depth]) : nil
        let columnGradient = inputGradient != nil ? Tensor(uninitializedShape: [chunkRows, depth]) : nil
        for first in stride(from: 0, to: batch, by: imagesPerChunk) {
            let images = min(imagesPerChunk, batch - first)
            let chunk = chunkGeometry(images)
            var chunkShape = chunk.cShape
            let g = gradient + first * rowsPerImage * outChannels
            if let weightGradient, let columns {
                try Kernels.im2colNHWC(
                    input: columnsSource + first * inputStride, geometry: chunk, into: columns.pointer,
                    context: context)
                try Kernels.sgemm(
                    transA: true, transB: false, m: outChannels, n: depth, k: images * rowsPerImage, a: g,
                    lda: outChannels, b: columns.pointer, ldb: depth, beta: first == 0 ? 0 : 1, c: weightGradient,
                    ldc: depth, context: "\(context) backward dW")
            }
            if let inputGradient, let columnGradient {
                try Kernels.sgemm(
                    transA: false, transB: false, m: images * rowsPerImage, n: depth, k: outChannels, a: g,
                    lda: outChannels, b: weightRows, ldb: depth, beta: 0, c: columnGradient.pointer, ldc: depth, context: "\(context) backward dX")
                try check(
                    ck_col2im_nhwc_f32(
                        columnGradient.pointer, &chunkShape, accumulateInput ? 1 : 0, inputGradient + first * inputStride),
                    "\(context) backward dX")
            }
        }
        withExtendedLifetime((columns, columnGradient, signs)) {}
    }
}
