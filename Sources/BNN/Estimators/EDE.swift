import CKernels
import Foundation

/// IR-Net's error decay estimator: r'(x) = k·t·(1 − tanh²(t·x)), with t rising geometrically from `minimumT` to
/// `maximumT` over the run and k = max(1/t, 1), so the estimate moves from the identity towards sign's own
/// derivative.
public struct EDE: SignEstimator, CustomStringConvertible {
    public var name: String { "ede" }
    /// The current sharpness t.
    public var t: Float
    /// The current gain k.
    public var k: Float
    /// t at epoch 0 (T_min).
    public let minimumT: Float = 0.1
    /// t at the end of the run (T_max).
    public let maximumT: Float = 10

    /// EDE at epoch 0: t = 0.1, k = 10.
    public init() {
        (t, k) = Self.parameters(epoch: 0, of: 1, minimumT: 0.1, maximumT: 10)
    }

    /// t = T_min·10^(e/E·log10(T_max/T_min)) and k = max(1/t, 1) for 0-based epoch e of E.
    public static func parameters(epoch: Int, of epochs: Int, minimumT: Float = 0.1, maximumT: Float = 10)
        -> (t: Float, k: Float)
    {
        let exponent = scheduleFraction(epoch, of: epochs) * log10(Double(maximumT) / Double(minimumT))
        let t = Double(minimumT) * pow(10, exponent)
        return (Float(t), Float(max(1 / t, 1)))
    }

    /// Sets t and k to `parameters(epoch:of:minimumT:maximumT:)`.
    public mutating func setEpoch(_ epoch: Int, of epochs: Int) {
        (t, k) = Self.parameters(epoch: epoch, of: epochs, minimumT: minimumT, maximumT: maximumT)
    }

    public func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool
    ) {
        kernelBackward(
            "EDE", input: input, gradOutput: gradOutput, gradInput: gradInput, count: count, accumulate: accumulate)
    }

    public var description: String { "EDE(t: \(t), k: \(k))" }
}

extension EDE: KernelSignEstimator {
    var kernelRule: ck_estimator {
        precondition(
            t.isFinite && t > 0 && k.isFinite,
            "EDE.backward: t must be a finite number > 0 and k finite, got t = \(t), k = \(k)")
        return ck_estimator(kind: CK_ESTIMATOR_EDE, o: 0, threshold: 0, delta: 0, t: t, k: k)
    }
}
