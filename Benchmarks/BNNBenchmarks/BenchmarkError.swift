import CKernels

/// Why a benchmark could not produce figures: a kernel refused its arguments, or computed a wrong result.
public enum BenchmarkError: Error, CustomStringConvertible {
    /// A CKernels call returned `status` while doing `operation`.
    case kernel(operation: String, status: ck_status)
    /// A binary kernel disagreed with the float computation of the same ±1 operands.
    case wrongResult(benchmark: String, index: Int, expected: Float, found: Int32)

    public var description: String {
        switch self {
        case let .kernel(operation, status):
            return "\(operation) failed: \(String(cString: ck_status_message(status)))"
        case let .wrongResult(benchmark, index, expected, found):
            let exact = Int(exactly: expected).map(String.init) ?? "\(expected)"
            return "\(benchmark): element \(index) of the binary kernel's output is \(found), the float"
                + " computation of the same ±1 operands gives \(exact); a benchmark of a wrong kernel would be"
                + " meaningless"
        }
    }
}

/// Throws `BenchmarkError.kernel` naming `operation` unless `status` is CK_OK.
@inline(__always)
func check(_ status: ck_status, _ operation: @autoclosure () -> String) throws {
    if status != CK_OK { throw BenchmarkError.kernel(operation: operation(), status: status) }
}
