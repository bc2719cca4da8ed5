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
        runEstimatorKernel("STE", count: count) {
            ck_clipped_ste_backward_f32(input, gradOutput, $0, limit, accumulate ? 1 : 0, gradInput)
        }
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
        runEstimatorKernel("IdentitySTE", count: count) {
            ck_identity_ste_backward_f32(gradOutput, $0, accumulate ? 1 : 0, gradInput)
        }
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
        runEstimatorKernel("ApproxSign", count: count) {
            ck_approx_sign_backward_f32(input, gradOutput, $0, accumulate ? 1 : 0, gradInput)
        }
    }
}
