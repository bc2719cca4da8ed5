/// An operation of the library was given something it cannot use, or a file it read describes something
/// impossible. The message names the operation, module, argument, file, layer or tensor at fault and what was
/// expected versus found; `kind` says which part of the library refused.
public struct BNNError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The part of the library that refused.
    public enum Kind: String, Sendable, CaseIterable {
        /// A tensor or a tensor operation (shapes, ranks, arguments of an op, autograd).
        case tensor
        /// A module could not be built or run as asked.
        case module
        /// A network could not be traced, packed or summarised.
        case graph
        /// An optimizer was configured or loaded with something it cannot use.
        case optimizer
        /// An estimator name or parameter that cannot be used.
        case estimator
        /// A packed model file, or what it describes.
        case packedModel
    }

    /// Which part of the library refused.
    public let kind: Kind
    /// What is wrong and where, e.g. "conv2d: `weight` has 3 input channels but `input` has 4 (input [2, 8, 8, 4])".
    public let message: String

    /// An error of `kind` saying `message`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The message.
    public var description: String { message }
}
