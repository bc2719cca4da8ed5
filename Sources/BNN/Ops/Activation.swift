import CKernels

/// max(x, 0) element-wise, as `torch.relu` (NaN propagates). The gradient is 1 where x > 0, 0 where x < 0 and
/// `gradientAtZero` where x = 0 (PyTorch's rule, the default, is 0; any value in [0, 1] is a subgradient).
public func relu(_ x: Tensor, gradientAtZero: Float = 0) throws -> Tensor {
    try requireNonEmpty(x, "x", of: "relu")
    let result = Tensor(uninitializedShape: x.shape)
    try check(ck_relu_forward_f32(x.pointer, Int64(x.count), result.pointer), "relu(\(x.shape))")
    GraphTracer.record(.relu, inputs: [x], result: result)
    result.record("relu", inputs: [x]) { gradient in
        try x.accumulateGradient { buffer, accumulate in
            try check(
                ck_relu_backward_f32(
                    x.pointer, gradient.pointer, Int64(x.count), gradientAtZero, accumulate ? 1 : 0,
                    buffer.baseAddress!),
                "relu backward (\(x.shape))")
        }
    }
    return result
}

/// clamp(x, minValue, maxValue) element-wise, as `torch.nn.functional.hardtanh` (gradient 1 strictly inside,
/// 0 outside and on the bounds).
public func hardtanh(_ x: Tensor, minValue: Float = -1, maxValue: Float = 1) throws -> Tensor {
    try requireNonEmpty(x, "x", of: "hardtanh")
    guard minValue <= maxValue else {
        throw BNNError(.tensor, "hardtanh: `minValue` (\(minValue)) must not exceed `maxValue` (\(maxValue))")
    }
    let result = Tensor(uninitializedShape: x.shape)
    try check(
        ck_hardtanh_forward_f32(x.pointer, Int64(x.count), minValue, maxValue, result.pointer), "hardtanh(\(x.shape))")
    GraphTracer.record(.hardtanh(min: minValue, max: maxValue), inputs: [x], result: result)
    result.record("hardtanh", inputs: [x]) { gradient in
        try x.accumulateGradient { buffer, accumulate in
            try check(
                ck_hardtanh_backward_f32(
                    x.pointer, gradient.pointer, Int64(x.count), minValue, maxValue, accumulate ? 1 : 0,
                    buffer.baseAddress!),
                "hardtanh backward (\(x.shape))")
        }
    }
    return result
}
