// A network as data: the operations of one evaluation-mode forward pass, recorded as the ops run. Tracing runs the
// model itself (any module tree, combinators or a custom `callAsFunction`), so the graph is what the model
// computes, not what a description of it claims; the packer, the summary and the registry work from it.

/// What one node of a traced graph computes. Shapes and parameters live on the node.
public enum GraphOperation: Equatable, Sendable {
    /// The network's input image.
    case input
    /// Real-valued convolution (`conv2d`).
    case conv2d(kernel: Int, stride: Int, padding: Int, bias: Bool)
    /// Binary convolution (`binaryConv2d`): α·sign(W) over sign(x) (`binarizeInput`, 1W1A) or over x (1W32A).
    case binaryConv2d(kernel: Int, stride: Int, padding: Int, binarizeInput: Bool)
    /// Batch normalisation of the last dimension (2-d or 1-d), eval mode.
    case batchNorm(eps: Float)
    /// `max(x, 0)`.
    case relu
    /// `clamp(x, min, max)`.
    case hardtanh(min: Float, max: Float)
    /// Max-pool (padding −∞).
    case maxPool2d(kernel: Int, stride: Int, padding: Int)
    /// Average pool (zero padding counted).
    case avgPool2d(kernel: Int, stride: Int, padding: Int)
    /// Mean over height and width.
    case globalAvgPool
    /// `[H, W, C]` → `[C·H·W]` in PyTorch's (c, h, w) order.
    case flatten
    /// Same elements, another shape (row-major order unchanged).
    case reshape
    /// Fully connected layer.
    case linear(bias: Bool)
    /// Element-wise sum of two inputs of the same shape.
    case add
    /// Multiplication by a constant.
    case scale(Float)
    /// Every `stride`-th pixel with `channelPadding` zero channels on each side.
    case shortcutOptionA(channelPadding: Int, stride: Int)

    /// A short name, as in error messages and summaries ("conv2d", "binaryConv2d", ...).
    public var name: String {
        switch self {
        case .input: return "input"
        case .conv2d: return "conv2d"
        case .binaryConv2d(_, _, _, let binarizeInput): return binarizeInput ? "binaryConv2d" : "binaryConv2d(1W32A)"
        case .batchNorm: return "batchNorm"
        case .relu: return "relu"
        case .hardtanh: return "hardtanh"
        case .maxPool2d: return "maxPool2d"
        case .avgPool2d: return "avgPool2d"
        case .globalAvgPool: return "globalAvgPool"
        case .flatten: return "flatten"
        case .reshape: return "reshape"
        case .linear: return "linear"
        case .add: return "add"
        case .scale: return "scale"
        case .shortcutOptionA: return "shortcutOptionA"
        }
    }
}

/// One operation of a traced graph.
public struct GraphNode: Equatable, Sendable {
    /// Position in `NetworkGraph.nodes`; inputs always have smaller ids.
    public let id: Int
    /// What it computes.
    public let operation: GraphOperation
    /// The nodes whose results it reads, in the op's argument order.
    public let inputs: [Int]
    /// Shape of its result for one image (without the batch dimension), e.g. `[16, 16, 32]` or `[10]`.
    public let shape: [Int]
    /// State-dict names of the tensors it reads, by role: `weight`, `bias`, `running_mean`, `running_var`.
    public let parameters: [String: String]
    /// Path of the module that ran it (`layer1.0.conv1`), or "" when no module can be named.
    public let module: String

    /// "binaryConv2d at layer1.0.conv1", for messages.
    public var label: String { module.isEmpty ? "`\(operation.name)` (node \(id))" : "`\(operation.name)` at `\(module)`" }
}

/// A traced network: nodes in execution order, node 0 the input.
public struct NetworkGraph: Equatable, Sendable {
    /// Input shape of one image, `[H, W, C]`.
    public let inputShape: [Int]
    /// The nodes; `nodes[i].id == i`.
    public let nodes: [GraphNode]
    /// The node whose result the network returns.
    public let output: Int

    /// Runs `model` once in evaluation mode, without gradients, on one zero image of `inputShape` (`[H, W, C]`) and
    /// records every op. The model's mode is restored afterwards. Fails, naming the operation, when the forward pass
    /// uses a tensor that no traced op made (a computation outside the library's ops) or fails itself.
    public static func trace(_ model: Module, inputShape: [Int]) throws -> NetworkGraph {
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 >= 1 }) else {
            throw BNNError(.graph, "trace: the input shape must be [height, width, channels] of positive sizes, got \(inputShape)")
        }
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        let tracer = GraphTracer(model: model)
        let input = try Tensor.zeros(shape: [1] + inputShape)
        tracer.addInput(input)
        let output: Tensor
        do {
            output = try GraphTracer.$current.withValue(tracer) { try withNoGrad { try model(input) } }
        } catch {
            throw tracer.failure ?? BNNError(.graph, "trace: the forward pass of \(type(of: model)) failed: \(error)")
        }
        if let failure = tracer.failure { throw failure }
        guard let result = tracer.node(of: output) else {
            throw BNNError(.graph, "trace: the model's output was not made by a traced operation")
        }
        return NetworkGraph(inputShape: inputShape, nodes: tracer.nodes, output: result)
    }

    /// For each node, the ids of the nodes that read its result (a node reading the same input twice appears twice).
    public func consumers() -> [[Int]] {
        var result = [[Int]](repeating: [], count: nodes.count)
        for node in nodes { for input in node.inputs { result[input].append(node.id) } }
        return result
    }
}

/// Records the ops of one forward pass. Ops call `GraphTracer.record` after computing their result; outside a trace
/// that is one task-local read.
final class GraphTracer: @unchecked Sendable {
    /// The trace in progress, if any.
    @TaskLocal static var current: GraphTracer?
    /// The innermost layer module running (set by the library's layers), which names the ops it calls.
    @TaskLocal static var module: ObjectIdentifier?

    private(set) var nodes: [GraphNode] = []
    private(set) var failure: BNNError?
    private var nodeOfTensor: [ObjectIdentifier: Int] = [:]
    private var tensors: [Tensor] = []  // keeps every traced tensor alive, so no identifier is reused
    private let names: [ObjectIdentifier: String]
    private let modulePaths: [ObjectIdentifier: String]

    init(model: Module) {
        var names: [ObjectIdentifier: String] = [:]
        for (name, tensor) in model.namedParameters() + model.namedBuffers() { names[ObjectIdentifier(tensor)] = name }
        self.names = names
        var paths: [ObjectIdentifier: String] = [:]
        for (name, module) in model.namedModules() { paths[ObjectIdentifier(module)] = name }
        modulePaths = paths
    }

    func addInput(_ tensor: Tensor) {
        nodeOfTensor[ObjectIdentifier(tensor)] = 0
        tensors.append(tensor)
        nodes.append(GraphNode(
            id: 0, operation: .input, inputs: [], shape: Array(tensor.shape.dropFirst()), parameters: [:], module: ""))
    }

    func node(of tensor: Tensor) -> Int? { nodeOfTensor[ObjectIdentifier(tensor)] }

    /// Runs `body` as the computation of `module` (so the ops it calls are named after it) when tracing.
    static func within<R>(_ module: Module, _ body: () throws -> R) rethrows -> R {
        guard current != nil else { return try body() }
        return try $module.withValue(ObjectIdentifier(module), operation: body)
    }

    /// Records `result = operation(inputs)` reading the named `parameters` (role → tensor) when a trace is running.
    static func record(
        _ operation: GraphOperation, inputs: [Tensor], result: Tensor, parameters: [(role: String, tensor: Tensor?)] = []
    ) {
        current?.add(operation, inputs: inputs, result: result, parameters: parameters)
    }

    private func add(
        _ operation: GraphOperation, inputs: [Tensor], result: Tensor, parameters: [(role: String, tensor: Tensor?)]
    ) {
        guard failure == nil else { return }
        var named: [String: String] = [:]
        for (role, tensor) in parameters {
            guard let tensor else { continue }
            guard let name = names[ObjectIdentifier(tensor)] else {
                failure = BNNError(.graph, 
                    "trace: `\(operation.name)`\(location()) reads a `\(role)` tensor that is not a parameter or buffer "
                        + "of the model (only the model's own tensors can be saved and packed)")
                return
            }
            named[role] = name
        }
        var ids: [Int] = []
        for input in inputs {
            guard let id = nodeOfTensor[ObjectIdentifier(input)] else {
                failure = BNNError(.graph, 
                    "trace: `\(operation.name)`\(location()) reads a tensor of shape \(input.shape) that no traced operation "
                        + "made (computed outside the library's ops, or a parameter used as an activation)")
                return
            }
            ids.append(id)
        }
        var module = GraphTracer.module.flatMap { modulePaths[$0] } ?? ""
        if module.isEmpty, let first = named["weight"] ?? named.values.sorted().first,
           let dot = first.lastIndex(of: ".") {
            module = String(first[..<dot])
        }
        let id = nodes.count
        nodes.append(GraphNode(
            id: id, operation: operation, inputs: ids, shape: Array(result.shape.dropFirst()), parameters: named,
            module: module))
        nodeOfTensor[ObjectIdentifier(result)] = id
        tensors.append(result)
    }

    private func location() -> String {
        guard let module = GraphTracer.module.flatMap({ modulePaths[$0] }), !module.isEmpty else { return "" }
        return " at `\(module)`"
    }
}
