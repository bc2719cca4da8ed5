import CKernels
import Glibc

/// An n-dimensional array of floats that can record the operations producing it, so that `backward()` can
/// compute gradients of a scalar loss with respect to every tensor that `requiresGrad`.
///
/// Storage is contiguous and row-major. Activations are NHWC (`[N, H, W, C]`), weights keep PyTorch's shapes
/// (convolution OIHW, linear `[out, in]`). A tensor is a reference: copies of it share values, gradient and graph.
public final class Tensor: @unchecked Sendable {
    /// Size of each dimension; `[]` for a scalar.
    public let shape: [Int]
    /// Number of elements (the product of `shape`).
    public let count: Int
    let storage: TensorStorage

    /// Whether gradients flow to this tensor; set it on leaves (parameters), ops set it on their results.
    public var requiresGrad: Bool
    /// The gradient accumulated by `backward()` calls (leaves only; nil until one reaches this tensor).
    public var grad: Tensor?
    /// The op that made this tensor and how to push its gradient back; nil for leaves and once backward ran.
    var node: Node?
    /// The name of the op that made this tensor, nil for a leaf (kept after the graph is freed).
    public private(set) var operation: String?

    /// Whether the tensor was made by the user rather than recorded as the result of an op.
    public var isLeaf: Bool { operation == nil }

    init(storage: TensorStorage, shape: [Int], requiresGrad: Bool = false) {
        self.storage = storage
        self.shape = shape
        self.count = storage.count
        self.requiresGrad = requiresGrad
    }

    /// A tensor with undefined contents, for ops that write every element (shape already validated).
    convenience init(uninitializedShape shape: [Int]) {
        self.init(storage: TensorStorage(uninitializedCount: shape.reduce(1, *)), shape: shape)
    }

    /// A tensor of `shape` holding `data` in row-major order.
    public convenience init(shape: [Int], data: [Float], requiresGrad: Bool = false) throws {
        let count = try Tensor.elementCount(shape, "Tensor(shape:data:)")
        guard data.count == count else {
            throw BNNError(.tensor, 
                "Tensor(shape:data:): `data` has \(data.count) elements but shape \(shape) holds \(count)")
        }
        self.init(uninitializedShape: shape)
        self.requiresGrad = requiresGrad
        data.withUnsafeBufferPointer { source in
            if count > 0 { storage.pointer.update(from: source.baseAddress!, count: count) }
        }
    }

    /// A tensor of `shape` with every element `value`.
    public convenience init(shape: [Int], repeating value: Float, requiresGrad: Bool = false) throws {
        let count = try Tensor.elementCount(shape, "Tensor(shape:repeating:)")
        self.init(uninitializedShape: shape)
        self.requiresGrad = requiresGrad
        storage.pointer.initialize(repeating: value, count: count)
    }

    /// A scalar tensor (shape `[]`).
    public convenience init(_ value: Float, requiresGrad: Bool = false) {
        self.init(uninitializedShape: [])
        self.requiresGrad = requiresGrad
        storage.pointer.initialize(to: value)
    }

    /// A tensor whose elements `body` writes; every element must be written (the memory starts undefined).
    public convenience init(
        unsafeUninitializedShape shape: [Int], initializingWith body: (UnsafeMutableBufferPointer<Float>) throws -> Void
    ) throws {
        _ = try Tensor.elementCount(shape, "Tensor(unsafeUninitializedShape:)")
        self.init(uninitializedShape: shape)
        try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    /// A tensor of zeros.
    public static func zeros(shape: [Int], requiresGrad: Bool = false) throws -> Tensor {
        try Tensor(shape: shape, repeating: 0, requiresGrad: requiresGrad)
    }

    /// A tensor of ones.
    public static func ones(shape: [Int], requiresGrad: Bool = false) throws -> Tensor {
        try Tensor(shape: shape, repeating: 1, requiresGrad: requiresGrad)
    }

    /// Samples of the normal distribution N(mean, std²) drawn from `generator` (Box–Muller, two per pair of draws).
    public static func randn<G: RandomNumberGenerator>(
        shape: [Int], mean: Float = 0, std: Float = 1, requiresGrad: Bool = false, using generator: inout G
    ) throws -> Tensor {
        let result = try Tensor(unsafeUninitializedShape: shape) { buffer in
            var i = 0
            while i < buffer.count {
                // 53 random bits give u1 in (0, 1], so the logarithm is finite.
                let u1 = Double(generator.next() >> 11 + 1) * 0x1p-53
                let u2 = Double(generator.next() >> 11) * 0x1p-53
                let radius = (-2 * log(u1)).squareRoot()
                buffer[i] = mean + std * Float(radius * cos(2 * .pi * u2))
                if i + 1 < buffer.count { buffer[i + 1] = mean + std * Float(radius * sin(2 * .pi * u2)) }
                i += 2
            }
        }
        result.requiresGrad = requiresGrad
        return result
    }

    /// Samples of the uniform distribution on `range` drawn from `generator`.
    public static func uniform<G: RandomNumberGenerator>(
        shape: [Int], in range: ClosedRange<Float>, requiresGrad: Bool = false, using generator: inout G
    ) throws -> Tensor {
        let result = try Tensor(unsafeUninitializedShape: shape) { buffer in
            for i in buffer.indices {
                let unit = Float(generator.next() >> 40) * 0x1p-24
                buffer[i] = range.lowerBound + (range.upperBound - range.lowerBound) * unit
            }
        }
        result.requiresGrad = requiresGrad
        return result
    }

    /// Number of elements of `shape`, or an error naming `operation` if a size is negative or the product overflows.
    static func elementCount(_ shape: [Int], _ operation: String) throws -> Int {
        var count = 1
        for size in shape {
            guard size >= 0 else { throw BNNError(.tensor, "\(operation): shape \(shape) has a negative size") }
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow, product <= 1 << 40 else {
                throw BNNError(.tensor, "\(operation): shape \(shape) has more elements than fit in memory")
            }
            count = product
        }
        return count
    }

    /// Rank (number of dimensions).
    public var rank: Int { shape.count }

    /// The elements in row-major order (a copy).
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }

    /// The single element of a one-element tensor (e.g. a loss).
    public func item() throws -> Float {
        guard count == 1 else { throw BNNError(.tensor, "item(): tensor of shape \(shape) has \(count) elements, not 1") }
        return storage.pointer.pointee
    }

    /// Calls `body` with the elements in row-major order.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(UnsafeBufferPointer(start: storage.pointer, count: count)) }
    }

    /// Calls `body` with writable elements; changes are not recorded by autograd (for optimizers and loaders).
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R
    {
        try withExtendedLifetime(storage) { try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count)) }
    }

    /// The same values without graph or gradient (shares memory: writes to one show in the other).
    public func detached() -> Tensor { Tensor(storage: storage, shape: shape) }

    /// A copy of the values in new memory, without graph or gradient.
    public func copy() -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        if count > 0 { result.storage.pointer.update(from: storage.pointer, count: count) }
        return result
    }

    /// Marks this tensor as the result of `operation`; called by `record` only.
    func setOperation(_ name: String, node: Node) {
        operation = name
        self.node = node
        requiresGrad = true
    }
}

extension Tensor: CustomStringConvertible {
    /// Shape, a few leading values and the op that made the tensor.
    public var description: String {
        let shown = UnsafeBufferPointer(start: storage.pointer, count: min(count, 8)).map { "\($0)" }
        let values = shown.joined(separator: ", ") + (count > 8 ? ", …" : "")
        let origin = operation.map { ", op: \($0)" } ?? (requiresGrad ? ", requiresGrad" : "")
        return "Tensor(shape: \(shape), [\(values)]\(origin))"
    }
}
