import CKernels
import Foundation

// The generic packer: a traced graph (any network built from the library's ops) becomes a packed program.
//
// 1. Fusion. A convolution's output transform is `max(acc·prescale, floor)·scale + bias (+ residual)`, then an
//    optional ReLU — the order in which a network computes α·conv, ReLU, batch norm, a residual add and a ReLU.
//    Each convolution (or pool, or an affine step where nothing else can absorb an op) starts a group; a following
//    ReLU, batch norm or add joins the group while the order above allows it and the value before it has no other
//    reader. Every op is then computed in the training graph's order of float operations, so the packed network
//    gives the same floats, and the same signs, as the training graph in evaluation mode.
// 2. Demand. A value read only by binary convolutions is kept as sign bits alone; a max-pool whose result is read
//    only as signs pools the bits (the sign of a maximum is the maximum of the signs); anything else reads floats.
// 3. Buffers. Groups run in the order their last op ran; a buffer is freed after its last reader and reused by a
//    later value of the same kind and shape.

extension PackedModel {
    /// Traces `model` on one image of `inputShape` (`[H, W, C]`) and packs it (see `pack(_:stateDict:name:variant:)`),
    /// with the model's own weights.
    public static func pack(_ model: Module, inputShape: [Int], name: String, variant: String = "1w1a") throws
        -> PackedModel
    {
        let graph = try NetworkGraph.trace(model, inputShape: inputShape)
        return try pack(graph, stateDict: model.stateDict(), name: name, variant: variant)
    }

    /// Packs a traced graph whose tensors are in `stateDict` (state-dict names, PyTorch shapes): sign(W) of every
    /// binary convolution as bits, α and the eval-mode batch norms folded into per-channel multiply/adds, float
    /// layers as float32. Refused, naming the op and its module: a 1W32A binary convolution (real activations
    /// cannot be packed), a hardtanh whose values rather than signs are used, a multiplication by a constant, a
    /// reshape other than a flatten, a graph whose output is not one vector of logits per image.
    public static func pack(
        _ graph: NetworkGraph, stateDict: [String: SafeTensors.TensorData], name: String, variant: String = "1w1a"
    ) throws -> PackedModel {
        var packer = Packer(graph: graph, tensors: stateDict)
        let (layers, tensors) = try packer.run()
        guard let classes = graph.nodes[graph.output].shape.first, graph.nodes[graph.output].shape.count == 1 else {
            throw BNNError(.graph, 
                "pack: the network's output \(graph.nodes[graph.output].label) has shape "
                    + "\(graph.nodes[graph.output].shape) per image; the packed engine returns one vector of logits")
        }
        return try PackedModel(
            graph: PackedGraph(model: name, variant: variant, input: graph.inputShape, classes: classes, layers: layers),
            tensors: tensors)
    }
}

/// One step being built: a head op and the ops fused into its output transform.
private struct Group {
    enum Head: Equatable {
        case conv, bconv, affine, maxpool, avgpool, globalAvgPool, shortcut, linear
    }

    /// Where the transform stands, in its fixed order of operations.
    enum Stage: Int, Comparable {
        case raw, reluBefore, affine, residual, reluAfter
        static func < (a: Stage, b: Stage) -> Bool { a.rawValue < b.rawValue }
    }

    var head: Head
    /// The node that started the group, and the last node fused into it (whose value the group produces).
    var first: Int, last: Int
    /// The value read (a node id, after aliases).
    var input: Int
    var stage: Stage = .raw
    var reluBefore = false, reluAfter = false
    var scale: [Float]?, bias: [Float]?
    var residual: Int?
    /// For `.linear`: the `[H, W, C]` shape of a value flattened in PyTorch's (c, h, w) order before it.
    var flattenedFrom: [Int]?

    /// Whether `operation` can join the transform at this point.
    func accepts(_ operation: GraphOperation) -> Bool {
        switch (head, operation) {
        case (.conv, .relu), (.bconv, .relu), (.affine, .relu):
            return stage == .raw || stage == .affine || stage == .residual
        case (.conv, .batchNorm), (.bconv, .batchNorm), (.affine, .batchNorm):
            return stage <= .reluBefore
        case (.conv, .add), (.bconv, .add), (.affine, .add):
            return stage <= .affine
        case (.globalAvgPool, .batchNorm):
            return stage == .raw
        default:
            return false
        }
    }
}

/// What a node's value is, for its readers: produced by a group, or another node's value seen differently.
private enum Source {
    case group(Int)
    case input
    /// A flatten/reshape (same floats; `nchw` when the order changes to PyTorch's) or a sign-preserving op.
    case alias(of: Int, flattenNCHW: Bool, signOnly: Bool)
}

private struct Packer {
    let graph: NetworkGraph
    let tensors: [String: SafeTensors.TensorData]
    var groups: [Group] = []
    var source: [Int: Source] = [:]
    var consumers: [[Int]] = []

    init(graph: NetworkGraph, tensors: [String: SafeTensors.TensorData]) {
        self.graph = graph
        self.tensors = tensors
    }

    func fail(_ node: GraphNode, _ reason: String) -> BNNError {
        BNNError(.graph, "pack: \(node.label): \(reason)")
    }

    /// The node whose value `id` is, through aliases, and what the aliases did on the way.
    func resolve(_ id: Int) -> (node: Int, flattenNCHW: Bool, signOnly: Bool) {
        var current = id, nchw = false, signOnly = false
        while case .alias(let of, let flattenNCHW, let sign)? = source[current] {
            nchw = nchw || flattenNCHW
            signOnly = signOnly || sign
            current = of
        }
        return (current, nchw, signOnly)
    }

    /// The group producing node `id`'s value, if `id` is the last node of a group.
    func group(producing id: Int) -> Int? {
        if case .group(let g)? = source[id], groups[g].last == id { return g }
        return nil
    }

    mutating func run() throws -> ([PackedLayer], [String: SafeTensors.TensorData]) {
        consumers = graph.consumers()
        source[0] = .input
        for node in graph.nodes.dropFirst() { try place(node) }
        return try emit()
    }

    // MARK: 1. Fusion

    private mutating func place(_ node: GraphNode) throws {
        let op = node.operation
        switch op {
        case .input:
            throw fail(node, "a second input")
        case .conv2d(let kernel, _, _, let hasBias):
            try requireSquare(node, kernel)
            var group = Group(head: .conv, first: node.id, last: node.id, input: node.inputs[0])
            if hasBias {
                // (acc + b) in the training graph: the bias is the transform's, and nothing can fuse before it.
                group.bias = try floats(node, "bias", count: node.shape[2])
                group.stage = .affine
            }
            start(group, node)
        case .binaryConv2d(let kernel, _, _, let binarizeInput):
            guard binarizeInput else {
                throw fail(
                    node, "a binary convolution with real activations (1W32A) cannot run on packed bits; only 1W1A "
                        + "networks pack")
            }
            try requireSquare(node, kernel)
            start(Group(head: .bconv, first: node.id, last: node.id, input: node.inputs[0]), node)
        case .maxPool2d:
            start(Group(head: .maxpool, first: node.id, last: node.id, input: node.inputs[0]), node)
        case .avgPool2d:
            start(Group(head: .avgpool, first: node.id, last: node.id, input: node.inputs[0]), node)
        case .globalAvgPool:
            start(Group(head: .globalAvgPool, first: node.id, last: node.id, input: node.inputs[0]), node)
        case .shortcutOptionA:
            start(Group(head: .shortcut, first: node.id, last: node.id, input: node.inputs[0]), node)
        case .linear(let hasBias):
            let (from, nchw, signOnly) = resolve(node.inputs[0])
            if signOnly { throw fail(node, "reads the values of a hardtanh; the packed engine keeps only their signs") }
            var group = Group(head: .linear, first: node.id, last: node.id, input: node.inputs[0])
            let shape = graph.nodes[from].shape
            if nchw, shape.count == 3, shape[0] * shape[1] > 1, shape[2] > 1 { group.flattenedFrom = shape }
            if !hasBias { group.bias = [Float](repeating: 0, count: node.shape[0]) }
            start(group, node)
        case .flatten, .reshape:
            let input = graph.nodes[node.inputs[0]]
            guard node.shape.count == 1 else {
                throw fail(node, "a reshape to \(node.shape) per image; only a flatten to one vector packs")
            }
            source[node.id] = .alias(of: input.id, flattenNCHW: op == .flatten, signOnly: false)
        case .hardtanh:
            // sign(clamp(x)) = sign(x): free when only signs are read (checked when the readers are planned).
            source[node.id] = .alias(of: node.inputs[0], flattenNCHW: false, signOnly: true)
        case .scale:
            throw fail(node, "multiplication by a constant is not supported by the packed engine")
        case .relu, .batchNorm, .add:
            try fuseOrStart(node)
        }
    }

    private func requireSquare(_ node: GraphNode, _ kernel: Int) throws {
        guard let name = node.parameters["weight"], let weight = tensors[name], weight.shape.count == 4 else {
            throw fail(node, "its weight is missing from the state dict")
        }
        guard weight.shape[2] == kernel, weight.shape[3] == kernel else {
            throw fail(node, "kernel \(weight.shape[2])×\(weight.shape[3]); the packed engine runs square kernels")
        }
    }

    private mutating func start(_ group: Group, _ node: GraphNode) {
        source[node.id] = .group(groups.count)
        groups.append(group)
    }

    /// A ReLU, batch norm or add joins the group that produced its input when the transform's order allows it and
    /// nothing else reads the value in between; otherwise it starts an affine step.
    private mutating func fuseOrStart(_ node: GraphNode) throws {
        let candidates = node.operation == .add ? [(0, 1), (1, 0)] : [(0, -1)]
        for (main, other) in candidates {
            let input = node.inputs[main]
            guard let g = group(producing: input), consumers[input].count == 1, input != graph.output,
                  groups[g].accepts(node.operation)
            else { continue }
            if other >= 0 {
                // The other operand must be a value that exists when this group's step runs (it runs at its end).
                guard resolve(node.inputs[other]).node != input, !resolve(node.inputs[other]).signOnly else { continue }
                try apply(node, to: g, residual: node.inputs[other])
            } else {
                try apply(node, to: g, residual: nil)
            }
            source[node.id] = .group(g)
            groups[g].last = node.id
            return
        }
        if resolve(node.inputs[0]).signOnly { throw fail(node, "reads the values of a hardtanh; only its signs pack") }
        start(Group(head: .affine, first: node.id, last: node.id, input: node.inputs[0]), node)
        try apply(node, to: groups.count - 1, residual: node.operation == .add ? node.inputs[1] : nil)
    }

    private mutating func apply(_ node: GraphNode, to g: Int, residual: Int?) throws {
        switch node.operation {
        case .relu:
            if groups[g].stage == .raw {
                groups[g].reluBefore = true
                groups[g].stage = .reluBefore
            } else {
                groups[g].reluAfter = true
                groups[g].stage = .reluAfter
            }
        case .batchNorm(let eps):
            let channels = node.shape.last!
            let gamma = try floats(node, "weight", count: channels, optional: true)
            let beta = try floats(node, "bias", count: channels, optional: true)
            let mean = try floats(node, "running_mean", count: channels)
            let variance = try floats(node, "running_var", count: channels)
            let (scale, shift) = batchNormAffine(
                gamma: gamma, beta: beta, mean: mean, invstd: batchNormInverseStd(variance: variance, eps: eps))
            groups[g].scale = scale
            groups[g].bias = shift
            groups[g].stage = .affine
        case .add:
            groups[g].residual = residual
            groups[g].stage = .residual
        default:
            throw fail(node, "cannot be fused (internal)")
        }
    }

    /// A float tensor of the node's parameters with `count` elements (nil if `optional` and the role is absent).
    private func floats(_ node: GraphNode, _ role: String, count: Int, optional: Bool = false) throws -> [Float]? {
        guard let name = node.parameters[role] else {
            if optional { return nil }
            throw fail(node, "has no `\(role)` tensor")
        }
        guard let tensor = tensors[name] else { throw fail(node, "tensor \"\(name)\" is missing from the state dict") }
        let values: [Float]
        do {
            values = try floatValues(tensor)
        } catch {
            throw fail(node, "tensor \"\(name)\": \(error)")
        }
        guard values.count == count else {
            throw fail(node, "tensor \"\(name)\" has \(values.count) elements, expected \(count)")
        }
        return values
    }

    private func floats(_ node: GraphNode, _ role: String, count: Int) throws -> [Float] {
        try floats(node, role, count: count, optional: false)!
    }

    // MARK: 2. Demand and 3. buffers

    private struct Demand {
        var float = false, bits = false
    }

    private func readers(of value: Int) -> [Int] {
        // Readers through aliases: the nodes reading `value` or an alias of it.
        var result: [Int] = []
        for reader in consumers[value] {
            if case .alias? = source[reader] { result += readers(of: reader) } else { result.append(reader) }
        }
        return result
    }

    private mutating func emit() throws -> ([PackedLayer], [String: SafeTensors.TensorData]) {
        let order = groups.indices.sorted { groups[$0].last < groups[$1].last }
        // Demand of each value (by the node that produces it), from the readers, last groups first.
        var demand: [Int: Demand] = [:]
        let outputNode = resolve(graph.output)
        if outputNode.signOnly { throw fail(graph.nodes[graph.output], "the network's output is a hardtanh's signs") }
        demand[outputNode.node, default: Demand()].float = true
        var isBinaryPool = Set<Int>()
        for g in order.reversed() {
            let group = groups[g]
            let own = demand[group.last] ?? Demand()
            guard own.float || own.bits else { continue }  // nothing reads it: the group is dropped
            if group.head == .maxpool && !own.float { isBinaryPool.insert(g) }
            let (input, _, signOnly) = resolve(group.input)
            switch group.head {
            case .bconv:
                demand[input, default: Demand()].bits = true
            case .maxpool where isBinaryPool.contains(g):
                demand[input, default: Demand()].bits = true
            default:
                if signOnly { throw fail(graph.nodes[group.first], "reads the values of a hardtanh; only its signs pack") }
                demand[input, default: Demand()].float = true
            }
            if let residual = group.residual {
                let r = resolve(residual)
                if r.signOnly { throw fail(graph.nodes[group.last], "adds the values of a hardtanh; only its signs pack") }
                demand[r.node, default: Demand()].float = true
            }
        }

        // Remaining readers of each value, to free its buffers after the last one.
        var remaining: [Int: Int] = [:]
        var live: [Int] = []
        for g in order where demand[groups[g].last].map({ $0.float || $0.bits }) == true {
            live.append(g)
            remaining[resolve(groups[g].input).node, default: 0] += 1
            if let residual = groups[g].residual { remaining[resolve(residual).node, default: 0] += 1 }
        }

        var layers: [PackedLayer] = []
        var packed: [String: SafeTensors.TensorData] = [:]
        var floatBuffer: [Int: Int] = [0: 0], bitsBuffer: [Int: Int] = [:]
        var shapes: [Int: (bits: Bool, shape: [Int])] = [0: (false, graph.inputShape)]
        var free: [Int] = []
        var nextBuffer = 1
        var names = Set<String>()

        func allocate(bits: Bool, shape: [Int]) throws -> Int {
            if let index = free.firstIndex(where: { shapes[$0]!.bits == bits && shapes[$0]!.shape == shape }) {
                return free.remove(at: index)
            }
            guard nextBuffer < 64 else {
                throw BNNError(.graph, "pack: the network needs more than 63 live buffers at once; the packed engine has 64")
            }
            defer { nextBuffer += 1 }
            shapes[nextBuffer] = (bits, shape)
            return nextBuffer
        }
        func release(_ value: Int) {
            remaining[value, default: 0] -= 1
            guard remaining[value]! <= 0, value != outputNode.node else { return }
            if let b = floatBuffer[value], b != 0 { free.append(b) }
            if let b = bitsBuffer[value] { free.append(b) }
            floatBuffer[value] = nil
            bitsBuffer[value] = nil
        }
        func uniqueName(_ base: String) -> String {
            var name = base, index = 2
            while names.contains(name) {
                name = "\(base)_\(index)"
                index += 1
            }
            names.insert(name)
            return name
        }
        func put(_ name: String, _ values: [Float], _ shape: [Int]) throws {
            packed[name] = try SafeTensors.TensorData(values, shape: shape)
        }
        /// An affine step with no change of value, writing the signs of a float value (the input image, a shortcut).
        func signs(of value: Int, shape: [Int], name: String) throws {
            let channels = shape.last!
            let layerName = uniqueName(name)
            try put("\(layerName).scale", [Float](repeating: 1, count: channels), [channels])
            try put("\(layerName).bias", [Float](repeating: 0, count: channels), [channels])
            let bits = try allocate(bits: true, shape: shape)
            bitsBuffer[value] = bits
            layers.append(PackedLayer(
                name: layerName, op: .affine, input: floatBuffer[value]!, outputBits: bits,
                height: shape.count == 3 ? shape[0] : 1, width: shape.count == 3 ? shape[1] : 1, channels: channels,
                outChannels: channels))
        }

        if demand[0]?.bits == true { try signs(of: 0, shape: graph.inputShape, name: "input.sign") }

        for g in live {
            let group = groups[g]
            let head = graph.nodes[group.first]
            let want = demand[group.last]!
            let (input, _, _) = resolve(group.input)
            let inShape = graph.nodes[input].shape
            let outShape = graph.nodes[group.last].shape
            let readsBits: Bool
            switch group.head {
            case .bconv: readsBits = true
            case .maxpool: readsBits = isBinaryPool.contains(g)
            default: readsBits = false
            }
            guard let inputBuffer = readsBits ? bitsBuffer[input] : floatBuffer[input] else {
                throw fail(head, "its input is not available as \(readsBits ? "signs" : "floats") (internal)")
            }
            let residualBuffer = try group.residual.map { residual -> Int in
                guard let b = floatBuffer[resolve(residual).node] else { throw fail(head, "residual not available (internal)") }
                return b
            }
            let canWriteBits = ![.shortcut, .globalAvgPool, .linear].contains(group.head)
            let outputFloat = want.float || (want.bits && !canWriteBits)
            let float = outputFloat && !(group.head == .maxpool && isBinaryPool.contains(g))
                ? try allocate(bits: false, shape: outShape) : nil
            let bits = want.bits && canWriteBits ? try allocate(bits: true, shape: outShape) : nil
            let base = head.module.isEmpty ? head.operation.name : head.module
            let name: String
            var layer: PackedLayer
            let (h, w, c) = inShape.count == 3 ? (inShape[0], inShape[1], inShape[2]) : (1, 1, inShape.reduce(1, *))
            let outChannels = outShape.last!
            switch group.head {
            case .conv, .bconv:
                name = uniqueName(base)
                let (k, s, p) = windowOf(head.operation)
                let weightName = head.parameters["weight"]!
                let weight = try floatValues(tensors[weightName]!)
                if group.head == .conv {
                    try put("\(name).weight", ohwi(weight, out: outChannels, channels: c, kernel: k), [outChannels, k, k, c])
                } else {
                    packed["\(name).bits"] = try SafeTensors.TensorData(
                        signBits(weight, out: outChannels, channels: c, kernel: k),
                        shape: [outChannels * k * k, (c + 63) / 64])
                    try put("\(name).prescale", [Float](repeating: try meanAbs(weight), count: outChannels), [outChannels])
                }
                try put("\(name).scale", group.scale ?? [Float](repeating: 1, count: outChannels), [outChannels])
                try put("\(name).bias", group.bias ?? [Float](repeating: 0, count: outChannels), [outChannels])
                layer = PackedLayer(
                    name: name, op: group.head == .conv ? .conv : .bconv, input: inputBuffer, residual: residualBuffer,
                    output: float, outputBits: bits, height: h, width: w, channels: c, outChannels: outChannels,
                    kernel: k, stride: s, padding: p, reluBefore: group.reluBefore, reluAfter: group.reluAfter)
            case .affine:
                name = uniqueName(base.hasSuffix(head.operation.name) ? base : "\(base).\(head.operation.name)")
                try put("\(name).scale", group.scale ?? [Float](repeating: 1, count: c), [c])
                try put("\(name).bias", group.bias ?? [Float](repeating: 0, count: c), [c])
                layer = PackedLayer(
                    name: name, op: .affine, input: inputBuffer, residual: residualBuffer, output: float,
                    outputBits: bits, height: h, width: w, channels: c, outChannels: c, reluBefore: group.reluBefore,
                    reluAfter: group.reluAfter)
            case .maxpool, .avgpool:
                name = uniqueName(base.hasSuffix(head.operation.name) ? base : "\(base).\(head.operation.name)")
                let (k, s, p) = windowOf(head.operation)
                let binary = isBinaryPool.contains(g)
                layer = PackedLayer(
                    name: name, op: group.head == .avgpool ? .avgpool : (binary ? .bmaxpool : .maxpool),
                    input: inputBuffer, output: float, outputBits: bits, height: h, width: w, channels: c,
                    outChannels: c, kernel: k, stride: s, padding: p)
            case .globalAvgPool:
                name = uniqueName(base.hasSuffix(head.operation.name) ? base : "\(base).pool")
                try put("\(name).scale", group.scale ?? [Float](repeating: 1, count: c), [c])
                try put("\(name).bias", group.bias ?? [Float](repeating: 0, count: c), [c])
                layer = PackedLayer(
                    name: name, op: .globalAvgPool, input: inputBuffer, output: float, height: h, width: w,
                    channels: c, outChannels: c)
            case .shortcut:
                guard case .shortcutOptionA(_, let stride) = head.operation else {
                    throw fail(head, "not a shortcut (internal)")
                }
                name = uniqueName(base.hasSuffix("shortcut") ? base : "\(base).shortcut")
                layer = PackedLayer(
                    name: name, op: .shortcut, input: inputBuffer, output: float, height: h, width: w, channels: c,
                    outChannels: outChannels, stride: stride)
            case .linear:
                name = uniqueName(base)
                let features = inShape.reduce(1, *)
                var weight = try floatValues(tensors[head.parameters["weight"]!]!)
                if let from = group.flattenedFrom { weight = nchwColumnsToNHWC(weight, rows: outChannels, shape: from) }
                try put("\(name).weight", weight, [outChannels, features])
                let bias = try group.bias ?? floats(head, "bias", count: outChannels)
                try put("\(name).bias", bias, [outChannels])
                layer = PackedLayer(
                    name: name, op: .linear, input: inputBuffer, output: float, height: 1, width: 1,
                    channels: features, outChannels: outChannels)
            }
            layers.append(layer)
            if let float { floatBuffer[group.last] = float }
            if let bits { bitsBuffer[group.last] = bits }
            release(input)
            if let residual = group.residual { release(resolve(residual).node) }
            if want.bits && !canWriteBits { try signs(of: group.last, shape: outShape, name: "\(name).sign") }
        }
        return (layers, packed)
    }

    private func windowOf(_ operation: GraphOperation) -> (kernel: Int, stride: Int, padding: Int) {
        switch operation {
        case .conv2d(let k, let s, let p, _), .binaryConv2d(let k, let s, let p, _), .maxPool2d(let k, let s, let p),
             .avgPool2d(let k, let s, let p):
            return (k, s, p)
        default:
            return (1, 1, 0)
        }
    }
}

/// Linear weight columns from PyTorch's flatten order (c, h, w) of an `[H, W, C]` value to the packed engine's
/// NHWC order (h, w, c).
private func nchwColumnsToNHWC(_ weight: [Float], rows: Int, shape: [Int]) -> [Float] {
    let (h, w, c) = (shape[0], shape[1], shape[2])
    let features = h * w * c
    var result = [Float](repeating: 0, count: weight.count)
    for row in 0..<rows {
        for channel in 0..<c {
            for pixel in 0..<(h * w) {
                result[row * features + pixel * c + channel] = weight[row * features + channel * h * w + pixel]
            }
        }
    }
    return result
}

/// OIHW → OHWI (the layout of NHWC patches).
private func ohwi(_ w: [Float], out: Int, channels: Int, kernel: Int) -> [Float] {
    var result = [Float](repeating: 0, count: w.count)
    for o in 0..<out {
        for c in 0..<channels {
            for tap in 0..<(kernel * kernel) {
                result[(o * kernel * kernel + tap) * channels + c] = w[(o * channels + c) * kernel * kernel + tap]
            }
        }
    }
    return result
}

/// sign(W) of OIHW weights as bits, rows (o, kh, kw) of ck_words(C) words; bit 1 = negative, sign(0) = +1.
private func signBits(_ w: [Float], out: Int, channels: Int, kernel: Int) -> [UInt64] {
    let words = (channels + 63) / 64, taps = kernel * kernel
    var bits = [UInt64](repeating: 0, count: out * taps * words)
    for o in 0..<out {
        for c in 0..<channels {
            for tap in 0..<taps where w[(o * channels + c) * taps + tap] < 0 {
                bits[(o * taps + tap) * words + c / 64] |= 1 << UInt64(c % 64)
            }
        }
    }
    return bits
}

/// α = mean|W|, computed exactly as the training op does (in double, by the same kernel).
private func meanAbs(_ w: [Float]) throws -> Float {
    var mean = 0.0
    let status = w.withUnsafeBufferPointer { ck_abs_moments_f32($0.baseAddress, Int64($0.count), &mean, nil) }
    guard status == CK_OK else { throw BNNError(.packedModel, "α = mean|W|: \(String(cString: ck_status_message(status)))") }
    return Float(mean)
}
