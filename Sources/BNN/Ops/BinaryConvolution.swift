import CKernels

/// Binary 2-d convolution for training: NHWC input `[N, H, W, C]`, OIHW latent weight `[O, C, KH, KW]`, no bias,
/// zero padding; result `[N, OH, OW, O]`.
///
/// The forward uses α·sign(W) with α = mean|W| over the whole weight (one scalar) and sign(0) = +1. With
/// `binarizeInput` (1W1A) the input is sign(x) too and the convolution runs on packed bits: the result is exactly
/// α × the integer ±1 dot product, padded positions counting 0. Without it (1W32A) the real input is convolved in
/// float with α·sign(W).
///
/// Backward, with G the result's gradient, Xb = sign(x) (1W1A) or x, Wb = α·sign(W):
/// dL/dXb = col2im(G·Wb) and dL/dWb = Gᵀ·im2col(Xb) (float convolutions, direct or through im2col as
/// `ConvolutionPlan` chooses); dL/dx = `estimator` applied to dL/dXb at x
/// (1W1A; inside the direct input-gradient kernel for the library's estimators, else as a separate pass) or dL/dXb
/// itself (1W32A); dL/dW = α·r'(W)⊙dL/dWb + sign(W)/N·Σ(dL/dWb⊙sign(W)), the second term being
/// the gradient through α (docs/method.md §1). The estimator is the value passed here, as it was at the forward.
public func binaryConv2d(
    _ x: Tensor, weight: Tensor, stride: Int, padding: Int, estimator: any SignEstimator, binarizeInput: Bool
) throws -> Tensor {
    let operation = "binaryConv2d"
    try requireRank(x, 4, "input", of: operation, layout: "[N, H, W, C]")
    try requireRank(weight, 4, "weight", of: operation, layout: "[O, C, KH, KW]")
    try requireNonEmpty(x, "input", of: operation)
    try requireNonEmpty(weight, "weight", of: operation)
    let channels = x.shape[3]
    let (outChannels, kernelH, kernelW) = (weight.shape[0], weight.shape[2], weight.shape[3])
    guard weight.shape[1] == channels else {
        throw BNNError(.tensor, 
            "binaryConv2d: `weight` \(weight.shape) expects \(weight.shape[1]) input channels but `input` \(x.shape) "
                + "has \(channels) (input is NHWC)")
    }
    let geometry = try windowGeometry(
        input: x.shape, kernel: (kernelH, kernelW), stride: stride, padding: padding, operation: operation)
    let mode = binarizeInput ? "1W1A" : "1W32A"
    let plan = ConvolutionPlan(
        geometry: geometry.geometry, outputHeight: geometry.outputHeight, outputWidth: geometry.outputWidth,
        outChannels: outChannels,
        context: "binaryConv2d \(mode)(input \(x.shape), weight \(weight.shape), stride \(stride), padding \(padding))")
    let weightCount = weight.count

    var meanAbs = 0.0
    try check(ck_abs_moments_f32(weight.pointer, Int64(weightCount), &meanAbs, nil), "\(plan.context): α")
    let alpha = Float(meanAbs)

    let result = Tensor(uninitializedShape: [plan.batch, plan.outputHeight, plan.outputWidth, outChannels])
    // 1W32A needs α·sign(W) as float rows for its forward GEMM; 1W1A only in the backward, so it waits until then.
    var binaryWeightRows: Tensor?
    if binarizeInput {
        try packedForward(x, weight: weight, alpha: alpha, plan: plan, output: result)
    } else {
        let rows = try scaledSignRows(weight, alpha: alpha, plan: plan)
        try plan.forward(input: x.pointer, weightRows: rows.pointer, accumulate: false, output: result.pointer)
        binaryWeightRows = rows
    }
    GraphTracer.record(
        .binaryConv2d(kernel: kernelH, stride: stride, padding: padding, binarizeInput: binarizeInput), inputs: [x],
        result: result, parameters: [("weight", weight)])
    guard Tensor.isRecording([x, weight]) else { return result }

    result.record(operation, inputs: [x, weight]) { gradient in
        let weightRows = try binaryWeightRows ?? scaledSignRows(weight, alpha: alpha, plan: plan)
        // dL/dWb reads sign(x) in 1W1A: the plan takes the signs as it reads x.
        let binaryWeightGradient = weight.requiresGrad ? Tensor(uninitializedShape: [outChannels, plan.depth]) : nil

        if x.requiresGrad && binarizeInput && plan.directInputGradient, let rule = kernelRule(of: estimator) {
            // The estimator inside the input-gradient kernel: the same floats as the separate pass below, without a
            // dL/dXb buffer the size of x written and read back. (No faster on ResNet-20, where ReSTE's r' costs
            // arithmetic rather than memory traffic; docs/benchmarks.md.)
            try x.accumulateGradient { buffer, accumulate in
                try plan.backward(
                    input: x.pointer, signInput: true, weightRows: weightRows.pointer, gradient: gradient.pointer,
                    weightGradient: binaryWeightGradient?.pointer, inputGradient: buffer.baseAddress!,
                    accumulateInput: accumulate, estimator: rule)
            }
        } else if x.requiresGrad && binarizeInput {
            let binaryInputGradient = Tensor(uninitializedShape: x.shape)
            try plan.backward(
                input: x.pointer, signInput: true, weightRows: weightRows.pointer, gradient: gradient.pointer,
                weightGradient: binaryWeightGradient?.pointer, inputGradient: binaryInputGradient.pointer,
                accumulateInput: false)
            x.accumulateGradient { buffer, accumulate in
                estimator.backward(
                    input: x.pointer, gradOutput: binaryInputGradient.pointer, gradInput: buffer.baseAddress!,
                    count: x.count, accumulate: accumulate)
            }
        } else if x.requiresGrad {
            try x.accumulateGradient { buffer, accumulate in
                try plan.backward(
                    input: x.pointer, weightRows: weightRows.pointer, gradient: gradient.pointer,
                    weightGradient: binaryWeightGradient?.pointer, inputGradient: buffer.baseAddress!,
                    accumulateInput: accumulate)
            }
        } else {
            try plan.backward(
                input: x.pointer, signInput: binarizeInput, weightRows: weightRows.pointer, gradient: gradient.pointer,
                weightGradient: binaryWeightGradient?.pointer, inputGradient: nil, accumulateInput: false)
        }

        if let binaryWeightGradient {
            try latentWeightGradient(
                binaryWeightGradient, weight: weight, alpha: alpha, estimator: estimator, plan: plan)
        }
    }
    return result
}

/// 1W1A forward: packs sign(W) and sign(x), runs the XNOR-popcount convolution and writes α·acc as floats.
private func packedForward(_ x: Tensor, weight: Tensor, alpha: Float, plan: ConvolutionPlan, output: Tensor) throws {
    let geometry = plan.geometry
    let weights = try BinaryConvWeights(
        oihw: UnsafeBufferPointer(start: weight.pointer, count: weight.count), outputChannels: plan.outChannels,
        inputChannels: geometry.channels, kernelHeight: geometry.kernelHeight, kernelWidth: geometry.kernelWidth)
    let pixels = geometry.inputPixels
    let words = pixels * wordCount(bits: geometry.channels)
    // Packed words live in a tensor buffer (two floats per word) so that training reuses the same memory each
    // step instead of mapping fresh pages.
    let packed = Tensor(uninitializedShape: [2 * words])
    let scale = [Float](repeating: alpha, count: plan.outChannels)
    try packed.pointer.withMemoryRebound(to: UInt64.self, capacity: words) { bits in
        let bits = UnsafeMutableBufferPointer(start: bits, count: words)
        try Kernels.packSigns(
            UnsafeBufferPointer(start: x.pointer, count: x.count), rows: pixels, columns: geometry.channels, into: bits)
        try scale.withUnsafeBufferPointer { scale in
            try Kernels.binaryConv2d(
                input: UnsafeBufferPointer(bits), geometry: geometry, weights: weights, scale: scale,
                floats: UnsafeMutableBufferPointer(start: output.pointer, count: output.count))
        }
    }
    withExtendedLifetime(packed) {}
}

/// α·sign(W) in the GEMM's row layout `[O, KH·KW·C]` (OHWI), matching im2col's column order (kh, kw, c).
private func scaledSignRows(_ weight: Tensor, alpha: Float, plan: ConvolutionPlan) throws -> Tensor {
    let rows = Tensor(uninitializedShape: [plan.outChannels, plan.depth])
    try check(
        ck_batched_transpose_f32(
            weight.pointer, Int64(plan.outChannels), plan.shape.channels, Int64(plan.taps), 0, rows.pointer),
        "\(plan.context): weight rows")
    try check(ck_sign_f32(rows.pointer, Int64(rows.count), alpha, 0, rows.pointer), "\(plan.context): α·sign(W)")
    return rows
}

/// dL/dW = α·r'(W)⊙dL/dWb + sign(W)/N·Σ(dL/dWb⊙sign(W)), from dL/dWb in OHWI rows.
private func latentWeightGradient(
    _ binaryGradientRows: Tensor, weight: Tensor, alpha: Float, estimator: any SignEstimator, plan: ConvolutionPlan
) throws {
    let count = weight.count
    let context = "\(plan.context) backward dW"
    // OHWI → OIHW, the latent weight's layout.
    let binaryGradient = Tensor(uninitializedShape: weight.shape)
    try check(
        ck_batched_transpose_f32(
            binaryGradientRows.pointer, Int64(plan.outChannels), Int64(plan.taps), plan.shape.channels, 0,
            binaryGradient.pointer),
        context)
    var throughAlpha = 0.0
    try check(ck_sign_dot_f32(weight.pointer, binaryGradient.pointer, Int64(count), &throughAlpha), context)
    // dL/d sign(W) = α·dL/dWb, which the estimator carries to W.
    try check(ck_axpby_f32(Int64(count), alpha, binaryGradient.pointer, 0, binaryGradient.pointer), context)
    try weight.accumulateGradient { buffer, accumulate in
        estimator.backward(
            input: weight.pointer, gradOutput: binaryGradient.pointer, gradInput: buffer.baseAddress!, count: count,
            accumulate: accumulate)
        try check(
            ck_sign_f32(weight.pointer, Int64(count), Float(throughAlpha / Double(count)), 1, buffer.baseAddress!),
            "\(context) through α")
    }
}
