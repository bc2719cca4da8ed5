import CKernels

/// An error reported by a CKernels call, with the operation and the arguments that were wrong.
public struct KernelError: Error, CustomStringConvertible, Equatable {
    /// The C status code.
    public let status: Int32
    /// What was being done and with which arguments.
    public let context: String

    public var description: String {
        "\(context): \(String(cString: ck_status_message(ck_status(UInt32(status)))))"
    }
}

/// Throws a `KernelError` naming `context` unless `status` is CK_OK.
@inline(__always)
func check(_ status: ck_status, _ context: @autoclosure () -> String) throws {
    if status != CK_OK { throw KernelError(status: Int32(status.rawValue), context: context()) }
}
