import CKernels

/// Mean softmax cross-entropy of logits `[N, classes]` against class indices, as
/// `torch.nn.functional.cross_entropy` (reduction "mean"); a scalar tensor. Log-softmax is computed in double
/// with the row maximum subtracted, so large logits cannot overflow.
public func crossEntropy(_ logits: Tensor, labels: [Int]) throws -> Tensor {
    try requireRank(logits, 2, "logits", of: "crossEntropy", layout: "[N, classes]")
    try requireNonEmpty(logits, "logits", of: "crossEntropy")
    let (rows, classes) = (logits.shape[0], logits.shape[1])
    guard labels.count == rows else {
        throw BNNError(.tensor, "crossEntropy: \(labels.count) `labels` for \(rows) rows of `logits` \(logits.shape)")
    }
    if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= classes }) {
        throw BNNError(.tensor, "crossEntropy: `labels[\(bad)]` is \(labels[bad]), outside 0..<\(classes)")
    }
    let indices = labels.map { Int64($0) }
    var losses = [Float](repeating: 0, count: rows)
    let probabilities = Tensor(uninitializedShape: logits.shape)
    try check(
        ck_cross_entropy_forward_f32(
            logits.pointer, indices, Int64(rows), Int64(classes), &losses, probabilities.pointer),
        "crossEntropy(logits \(logits.shape))")
    let mean = losses.reduce(0.0) { $0 + Double($1) } / Double(rows)
    let result = Tensor(Float(mean))
    result.record("crossEntropy", inputs: [logits]) { gradient in
        let scale = gradient.pointer.pointee / Float(rows)
        try logits.accumulateGradient { buffer, accumulate in
            try check(
                ck_cross_entropy_backward_f32(
                    probabilities.pointer, indices, Int64(rows), Int64(classes), scale, accumulate ? 1 : 0,
                    buffer.baseAddress!),
                "crossEntropy(logits \(logits.shape)) backward")
        }
    }
    return result
}
