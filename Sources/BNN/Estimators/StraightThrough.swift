import CKernels

/// The clipped straight-through estimator of BinaryConnect: r'(x) = 1 where |x| ≤ 1, else 0.
public struct STE: SignEstimator {
    public var name: String { "ste" }
    /// |x| beyond which the gradient is 0.
    public let limit: Float = 1

    /// The clipped STE.
    public init() {}

    /// No schedule.
    public mutating func setEpoch(_ epoch: Int, of epochs: Int) {}

    public func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool
    ) {
        kernelBackward(
            "STE", input: input, gradOutput: gradOutput, gradInput: gradInput, count: count, accumulate: accumulate)
    }
}

/// The identity straight-through estimator: r'(x) = 1, the gradient passes sign unchanged.
public struct IdentitySTE: SignEstimator {
    public var name: String { "identity" }

    /// The identity STE.
    public init() {}

    /// No schedule.
    public mutating func setEpoch(_ epoch: Int, of epochs: Int) {}

    public func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool
    ) {
        kernelBackward(
            "IdentitySTE", input: input, gradOutput: gradOutput, gradInput: gradInput, count: count, accumulate: accumulate)
    }
}

/// Bi-Real Net's ApproxSign: r'(x) = 2 − 2|x| where |x| ≤ 1, else 0 (the derivative of a piecewise quadratic
/// approximation of sign).
public struct ApproxSign: SignEstimator {
    public var name: String { "approx" }

    /// ApproxSign.
    public init() {}

    /// No schedule.
    public mutating func setEpoch(_ epoch: Int, of epochs: Int) {}

    public func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool
    ) {
        kernelBackward(
            "ApproxSign", input: input, gradOutput: gradOutput, gradInput: gradInput, count: count, accumulate: accumulate)
    }
}

extension STE: KernelSignEstimator {
    var kernelRule: ck_estimator {
        ck_estimator(kind: CK_ESTIMATOR_CLIPPED_STE, o: 0, threshold: limit, delta: 0, t: 0, k: 0)
    }
}

extension IdentitySTE: KernelSignEstimator {
    var kernelRule: ck_estimator { ck_estimator(kind: CK_ESTIMATOR_IDENTITY, o: 0, threshold: 0, delta: 0, t: 0, k: 0) }
}

extension ApproxSign: KernelSignEstimator {
    var kernelRule: ck_estimator {
        ck_estimator(kind: CK_ESTIMATOR_APPROX_SIGN, o: 0, threshold: 0, delta: 0, t: 0, k: 0)
    }
}
