import CKernels

/// The same elements under another shape (row-major order unchanged; one size may be -1 to be inferred).
/// Shares memory with `x`.
public func reshape(_ x: Tensor, to shape: [Int]) throws -> Tensor {
    var target = shape
    let inferred = shape.indices.filter { shape[$0] == -1 }
    guard inferred.count <= 1 else { throw BNNError(.tensor, "reshape: at most one size may be -1, got \(shape)") }
    if let index = inferred.first {
        let known = try Tensor.elementCount(shape.enumerated().map { $0.offset == index ? 1 : $0.element }, "reshape")
        guard known > 0, x.count % known == 0 else {
            throw BNNError(.tensor, "reshape: cannot infer the -1 in \(shape) for \(x.count) elements (from \(x.shape))")
        }
        target[index] = x.count / known
    }
    guard try Tensor.elementCount(target, "reshape") == x.count else {
        throw BNNError(.tensor, "reshape: shape \(shape) does not hold the \(x.count) elements of shape \(x.shape)")
    }
    let result = Tensor(storage: x.storage, shape: target)
    GraphTracer.record(.reshape, inputs: [x], result: result)
    result.record("reshape", inputs: [x]) { gradient in try x.accumulateGradient(gradient) }
    return result
}

/// Flattens all but the first dimension in PyTorch's order, so a PyTorch-trained linear layer after it reads
/// the same features: an NHWC `[N, H, W, C]` becomes `[N, C·H·W]` ordered (c, h, w), like `torch.flatten(x, 1)`
/// on NCHW. Other ranks flatten in place (rank 2 is returned unchanged).
public func flatten(_ x: Tensor) throws -> Tensor {
    guard x.rank >= 1 else { throw BNNError(.tensor, "flatten: needs at least one dimension, got a scalar") }
    let batch = x.shape[0]
    let features = x.rank == 1 ? 1 : x.count / max(batch, 1)
    guard x.rank != 2 else { return x }
    guard x.rank == 4, x.shape[1] * x.shape[2] > 1, x.shape[3] > 1 else {
        // One pixel or one channel: (c, h, w) and (h, w, c) orders coincide, so a reshape is the flatten.
        return try reshape(x, to: [batch, features])
    }
    try requireNonEmpty(x, "x", of: "flatten")
    let (pixels, channels) = (x.shape[1] * x.shape[2], x.shape[3])
    let result = Tensor(uninitializedShape: [batch, features])
    try check(
        ck_batched_transpose_f32(x.pointer, Int64(batch), Int64(pixels), Int64(channels), 0, result.pointer),
        "flatten(\(x.shape))")
    GraphTracer.record(.flatten, inputs: [x], result: result)
    result.record("flatten", inputs: [x]) { gradient in
        try x.accumulateGradient { buffer, accumulate in
            try check(
                ck_batched_transpose_f32(
                    gradient.pointer, Int64(batch), Int64(channels), Int64(pixels), accumulate ? 1 : 0,
                    buffer.baseAddress!),
                "flatten(\(x.shape)) backward")
        }
    }
    return result
}

/// The ResNet "option A" shortcut on NHWC: every `stride`-th pixel (`x[:, ::2, ::2, :]`) with `channelPadding`
/// zero channels added on each side, as the CIFAR ResNet's `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))`.
public func shortcutOptionA(_ x: Tensor, channelPadding: Int, stride: Int = 2) throws -> Tensor {
    try requireRank(x, 4, "x", of: "shortcutOptionA", layout: "[N, H, W, C]")
    try requireNonEmpty(x, "x", of: "shortcutOptionA")
    guard stride >= 1 else { throw BNNError(.tensor, "shortcutOptionA: `stride` must be at least 1, got \(stride)") }
    guard channelPadding >= 0 else {
        throw BNNError(.tensor, "shortcutOptionA: `channelPadding` must be at least 0, got \(channelPadding)")
    }
    let (batch, height, width, channels) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let outShape = [
        batch, (height + stride - 1) / stride, (width + stride - 1) / stride, channels + 2 * channelPadding,
    ]
    let result = Tensor(uninitializedShape: outShape)
    let context = "shortcutOptionA(x \(x.shape), channelPadding \(channelPadding), stride \(stride))"
    try check(
        ck_shortcut_a_forward_f32(
            x.pointer, Int64(batch), Int64(height), Int64(width), Int64(channels), Int64(stride), Int64(channelPadding),
            result.pointer),
        context)
    GraphTracer.record(.shortcutOptionA(channelPadding: channelPadding, stride: stride), inputs: [x], result: result)
    result.record("shortcutOptionA", inputs: [x]) { gradient in
        try x.accumulateGradient { buffer, accumulate in
            try check(
                ck_shortcut_a_backward_f32(
                    gradient.pointer, Int64(batch), Int64(height), Int64(width), Int64(channels), Int64(stride),
                    Int64(channelPadding), accumulate ? 1 : 0, buffer.baseAddress!),
                "\(context) backward")
        }
    }
    return result
}
