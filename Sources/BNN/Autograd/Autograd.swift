import CKernels

// The tape. Each op computes its result, then calls `record` with its inputs and one backward rule; the rule
// receives the result's gradient and adds each input's share with `accumulateGradient`. `backward()` orders
// the recorded ops so that every result's gradient is complete before its rule runs, runs each rule once,
// and frees the graph as it goes (so activations are released as early as possible).

/// Whether ops record the graph for `backward()`; on by default, off inside `withNoGrad`.
public enum GradMode {
    /// True unless the current task or thread is inside `withNoGrad`.
    @TaskLocal public static var isEnabled: Bool = true
}

/// Runs `body` with recording off: ops compute values only (evaluation, optimizer updates).
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$isEnabled.withValue(false, operation: body)
}

/// What `backward(gradient:hooks:)` reports as it goes.
struct BackwardHooks {
    /// A leaf's gradient is complete.
    var leafReady: (Tensor) throws -> Void
    /// A rule ran.
    var afterRule: () throws -> Void
}

/// One recorded op: what it read and how its result's gradient reaches those inputs.
final class Node {
    let inputs: [Tensor]
    let backward: (Tensor) throws -> Void

    init(inputs: [Tensor], backward: @escaping (Tensor) throws -> Void) {
        self.inputs = inputs
        self.backward = backward
    }
}

extension Tensor {
    /// Whether an op on `inputs` would be recorded now (grad mode on and some input requires grad); ops use it
    /// to skip saving what only the backward needs.
    public static func isRecording(_ inputs: [Tensor?]) -> Bool {
        GradMode.isEnabled && inputs.contains { $0?.requiresGrad == true }
    }

    /// Records this new tensor as the result of `operation` on `inputs`, with `backward` mapping the result's
    /// gradient to the inputs' (through `accumulateGradient`); does nothing when `isRecording(inputs)` is false.
    public func record(
        _ operation: String, inputs: [Tensor?], backward: @escaping (_ gradient: Tensor) throws -> Void
    ) {
        guard Tensor.isRecording(inputs) else { return }
        setOperation(operation, node: Node(inputs: inputs.compactMap { $0 }, backward: backward))
    }

    /// Adds to this tensor's gradient through `body`, which gets the gradient buffer and `accumulate`: false when
    /// the buffer is new and undefined (write every element), true when it holds earlier gradient (add to it).
    public func accumulateGradient(
        _ body: (_ buffer: UnsafeMutableBufferPointer<Float>, _ accumulate: Bool) throws -> Void
    ) rethrows {
        if let grad {
            try grad.withUnsafeMutableBufferPointer { try body($0, true) }
        } else {
            let fresh = Tensor(uninitializedShape: shape)
            try body(UnsafeMutableBufferPointer(start: fresh.storage.pointer, count: fresh.count), false)
            grad = fresh
        }
    }

    /// Adds `scale · gradient` to this tensor's gradient (same number of elements).
    public func accumulateGradient(_ gradient: Tensor, scale: Float = 1) throws {
        guard gradient.count == count else {
            throw BNNError(.tensor, 
                "accumulateGradient: gradient of shape \(gradient.shape) does not match tensor of shape \(shape)")
        }
        if count == 0 {
            if grad == nil { grad = Tensor(uninitializedShape: shape) }
            return
        }
        try accumulateGradient { buffer, accumulate in
            try check(
                ck_axpby_f32(Int64(count), scale, gradient.storage.pointer, accumulate ? 1 : 0, buffer.baseAddress!),
                "accumulateGradient(\(shape))")
        }
        withExtendedLifetime(gradient) {}
    }

    /// Forgets the gradient (PyTorch's `zero_grad(set_to_none=True)`): the next backward writes it afresh.
    public func zeroGrad() { grad = nil }

    /// Computes the gradient of this tensor with respect to every tensor that requires grad and led to it,
    /// adding it to their `grad`. Without `gradient` the tensor must hold one element (a loss) and is seeded
    /// with 1; otherwise `gradient` (same shape) is the seed. Frees the graph: a second call through the same
    /// ops is an error.
    public func backward(gradient: Tensor? = nil) throws {
        try backward(gradient: gradient, hooks: nil)
    }

    /// `backward(gradient:)` that tells `hooks` when each leaf's gradient is final (no rule still to run adds to it)
    /// and after every rule: what data-parallel training needs to start averaging gradients while the backward
    /// pass goes on.
    func backward(gradient: Tensor?, hooks: BackwardHooks?) throws {
        guard requiresGrad else {
            throw BNNError(.tensor, 
                "backward(): tensor of shape \(shape) does not require grad (no input of its ops required grad, "
                    + "or it was computed inside withNoGrad)")
        }
        if let gradient {
            guard gradient.shape == shape else {
                throw BNNError(.tensor, "backward(gradient:): gradient has shape \(gradient.shape), tensor has \(shape)")
            }
            try accumulateGradient(gradient)
        } else {
            guard count == 1 else {
                throw BNNError(.tensor, 
                    "backward(): tensor of shape \(shape) has \(count) elements; "
                        + "pass backward(gradient:) for non-scalars"
                )
            }
            try accumulateGradient(Tensor(1))
        }
        // Rules that use ops must not extend the graph they are consuming.
        try withNoGrad {
            let order = try topologicalOrder()
            // Rules still to run per leaf that requires grad (a leaf read twice by one op counts twice).
            var pendingRules: [ObjectIdentifier: Int] = [:]
            if hooks != nil {
                for tensor in order {
                    for input in tensor.node!.inputs where input.isLeaf && input.requiresGrad {
                        pendingRules[ObjectIdentifier(input), default: 0] += 1
                    }
                }
                if isLeaf { try hooks!.leafReady(self) }
            }
            for tensor in order.reversed() {
                let node = tensor.node
                // A result no gradient reached (e.g. only an unused branch) has nothing to propagate.
                if let node, let grad = tensor.grad {
                    try node.backward(grad)
                }
                tensor.node = nil
                tensor.grad = nil
                if let hooks, let node {
                    for input in node.inputs where input.isLeaf && input.requiresGrad {
                        let key = ObjectIdentifier(input)
                        let left = pendingRules[key]! - 1
                        pendingRules[key] = left
                        if left == 0 { try hooks.leafReady(input) }
                    }
                    try hooks.afterRule()
                }
            }
        }
    }

    /// Recorded results reachable from this tensor through inputs that require grad, each after all its inputs.
    private func topologicalOrder() throws -> [Tensor] {
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(tensor: Tensor, expanded: Bool)] = [(self, false)]
        while let (tensor, expanded) = stack.popLast() {
            if expanded {
                order.append(tensor)
                continue
            }
            guard !tensor.isLeaf, visited.insert(ObjectIdentifier(tensor)).inserted else { continue }
            guard let node = tensor.node else {
                throw BNNError(.tensor, 
                    "backward(): the graph through `\(tensor.operation ?? "?")` (result shape \(tensor.shape)) was "
                        + "already freed by an earlier backward()")
            }
            stack.append((tensor, true))
            for input in node.inputs where input.requiresGrad && !input.isLeaf {
                if !visited.contains(ObjectIdentifier(input)) { stack.append((input, false)) }
            }
        }
        return order
    }
}
