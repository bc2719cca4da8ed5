import CKernels

/// An error reported by a CKernels call or by the Swift checks in front of it, naming the operation and
/// the argument that was wrong.
public struct KernelError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The C status code (a `ck_status` raw value; Swift-side checks use the code C would have returned).
    public let status: Int32
    /// What was being done and with which arguments.
    public let context: String
    /// The argument found wrong, as spelled in the Swift call (e.g. `"a"`, `"geometry.kernelHeight"`), when known.
    public let argument: String?

    /// An error for `status` with a free-form context.
    public init(status: Int32, context: String, argument: String? = nil) {
        self.status = status
        self.context = context
        self.argument = argument
    }

    /// The status as the C enum.
    public var code: ck_status { ck_status(UInt32(bitPattern: status)) }

    public var description: String {
        "\(context) (\(String(cString: ck_status_message(code))))"
    }

    /// An error about one named argument of `operation`: "operation: `argument` problem".
    static func argument(
        _ name: String, of operation: String, _ problem: String, status: ck_status = CK_ERR_SHAPE_MISMATCH
    ) -> KernelError {
        KernelError(status: Int32(status.rawValue), context: "\(operation): `\(name)` \(problem)", argument: name)
    }
}

/// Throws a `KernelError` naming `context` unless `status` is CK_OK.
@inline(__always)
func check(_ status: ck_status, _ context: @autoclosure () -> String) throws {
    if status != CK_OK { throw KernelError(status: Int32(status.rawValue), context: context()) }
}

/// Argument checks shared by the wrappers. They mirror what CKernels rejects, so that the error can name
/// the Swift argument instead of only returning a status code.
enum Require {
    /// Largest size CKernels accepts in any dimension (keeps its 64-bit index arithmetic from overflowing).
    static let maximumSize = Int(Int32.max)

    /// `value` must be a size CKernels accepts: 1 ... 2³¹ − 1.
    static func size(_ value: Int, _ name: String, of operation: String) throws {
        guard value >= 1 else {
            throw KernelError.argument(name, of: operation, "must be at least 1, got \(value)", status: CK_ERR_INVALID_SIZE)
        }
        guard value <= maximumSize else {
            throw KernelError.argument(
                name, of: operation, "must be at most \(maximumSize), got \(value)", status: CK_ERR_INVALID_SIZE)
        }
    }

    /// A buffer or array argument must hold exactly `expected` elements; `shape` explains where that comes from.
    static func count(_ found: Int, _ expected: Int, _ name: String, of operation: String, shape: String) throws {
        guard found == expected else {
            throw KernelError.argument(name, of: operation, "has \(found) elements, expected \(expected) (\(shape))")
        }
    }

    /// Like `count`, but a larger buffer is fine (strided matrices, outputs with room to spare).
    static func atLeast(_ found: Int, _ expected: Int, _ name: String, of operation: String, shape: String) throws {
        guard found >= expected else {
            throw KernelError.argument(
                name, of: operation, "has \(found) elements, needs at least \(expected) (\(shape))")
        }
    }

    /// Product of sizes, or a named error if it overflows `Int` (shapes from files can be anything).
    static func product(_ factors: [Int], _ name: String, of operation: String) throws -> Int {
        var result = 1
        for factor in factors {
            let (value, overflow) = result.multipliedReportingOverflow(by: factor)
            guard !overflow else {
                throw KernelError.argument(
                    name, of: operation, "describes more elements than fit in memory (\(factors))",
                    status: CK_ERR_INVALID_SIZE)
            }
            result = value
        }
        return result
    }
}

/// Number of 64-bit words that hold `bits` packed bits (Swift twin of `ck_words`).
@inline(__always)
func wordCount(bits: Int) -> Int { (bits + 63) / 64 }
