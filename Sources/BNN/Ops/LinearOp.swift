import CKernels

/// Fully connected layer as `torch.nn.functional.linear`: x `[N, in]` · weightᵀ (`[out, in]`) + bias `[out]`.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) throws -> Tensor {
    try requireRank(x, 2, "x", of: "linear", layout: "[N, in]")
    try requireRank(weight, 2, "weight", of: "linear", layout: "[out, in]")
    try requireNonEmpty(x, "x", of: "linear")
    try requireNonEmpty(weight, "weight", of: "linear")
    let (batch, inFeatures, outFeatures) = (x.shape[0], x.shape[1], weight.shape[0])
    guard weight.shape[1] == inFeatures else {
        throw BNNError(.tensor, 
            "linear: `weight` \(weight.shape) expects \(weight.shape[1]) input features but `x` \(x.shape) has "
                + "\(inFeatures)"
        )
    }
    if let bias { try requireShape(bias, [outFeatures], "bias", of: "linear", because: "one value per output feature") }
    let context = "linear(x \(x.shape), weight \(weight.shape))"
    let result = Tensor(uninitializedShape: [batch, outFeatures])
    if let bias {
        try check(ck_broadcast_rows_f32(bias.pointer, Int64(batch), Int64(outFeatures), result.pointer), context)
    }
    try Kernels.sgemm(
        transA: false, transB: true, m: batch, n: outFeatures, k: inFeatures, a: x.pointer, lda: inFeatures,
        b: weight.pointer, ldb: inFeatures, beta: bias == nil ? 0 : 1, c: result.pointer, ldc: outFeatures, context: context)
    GraphTracer.record(.linear(bias: bias != nil), inputs: [x], result: result, parameters: [("weight", weight), ("bias", bias)])
    result.record("linear", inputs: [x, weight, bias]) { gradient in
        let g = gradient.pointer
        if x.requiresGrad {
            try x.accumulateGradient { buffer, accumulate in
                try Kernels.sgemm(
                    transA: false, transB: false, m: batch, n: inFeatures, k: outFeatures, a: g,
                    lda: outFeatures, b: weight.pointer, ldb: inFeatures, beta: accumulate ? 1 : 0,
                    c: buffer.baseAddress!, ldc: inFeatures, context: "\(context) backward dX")
            }
        }
        if weight.requiresGrad {
            try weight.accumulateGradient { buffer, accumulate in
                try Kernels.sgemm(
                    transA: true, transB: false, m: outFeatures, n: inFeatures, k: batch, a: g,
                    lda: outFeatures, b: x.pointer, ldb: inFeatures, beta: accumulate ? 1 : 0,
                    c: buffer.baseAddress!, ldc: inFeatures, context: "\(context) backward dW")
            }
        }
        if let bias, bias.requiresGrad {
            var sums = [Float](repeating: 0, count: outFeatures)
            try check(
                ck_channel_sums_f32(g, nil, nil, Int64(batch), Int64(outFeatures), &sums, nil), "\(context) backward db"
            )
            accumulateChannels(sums, into: bias)
        }
    }
    return result
}
