import CKernels

/// 2-d cross-correlation as `torch.nn.functional.conv2d`, on an NHWC input `[N, H, W, C]` with PyTorch's OIHW
/// weight `[O, C, KH, KW]` and optional bias `[O]`, zero padding on each side; result `[N, OH, OW, O]`.
///
/// Forward: im2col (rows = output pixels, columns ordered (kh, kw, c)) times the weight reordered to OHWI.
/// Backward: dW = gᵀ·columns, dX = col2im(g·W), db = column sums of g.
public func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0) throws
    -> Tensor
{
    let operation = "conv2d"
    try requireRank(input, 4, "input", of: operation, layout: "[N, H, W, C]")
    try requireRank(weight, 4, "weight", of: operation, layout: "[O, C, KH, KW]")
    try requireNonEmpty(input, "input", of: operation)
    try requireNonEmpty(weight, "weight", of: operation)
    let (batch, channels) = (input.shape[0], input.shape[3])
    let (outChannels, kernelH, kernelW) = (weight.shape[0], weight.shape[2], weight.shape[3])
    guard weight.shape[1] == channels else {
        throw TensorError(
            "conv2d: `weight` \(weight.shape) expects \(weight.shape[1]) input channels but `input` \(input.shape) "
                + "has \(channels) (input is NHWC)")
    }
    if let bias {
        try requireShape(bias, [outChannels], "bias", of: operation, because: "one value per output channel")
    }
    let geometry = try windowGeometry(
        input: input.shape, kernel: (kernelH, kernelW), stride: stride, padding: padding, operation: operation)
    var shape = geometry.shape
    let (outH, outW) = (geometry.outputHeight, geometry.outputWidth)
    let rows = batch * outH * outW
    let taps = kernelH * kernelW
    let depth = taps * channels
    let context = "conv2d(input \(input.shape), weight \(weight.shape), stride \(stride), padding \(padding))"

    // OIHW → OHWI so that a weight row matches an im2col row (kh, kw, c).
    let weightRows = Tensor(uninitializedShape: [outChannels, depth])
    try check(
        ck_batched_transpose_f32(
            weight.pointer, Int64(outChannels), Int64(channels), Int64(taps), 0, weightRows.pointer),
        context)
    // A 1×1 stride-1 unpadded convolution reads the input as its own column matrix.
    let direct = kernelH == 1 && kernelW == 1 && stride == 1 && padding == 0
    let columns: Tensor
    if direct {
        columns = input
    } else {
        columns = Tensor(uninitializedShape: [rows, depth])
        try check(ck_im2col_nhwc_f32(input.pointer, &shape, columns.pointer), context)
    }
    let result = Tensor(uninitializedShape: [batch, outH, outW, outChannels])
    if let bias {
        try check(ck_broadcast_rows_f32(bias.pointer, Int64(rows), Int64(outChannels), result.pointer), context)
    }
    try sgemm(
        transposeA: false, transposeB: true, m: rows, n: outChannels, k: depth, a: columns.pointer, lda: depth,
        b: weightRows.pointer, ldb: depth, beta: bias == nil ? 0 : 1, c: result.pointer, ldc: outChannels, context)
    withExtendedLifetime((weightRows, columns)) {}

    guard Tensor.isRecording([input, weight, bias]) else { return result }
    // Columns are kept only when the weight gradient needs them.
    let savedColumns = weight.requiresGrad ? columns : nil
    result.record(operation, inputs: [input, weight, bias]) { gradient in
        let g = gradient.pointer
        if weight.requiresGrad, let savedColumns {
            let weightGradient = Tensor(uninitializedShape: [outChannels, depth])
            try sgemm(
                transposeA: true, transposeB: false, m: outChannels, n: depth, k: rows, a: g, lda: outChannels,
                b: savedColumns.pointer, ldb: depth, beta: 0, c: weightGradient.pointer, ldc: depth,
                "\(context) backward dW")
            try weight.accumulateGradient { buffer, accumulate in
                try check(
                    ck_batched_transpose_f32(
                        weightGradient.pointer, Int64(outChannels), Int64(taps), Int64(channels), accumulate ? 1 : 0,
                        buffer.baseAddress!),
                    "\(context) backward dW")
            }
            withExtendedLifetime(weightGradient) {}
        }
        if let bias, bias.requiresGrad {
            var sums = [Float](repeating: 0, count: outChannels)
            try check(
                ck_channel_sums_f32(g, nil, nil, Int64(rows), Int64(outChannels), &sums, nil), "\(context) backward db")
            accumulateChannels(sums, into: bias)
        }
        if input.requiresGrad {
            if direct {
                try input.accumulateGradient { buffer, accumulate in
                    try sgemm(
                        transposeA: false, transposeB: false, m: rows, n: depth, k: outChannels, a: g, lda: outChannels,
                        b: weightRows.pointer, ldb: depth, beta: accumulate ? 1 : 0, c: buffer.baseAddress!, ldc: depth,
                        "\(context) backward dX")
                }
            } else {
                let columnGradient = Tensor(uninitializedShape: [rows, depth])
                try sgemm(
                    transposeA: false, transposeB: false, m: rows, n: depth, k: outChannels, a: g, lda: outChannels,
                    b: weightRows.pointer, ldb: depth, beta: 0, c: columnGradient.pointer, ldc: depth,
                    "\(context) backward dX")
                try input.accumulateGradient { buffer, accumulate in
                    var shape = shape
                    try check(
                        ck_col2im_nhwc_f32(columnGradient.pointer, &shape, accumulate ? 1 : 0, buffer.baseAddress!),
                        "\(context) backward dX")
                }
                withExtendedLifetime(columnGradient) {}
            }
        }
    }
    return result
}
