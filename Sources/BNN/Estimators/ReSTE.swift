import CKernels
import Foundation

/// The rectified straight-through estimator (docs/method.md §2): r'(x) is the derivative of sign(x)·|x|^(1/o) between
/// `delta` and `threshold`, the secant slope δ^(1/o)/δ below `delta` and 0 beyond `threshold`; o is annealed from
/// 1 (the clipped STE at 1.5) to `oEnd` over the run.
public struct ReSTE: SignEstimator, CustomStringConvertible {
    public var name: String { "reste" }
    /// The current power (≥ 1 in the method; the kernel accepts any finite o > 0).
    public var o: Float
    /// The power reached at the end of the schedule (3 in the paper).
    public var oEnd: Float
    /// |x| beyond which the gradient is 0.
    public let threshold: Float = 1.5
    /// Half-width of the interval around 0 where the slope is the secant's.
    public let delta: Float = 0.1

    /// ReSTE at the start of its schedule (o = 1) annealing to `oEnd`.
    public init(oEnd: Float = 3) {
        o = 1
        self.oEnd = oEnd
    }

    /// o(e) = 1 + (o_end − 1)·(1 − cos(π/2 · e/E)) for 0-based epoch e of E.
    public static func power(epoch: Int, of epochs: Int, oEnd: Float) -> Float {
        Float(1 + (Double(oEnd) - 1) * (1 - cos(Double.pi / 2 * scheduleFraction(epoch, of: epochs))))
    }

    /// Sets o to `power(epoch:of:oEnd:)`.
    public mutating func setEpoch(_ epoch: Int, of epochs: Int) {
        o = Self.power(epoch: epoch, of: epochs, oEnd: oEnd)
    }

    public func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool
    ) {
        kernelBackward(
            "ReSTE", input: input, gradOutput: gradOutput, gradInput: gradInput, count: count, accumulate: accumulate)
    }

    public var description: String { "ReSTE(o: \(o), oEnd: \(oEnd))" }
}

extension ReSTE: KernelSignEstimator {
    var kernelRule: ck_estimator {
        precondition(o.isFinite && o > 0, "ReSTE.backward: o must be a finite number > 0, got \(o)")
        return ck_estimator(kind: CK_ESTIMATOR_RESTE, o: o, threshold: threshold, delta: delta, t: 0, k: 0)
    }
}
