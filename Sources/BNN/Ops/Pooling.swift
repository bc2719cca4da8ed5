import CKernels

/// Max-pool of an NHWC tensor as `torch.nn.functional.max_pool2d` (padding counts as −∞, the first maximum of a
/// window gets the gradient); `stride` defaults to `kernelSize`, `padding` must not exceed kernelSize / 2.
public func maxPool2d(_ x: Tensor, kernelSize: Int, stride: Int? = nil, padding: Int = 0) throws -> Tensor {
    var (shape, result) = try poolSetup(
        x, kernelSize: kernelSize, stride: stride, padding: padding, operation: "maxPool2d")
    let context =
        "maxPool2d(x \(x.shape), kernelSize \(kernelSize), stride \(stride ?? kernelSize), padding \(padding))"
    let traced = GraphOperation.maxPool2d(kernel: kernelSize, stride: stride ?? kernelSize, padding: padding)
    guard Tensor.isRecording([x]) else {
        try check(ck_maxpool2d_forward_f32(x.pointer, &shape, result.pointer, nil), context)
        GraphTracer.record(traced, inputs: [x], result: result)
        return result
    }
    // Where each maximum came from, as an input position iy·W + ix per output element.
    let argmax = UnsafeMutableBufferPointer<Int32>.allocate(capacity: result.count)
    let positions = ArgmaxBuffer(argmax)
    try check(ck_maxpool2d_forward_f32(x.pointer, &shape, result.pointer, argmax.baseAddress!), context)
    result.record("maxPool2d", inputs: [x]) { gradient in
        try x.accumulateGradient { buffer, accumulate in
            var shape = shape
            try check(
                ck_maxpool2d_backward_f32(
                    gradient.pointer, positions.buffer.baseAddress!, &shape, accumulate ? 1 : 0, buffer.baseAddress!),
                "\(context) backward")
        }
    }
    return result
}

/// Owns the argmax positions a max-pool saves for its backward rule.
private final class ArgmaxBuffer {
    let buffer: UnsafeMutableBufferPointer<Int32>
    init(_ buffer: UnsafeMutableBufferPointer<Int32>) { self.buffer = buffer }
    deinit { buffer.deallocate() }
}

/// Average pool of an NHWC tensor as `torch.nn.functional.avg_pool2d` with `count_include_pad=True` (zero
/// padding counts in the divisor kernelSize²); `stride` defaults to `kernelSize`.
public func avgPool2d(_ x: Tensor, kernelSize: Int, stride: Int? = nil, padding: Int = 0) throws -> Tensor {
    var (shape, result) = try poolSetup(
        x, kernelSize: kernelSize, stride: stride, padding: padding, operation: "avgPool2d")
    let context =
        "avgPool2d(x \(x.shape), kernelSize \(kernelSize), stride \(stride ?? kernelSize), padding \(padding))"
    try check(ck_avgpool2d_forward_f32(x.pointer, &shape, result.pointer), context)
    GraphTracer.record(
        .avgPool2d(kernel: kernelSize, stride: stride ?? kernelSize, padding: padding), inputs: [x], result: result)
    result.record("avgPool2d", inputs: [x]) { gradient in
        try x.accumulateGradient { buffer, accumulate in
            var shape = shape
            try check(
                ck_avgpool2d_backward_f32(gradient.pointer, &shape, accumulate ? 1 : 0, buffer.baseAddress!),
                "\(context) backward")
        }
    }
    return result
}

/// Mean over height and width of an NHWC tensor: `[N, H, W, C]` → `[N, C]` (adaptive average pool to 1×1, flattened).
public func globalAvgPool(_ x: Tensor) throws -> Tensor {
    try requireRank(x, 4, "x", of: "globalAvgPool", layout: "[N, H, W, C]")
    try requireNonEmpty(x, "x", of: "globalAvgPool")
    let (batch, pixels, channels) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
    let result = Tensor(uninitializedShape: [batch, channels])
    try check(
        ck_global_avgpool_forward_f32(x.pointer, Int64(batch), Int64(pixels), Int64(channels), result.pointer),
        "globalAvgPool(\(x.shape))")
    GraphTracer.record(.globalAvgPool, inputs: [x], result: result)
    result.record("globalAvgPool", inputs: [x]) { gradient in
        try x.accumulateGradient { buffer, accumulate in
            try check(
                ck_global_avgpool_backward_f32(
                    gradient.pointer, Int64(batch), Int64(pixels), Int64(channels), accumulate ? 1 : 0,
                    buffer.baseAddress!),
                "globalAvgPool(\(x.shape)) backward")
        }
    }
    return result
}

private func poolSetup(_ x: Tensor, kernelSize: Int, stride: Int?, padding: Int, operation: String) throws
    -> (ck_conv_shape, Tensor)
{
    try requireRank(x, 4, "x", of: operation, layout: "[N, H, W, C]")
    try requireNonEmpty(x, "x", of: operation)
    guard kernelSize >= 1 else { throw BNNError(.tensor, "\(operation): `kernelSize` must be at least 1, got \(kernelSize)") }
    guard 2 * padding <= kernelSize else {
        throw BNNError(.tensor, 
            "\(operation): `padding` (\(padding)) must be at most half of `kernelSize` (\(kernelSize)), as in PyTorch")
    }
    let geometry = try windowGeometry(
        input: x.shape, kernel: (kernelSize, kernelSize), stride: stride ?? kernelSize, padding: padding,
        operation: operation)
    let result = Tensor(uninitializedShape: [x.shape[0], geometry.outputHeight, geometry.outputWidth, x.shape[3]])
    return (geometry.geometry.cShape, result)
}
