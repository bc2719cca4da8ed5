import CKernels

/// Element-wise sum of two tensors of the same shape (e.g. a residual connection).
public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard a.shape == b.shape else {
        throw BNNError(.tensor, "add: shapes differ: `a` is \(a.shape), `b` is \(b.shape) (no broadcasting)")
    }
    try requireNonEmpty(a, "a", of: "add")
    let result = Tensor(uninitializedShape: a.shape)
    try check(ck_add_f32(a.pointer, b.pointer, Int64(a.count), result.pointer), "add(\(a.shape))")
    GraphTracer.record(.add, inputs: [a, b], result: result)
    result.record("add", inputs: [a, b]) { gradient in
        if a.requiresGrad { try a.accumulateGradient(gradient) }
        if b.requiresGrad { try b.accumulateGradient(gradient) }
    }
    return result
}

/// Every element of `x` multiplied by `scalar`.
public func multiply(_ x: Tensor, by scalar: Float) throws -> Tensor {
    try requireNonEmpty(x, "x", of: "multiply")
    let result = Tensor(uninitializedShape: x.shape)
    try check(ck_axpby_f32(Int64(x.count), scalar, x.pointer, 0, result.pointer), "multiply(\(x.shape), by:)")
    GraphTracer.record(.scale(scalar), inputs: [x], result: result)
    result.record("multiply", inputs: [x]) { gradient in
        try x.accumulateGradient(gradient, scale: scalar)
    }
    return result
}

extension Tensor {
    /// Element-wise sum of two tensors of the same shape (see `add`).
    public static func + (lhs: Tensor, rhs: Tensor) throws -> Tensor { try add(lhs, rhs) }

    /// The tensor scaled by a number (see `multiply`).
    public static func * (lhs: Float, rhs: Tensor) throws -> Tensor { try multiply(rhs, by: lhs) }

    /// The tensor scaled by a number (see `multiply`).
    public static func * (lhs: Tensor, rhs: Float) throws -> Tensor { try multiply(lhs, by: rhs) }
}
