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

/// Runs one estimator kernel over `count` elements; the parameters were checked by the caller's type, so a failing
/// status can only come from a negative or absurd count.
func runEstimatorKernel(_ name: String, count: Int, _ kernel: (Int64) -> ck_status) {
    precondition(count >= 0, "\(name).backward: count must be at least 0, got \(count)")
    guard count > 0 else { return }
    let status = kernel(Int64(count))
    precondition(
        status == CK_OK, "\(name).backward over \(count) elements failed: \(String(cString: ck_status_message(status)))")
}
