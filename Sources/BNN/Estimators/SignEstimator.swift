import CKernels

/// The backward of sign(x): grad_in = grad_out · r'(x), one fused C pass.
///
/// The forward is always sign(x) with sign(0) = +1 (the value one bit can hold); an estimator only says how the
/// gradient crosses it. The same value serves a layer's weights and its activations, and `setEpoch` moves the
/// estimators that anneal (ReSTE's power o, EDE's t and k) along their schedule.
public protocol SignEstimator: Sendable {
    /// The name used on the command line: "reste", "ste", "identity", "approx" or "ede".
    var name: String { get }
    /// Moves the schedule to 0-based `epoch` of `epochs`; a no-op for estimators without one.
    mutating func setEpoch(_ epoch: Int, of epochs: Int)
    /// gradInput (= or, with `accumulate`, +=) gradOutput · r'(input) over `count` elements; `gradInput` may be
    /// `gradOutput`. A negative `count` is a programming error (precondition).
    func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool)
}

/// The names `makeEstimator(named:oEnd:)` accepts, in the order the paper compares them.
public let signEstimatorNames = ["reste", "ste", "identity", "approx", "ede"]

/// The estimator called `name` (case-insensitive; see `signEstimatorNames`) at the start of its schedule.
/// `oEnd` is ReSTE's final power (at least 1) and is ignored by the others.
public func makeEstimator(named name: String, oEnd: Float = 3) throws -> any SignEstimator {
    switch name.lowercased() {
    case "reste":
        guard oEnd.isFinite, oEnd >= 1 else {
            throw BNNError(.estimator, "ReSTE's final power o_end must be a finite number ≥ 1, got \(oEnd)")
        }
        return ReSTE(oEnd: oEnd)
    case "ste": return STE()
    case "identity": return IdentitySTE()
    case "approx": return ApproxSign()
    case "ede": return EDE()
    default:
        throw BNNError(.estimator, 
            "unknown estimator `\(name)`; valid names: \(signEstimatorNames.joined(separator: ", "))")
    }
}

/// Where `epoch` of `epochs` lies in the run, e/E clamped to 0...1 (0 when `epochs` < 1): the argument of every
/// schedule.
func scheduleFraction(_ epoch: Int, of epochs: Int) -> Double {
    guard epochs >= 1 else { return 0 }
    return min(max(Double(epoch) / Double(epochs), 0), 1)
}

/// An estimator whose r' the C kernels know, so that a binary convolution can apply it inside its input-gradient
/// kernel instead of a separate pass over the gradient (`binaryConv2d`). Any other `SignEstimator`, a user's own
/// included, gets that separate pass through its `backward`.
protocol KernelSignEstimator: SignEstimator {
    /// The rule and parameters for `ck_estimator_backward_f32` and the kernels that apply it (checked: an invalid
    /// parameter is a precondition failure, as in `backward`).
    var kernelRule: ck_estimator { get }
}

extension KernelSignEstimator {
    /// `backward` by `ck_estimator_backward_f32`; a failing status can only come from a negative or absurd count,
    /// the parameters having been checked by `kernelRule`.
    func kernelBackward(
        _ name: String, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
        gradInput: UnsafeMutablePointer<Float>, count: Int, accumulate: Bool
    ) {
        precondition(count >= 0, "\(name).backward: count must be at least 0, got \(count)")
        var rule = kernelRule
        guard count > 0 else { return }
        let status = ck_estimator_backward_f32(&rule, input, gradOutput, Int64(count), accumulate ? 1 : 0, gradInput)
        precondition(
            status == CK_OK,
            "\(name).backward over \(count) elements failed: \(String(cString: ck_status_message(status)))")
    }
}

/// The C rule of `estimator`, or nil if it has none; `TimedEstimator`, the library's own wrapper, gives its base's,
/// so that the benchmark times the step that training runs.
func kernelRule(of estimator: any SignEstimator) -> ck_estimator? {
    switch estimator {
    case let known as any KernelSignEstimator: known.kernelRule
    case let timed as TimedEstimator: kernelRule(of: timed.base)
    default: nil
    }
}
