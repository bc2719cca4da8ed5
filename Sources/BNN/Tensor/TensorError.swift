/// A tensor operation was given arguments it cannot use; the message names the operation, the argument and
/// what was expected versus found.
public struct TensorError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong, e.g. "conv2d: `weight` has 3 input channels but `input` has 4 (input [2, 8, 8, 4])".
    public let message: String

    /// An error with `message`.
    public init(_ message: String) { self.message = message }

    /// The message.
    public var description: String { message }
}
