import CKernels

/// Running mean and variance of a batch-norm layer (PyTorch's `running_mean`, `running_var`,
/// `num_batches_tracked`): state saved with the model and updated by training-mode forwards, not parameters.
public final class BatchNormStatistics: @unchecked Sendable {
    /// Running mean per channel, `[C]`.
    public let runningMean: Tensor
    /// Running (unbiased) variance per channel, `[C]`.
    public let runningVar: Tensor
    /// Training-mode forwards seen so far.
    public var numBatchesTracked: Int
    /// Weight of the new batch in the running averages; nil for a cumulative average (1 / numBatchesTracked).
    public var momentum: Float?

    /// Fresh statistics as PyTorch initialises them: mean 0, variance 1, no batches.
    public convenience init(channels: Int, momentum: Float? = 0.1) throws {
        guard channels >= 1 else {
            throw BNNError(.tensor, "BatchNormStatistics: `channels` must be at least 1, got \(channels)")
        }
        try self.init(
            runningMean: Tensor.zeros(shape: [channels]), runningVar: Tensor.ones(shape: [channels]),
            numBatchesTracked: 0, momentum: momentum)
    }

    /// Statistics from existing tensors (e.g. loaded from a checkpoint); both must have shape `[C]`.
    public init(runningMean: Tensor, runningVar: Tensor, numBatchesTracked: Int = 0, momentum: Float? = 0.1) throws {
        guard runningMean.rank == 1, runningMean.count >= 1, runningVar.shape == runningMean.shape else {
            throw BNNError(.tensor, 
                "BatchNormStatistics: `runningMean` and `runningVar` must both have shape [C], got "
                    + "\(runningMean.shape) and \(runningVar.shape)")
        }
        if let momentum, !(momentum >= 0 && momentum <= 1) {
            throw BNNError(.tensor, "BatchNormStatistics: `momentum` must be in [0, 1] or nil, got \(momentum)")
        }
        self.runningMean = runningMean
        self.runningVar = runningVar
        self.numBatchesTracked = numBatchesTracked
        self.momentum = momentum
    }

    /// Number of channels.
    public var channels: Int { runningMean.count }
}

/// Batch normalisation of an NHWC tensor `[N, H, W, C]` over N·H·W per channel, as
/// `torch.nn.functional.batch_norm` on the NCHW equivalent.
///
/// Training: normalises with the batch mean and biased variance and, if `statistics` is given, updates it
/// (running variance from the unbiased batch variance; `numBatchesTracked` += 1). Evaluation: normalises with
/// `statistics`. `weight` (γ) and `bias` (β) are `[C]`; nil means 1 and 0.
public func batchNorm2d(
    _ x: Tensor, weight: Tensor?, bias: Tensor?, statistics: BatchNormStatistics?, training: Bool, eps: Float = 1e-5
) throws -> Tensor {
    try requireRank(x, 4, "x", of: "batchNorm2d", layout: "[N, H, W, C]")
    return try batchNorm(
        x, weight: weight, bias: bias, statistics: statistics, training: training, eps: eps,
        operation: "batchNorm2d")
}

/// Batch normalisation of features `[N, F]` per feature, as `torch.nn.BatchNorm1d` (same rules as `batchNorm2d`).
public func batchNorm1d(
    _ x: Tensor, weight: Tensor?, bias: Tensor?, statistics: BatchNormStatistics?, training: Bool, eps: Float = 1e-5
) throws -> Tensor {
    try requireRank(x, 2, "x", of: "batchNorm1d", layout: "[N, F]")
    return try batchNorm(
        x, weight: weight, bias: bias, statistics: statistics, training: training, eps: eps,
        operation: "batchNorm1d")
}

/// `batchNorm2d(relu(x, gradientAtZero:), ...)` as one op: the same values and gradients to the bit, without the
/// gradient of the ReLU's output in memory (the backward pass writes x's gradient in one pass: batch norm's input
/// gradient, then the ReLU rule). Blocks that normalise a ReLU's output use it.
public func batchNorm2d(
    reluOf x: Tensor, gradientAtZero: Float = 0, weight: Tensor?, bias: Tensor?, statistics: BatchNormStatistics?,
    training: Bool, eps: Float = 1e-5
) throws -> Tensor {
    try requireRank(x, 4, "x", of: "batchNorm2d(reluOf:)", layout: "[N, H, W, C]")
    try requireNonEmpty(x, "x", of: "batchNorm2d(reluOf:)")
    let y = Tensor(uninitializedShape: x.shape)
    try check(ck_relu_forward_f32(x.pointer, Int64(x.count), y.pointer), "batchNorm2d(reluOf: \(x.shape)) relu")
    GraphTracer.record(.relu, inputs: [x], result: y)
    return try batchNorm(
        y, weight: weight, bias: bias, statistics: statistics, training: training, eps: eps,
        operation: "batchNorm2d", relu: (x, gradientAtZero))
}

/// Both ranks are a `rows × channels` matrix with the channel innermost.
/// With `relu`, `x` is relu(pre) and the op stands for both: it records `pre` as its input and writes pre's gradient.
private func batchNorm(
    _ x: Tensor, weight: Tensor?, bias: Tensor?, statistics: BatchNormStatistics?, training: Bool, eps: Float,
    operation: String, relu: (pre: Tensor, gradientAtZero: Float)? = nil
) throws -> Tensor {
    try requireNonEmpty(x, "x", of: operation)
    let channels = x.shape[x.rank - 1]
    let rows = x.count / channels
    if let weight { try requireShape(weight, [channels], "weight", of: operation, because: "γ, one per channel") }
    if let bias { try requireShape(bias, [channels], "bias", of: operation, because: "β, one per channel") }
    if let statistics, statistics.channels != channels {
        throw BNNError(.tensor, 
            "\(operation): `statistics` has \(statistics.channels) channels but `x` \(x.shape) has \(channels)")
    }
    guard eps > 0 else { throw BNNError(.tensor, "\(operation): `eps` must be positive, got \(eps)") }
    let context = "\(operation)(x \(x.shape), training: \(training))"

    var mean = [Float](repeating: 0, count: channels)
    var variance = [Float](repeating: 0, count: channels)
    let synchronization = training ? BatchNormSynchronization.current.flatMap { $0.collective.size > 1 ? $0 : nil } : nil
    var batchRows = rows
    if training {
        if let synchronization {
            batchRows = try synchronization.statistics(
                of: x, rows: rows, mean: &mean, variance: &variance, operation: operation, context: context)
        } else {
            try check(ck_channel_mean_var_f32(x.pointer, Int64(rows), Int64(channels), &mean, &variance), context)
        }
        guard batchRows > 1 else {
            throw BNNError(.tensor,
                "\(operation): training needs more than one value per channel, `x` \(x.shape) has \(batchRows)"
                    + (synchronization == nil ? "" : " over all ranks"))
        }
        if let statistics { updateRunningStatistics(statistics, mean: mean, biasedVariance: variance, rows: batchRows) }
    } else {
        guard let statistics else {
            throw BNNError(.tensor, "\(operation): evaluation mode (training: false) needs `statistics`")
        }
        mean = statistics.runningMean.scalars
        variance = statistics.runningVar.scalars
    }
    let invstd = batchNormInverseStd(variance: variance, eps: eps)
    let (scale, shift) = batchNormAffine(
        gamma: weight?.scalars, beta: bias?.scalars, mean: mean, invstd: invstd)
    let result = Tensor(uninitializedShape: x.shape)
    try check(ck_channel_affine_f32(x.pointer, Int64(rows), Int64(channels), scale, shift, result.pointer), context)
    GraphTracer.record(
        .batchNorm(eps: eps), inputs: [x], result: result,
        parameters: [("weight", weight), ("bias", bias), ("running_mean", statistics?.runningMean),
                     ("running_var", statistics?.runningVar)])

    // The tensor whose gradient this op writes: x, or the ReLU's input.
    let source = relu?.pre ?? x
    result.record(operation, inputs: [source, weight, bias]) { gradient in
        let needSumGX = (training && source.requiresGrad) || weight?.requiresGrad == true
        let needSumG = (training && source.requiresGrad) || bias?.requiresGrad == true
        var sumG = [Float](repeating: 0, count: channels)
        var sumGX = sumG
        // Synchronised, dx needs the whole batch's sums: kept in double until they are added over the ranks.
        var batchSums: (g: [Double], gx: [Double])?
        if let synchronization, training, source.requiresGrad {
            let sums = try synchronization.gradientSums(
                gradient: gradient, x: x, mean: mean, rows: rows, operation: operation, context: "\(context) backward")
            sumG = sums.local.g
            sumGX = sums.local.gx
            batchSums = sums.batch
        } else if needSumGX {
            try check(
                ck_channel_sums_f32(gradient.pointer, x.pointer, mean, Int64(rows), Int64(channels), &sumG, &sumGX),
                "\(context) backward")
        } else if needSumG {
            try check(
                ck_channel_sums_f32(gradient.pointer, nil, nil, Int64(rows), Int64(channels), &sumG, nil),
                "\(context) backward")
        }
        if let weight, weight.requiresGrad {
            accumulateChannels((0..<channels).map { sumGX[$0] * invstd[$0] }, into: weight)
        }
        if let bias, bias.requiresGrad { accumulateChannels(sumG, into: bias) }
        guard source.requiresGrad else { return }
        if training {
            // dx = γ·invstd·(g − Σg/M − x̂·Σ(g·x̂)/M) with x̂ = (x − mean)·invstd, as a·g + b·(x − mean) + k.
            // Synchronised, the sums and M are the whole batch's, over all ranks (γ's and β's gradients above stay
            // this rank's: the gradient averaging combines them).
            let m = Double(batchRows)
            var a = scale
            var b = scale
            var k = scale
            for c in 0..<channels {
                let s = Double(scale[c])
                let i = Double(invstd[c])
                let g = batchSums?.g[c] ?? Double(sumG[c])
                let gx = batchSums?.gx[c] ?? Double(sumGX[c])
                a[c] = Float(s)
                b[c] = Float(-s * i * i * gx / m)
                k[c] = Float(-s * g / m)
            }
            try inputGradient(
                of: x, gradient, x, mean, a, b, k, relu: relu, rows: rows, channels: channels, context: context)
        } else {
            try inputGradient(
                of: x, gradient, nil, nil, scale, nil, nil, relu: relu, rows: rows, channels: channels, context: context)
        }
    }
    return result
}

/// Adds a·g + b·(x − mean) + k (b nil: a·g + k) to the gradient of `input`, or, after a ReLU, that value through
/// the ReLU's rule to the gradient of the ReLU's input.
private func inputGradient(
    of input: Tensor, _ gradient: Tensor, _ x: Tensor?, _ mean: [Float]?, _ a: [Float], _ b: [Float]?, _ k: [Float]?,
    relu: (pre: Tensor, gradientAtZero: Float)?, rows: Int, channels: Int, context: String
) throws {
    if let relu {
        try relu.pre.accumulateGradient { buffer, accumulate in
            try check(
                ck_batchnorm_relu_backward_input_f32(
                    gradient.pointer, x?.pointer, mean, a, b, k, relu.pre.pointer, relu.gradientAtZero, Int64(rows),
                    Int64(channels), accumulate ? 1 : 0, buffer.baseAddress!),
                "\(context) backward through the ReLU")
        }
        return
    }
    try input.accumulateGradient { buffer, accumulate in
        try check(
            ck_batchnorm_backward_input_f32(
                gradient.pointer, x?.pointer, mean, a, b, k, Int64(rows), Int64(channels), accumulate ? 1 : 0,
                buffer.baseAddress!),
            "\(context) backward")
    }
}

/// PyTorch's update: n += 1; factor = momentum ?? 1/n; running = (1 − factor)·running + factor·batch, with the
/// unbiased batch variance (divisor rows − 1).
private func updateRunningStatistics(
    _ statistics: BatchNormStatistics, mean: [Float], biasedVariance: [Float], rows: Int
) {
    statistics.numBatchesTracked += 1
    let factor = statistics.momentum.map { Double($0) } ?? 1 / Double(statistics.numBatchesTracked)
    let correction = Double(rows) / Double(rows - 1)
    statistics.runningMean.withUnsafeMutableBufferPointer { running in
        for c in running.indices {
            running[c] = Float(factor * Double(mean[c]) + (1 - factor) * Double(running[c]))
        }
    }
    statistics.runningVar.withUnsafeMutableBufferPointer { running in
        for c in running.indices {
            running[c] = Float(factor * Double(biasedVariance[c]) * correction + (1 - factor) * Double(running[c]))
        }
    }
}

/// 1/√(variance + eps) per channel, rounded once from double: the normalisation factor of both modes.
func batchNormInverseStd(variance: [Float], eps: Float) -> [Float] {
    variance.map { Float(1 / (Double($0) + Double(eps)).squareRoot()) }
}

/// Batch norm as `x·scale + shift` per channel (γ·invstd and β − mean·scale; nil γ and β mean 1 and 0): how the
/// op computes it, and so how a packed network folds it, to the bit.
func batchNormAffine(gamma: [Float]?, beta: [Float]?, mean: [Float], invstd: [Float]) -> (scale: [Float], shift: [Float]) {
    var scale = [Float](repeating: 0, count: mean.count)
    var shift = scale
    for c in 0..<mean.count {
        scale[c] = (gamma?[c] ?? 1) * invstd[c]
        shift[c] = (beta?[c] ?? 0) - mean[c] * scale[c]
    }
    return (scale, shift)
}

/// Batch norm over the whole batch when data-parallel ranks each hold part of it (`--sync-bn`): the training-mode
/// statistics and the sums of the input gradient are combined over the ranks, so every rank normalises with the
/// mean and variance of all N images, as one process with the whole batch would.
///
/// Set for the duration of a training step with `BatchNormSynchronization.$current.withValue(...)`; nil (the
/// default) normalises each process's images alone.
public struct BatchNormSynchronization: Sendable {
    /// The ranks sharing the batch.
    public let collective: any Collective
    /// This rank's images ÷ the batch's: the scale of its loss gradient relative to the whole batch's mean loss is
    /// 1/share, which the combined gradient sums must carry.
    public let share: Double

    public init(collective: any Collective, share: Double) {
        self.collective = collective
        self.share = share
    }

    /// The synchronisation in force for the current task; nil for none.
    @TaskLocal public static var current: BatchNormSynchronization?

    /// The mean and biased variance of the whole batch, as `ck_channel_mean_var_f32` computes them for one
    /// process holding it: Σx in double over the ranks gives the centre, then Σ(x − centre)² in double over the
    /// ranks gives the variance. Only the order in which double partial sums are added differs, so the float
    /// results are those of one process but for rare last-bit roundings. Returns the batch's rows.
    func statistics(
        of x: Tensor, rows: Int, mean: inout [Float], variance: inout [Float], operation: String, context: String
    ) throws -> Int {
        let channels = mean.count
        var sums = [Double](repeating: 0, count: channels + 1)
        try check(ck_channel_moment_f64(x.pointer, Int64(rows), Int64(channels), nil, &sums), context)
        sums[channels] = Double(rows)
        try sums.withUnsafeMutableBufferPointer {
            try collective.sum($0, what: "the batch means of a \(operation) over \(channels) channels")
        }
        let total = sums[channels]
        let center = (0..<channels).map { sums[$0] / total }
        var squares = [Double](repeating: 0, count: channels)
        try check(ck_channel_moment_f64(x.pointer, Int64(rows), Int64(channels), center, &squares), context)
        try squares.withUnsafeMutableBufferPointer {
            try collective.sum($0, what: "the batch variances of a \(operation) over \(channels) channels")
        }
        for c in 0..<channels {
            mean[c] = Float(center[c])
            variance[c] = Float(squares[c] / total)
        }
        return Int(total)
    }

    /// This rank's Σg and Σg·(x − mean) (rounded to float, for γ's and β's gradients, which the gradient averaging
    /// combines) and the whole batch's in double, in this rank's gradient scale: each rank's sums are brought to the
    /// scale of the batch's mean loss (× share), added over the ranks, and brought back (÷ share). With equal shares
    /// that are powers of two the scalings are exact.
    func gradientSums(
        gradient: Tensor, x: Tensor, mean: [Float], rows: Int, operation: String, context: String
    ) throws -> (local: (g: [Float], gx: [Float]), batch: (g: [Double], gx: [Double])) {
        let channels = mean.count
        var sums = [Double](repeating: 0, count: 2 * channels)
        try sums.withUnsafeMutableBufferPointer { buffer in
            try check(
                ck_channel_sums_f64(gradient.pointer, x.pointer, mean, Int64(rows), Int64(channels), buffer.baseAddress!,
                                    buffer.baseAddress! + channels), context)
        }
        let local = (g: sums[0..<channels].map { Float($0) }, gx: sums[channels...].map { Float($0) })
        for i in sums.indices { sums[i] *= share }
        try sums.withUnsafeMutableBufferPointer {
            try collective.sum($0, what: "the gradient sums of a \(operation) over \(channels) channels")
        }
        // Rounded to float, as one process's sums are before they enter dx.
        for i in sums.indices { sums[i] = Double(Float(sums[i] / share)) }
        return (local, (Array(sums[0..<channels]), Array(sums[channels...])))
    }
}

