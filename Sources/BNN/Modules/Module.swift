// Reflection, not registration: a subclass declares its parameters and sub-modules as stored properties and
// the base class finds them with `Mirror`, in declaration order. The dot-joined property path of a tensor is
// its key in the state dict, which is why property names follow PyTorch's attribute names (`conv1`, `bn1`,
// `layer1`, `linear`): a checkpoint written here loads into the paper's PyTorch model and back.

/// A building block of a network: owns parameters (tensors that require grad), buffers (saved state that is
/// not trained, such as batch-norm running statistics) and child modules, and maps an input to an output.
///
/// Stored properties are discovered by reflection: a `Tensor` is a parameter when it requires grad and a buffer
/// otherwise; a `Module` is a child; an array of modules (or of tensors) gets indexed names (`layer1.0`);
/// optionals are followed when set. Other properties are ignored. State that has no tensor property of its own
/// (batch norm's running statistics) is declared by overriding `customBuffers`. The module graph must be a tree.
open class Module {
    /// Training mode (batch statistics in batch norm) or evaluation mode (running statistics); set by
    /// `train()` / `eval()` on the whole tree. New modules are in training mode, as in PyTorch.
    public private(set) var isTraining: Bool = true

    /// A module in training mode.
    public init() {}

    /// The forward pass. Subclasses override it; the base class has no computation of its own.
    open func callAsFunction(_ x: Tensor) throws -> Tensor {
        throw BNNError(.module, "\(type(of: self)) does not define a forward pass (override callAsFunction(_:))")
    }

    /// State of this module (not its children) that has no stored `Tensor` property of its own, listed after the
    /// reflected buffers under this module's prefix — e.g. batch norm's `running_mean` and `num_batches_tracked`.
    open var customBuffers: [(name: String, buffer: ModuleBuffer)] { [] }

    /// Puts this module and all its descendants in training mode.
    public func train() { setTraining(true) }

    /// Puts this module and all its descendants in evaluation mode.
    public func eval() { setTraining(false) }

    private func setTraining(_ training: Bool) {
        isTraining = training
        for child in reflectedMembers().children { child.module.setTraining(training) }
    }

    // MARK: Reflection

    /// The tensors and child modules held directly by this module, in declaration order (superclass first).
    private func reflectedMembers() -> (tensors: [(name: String, tensor: Tensor)], children: [(name: String, module: Module)]) {
        var mirrors: [Mirror] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        while let current = mirror {
            mirrors.append(current)
            mirror = current.superclassMirror
        }
        var tensors: [(name: String, tensor: Tensor)] = []
        var children: [(name: String, module: Module)] = []
        for mirror in mirrors.reversed() {
            for child in mirror.children {
                guard let label = child.label else { continue }
                Module.collect(child.value, name: label, tensors: &tensors, children: &children)
            }
        }
        return (tensors, children)
    }

    private static func collect(
        _ value: Any, name: String, tensors: inout [(name: String, tensor: Tensor)],
        children: inout [(name: String, module: Module)]
    ) {
        if let tensor = value as? Tensor {
            tensors.append((name, tensor))
        } else if let module = value as? Module {
            children.append((name, module))
        } else if let modules = value as? [Module] {
            for (index, module) in modules.enumerated() { children.append(("\(name).\(index)", module)) }
        } else if let list = value as? [Tensor] {
            for (index, tensor) in list.enumerated() { tensors.append(("\(name).\(index)", tensor)) }
        } else {
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .optional, let wrapped = mirror.children.first {
                collect(wrapped.value, name: name, tensors: &tensors, children: &children)
            }
        }
    }

    /// Every entry of the state dict in PyTorch's order: a module's own parameters, then its own buffers, then
    /// each child's entries in turn.
    func stateEntries(prefix: String = "") -> [(name: String, entry: StateEntry)] {
        let members = reflectedMembers()
        var entries: [(name: String, entry: StateEntry)] = []
        for (name, tensor) in members.tensors where tensor.requiresGrad {
            entries.append((prefix + name, .parameter(tensor)))
        }
        for (name, tensor) in members.tensors where !tensor.requiresGrad {
            entries.append((prefix + name, .buffer(.floats(tensor))))
        }
        for (name, buffer) in customBuffers { entries.append((prefix + name, .buffer(buffer))) }
        for (name, child) in members.children {
            entries.append(contentsOf: child.stateEntries(prefix: prefix + name + "."))
        }
        return entries
    }

    // MARK: Public views of the tree

    /// The child modules held directly by this module, with their property names (`layer1.0` for arrays).
    public func namedChildren() -> [(name: String, module: Module)] { reflectedMembers().children }

    /// This module (name "") and every descendant, depth first, with dot-joined names as in PyTorch's
    /// `named_modules()`.
    public func namedModules() -> [(name: String, module: Module)] {
        var result: [(name: String, module: Module)] = [("", self)]
        for (name, child) in namedChildren() {
            result.append(contentsOf: child.namedModules().map { ($0.name.isEmpty ? name : name + "." + $0.name, $0.module) })
        }
        return result
    }

    /// Every trainable tensor of the tree with its state-dict name (e.g. `layer1.0.conv1.weight`), in PyTorch's
    /// `named_parameters()` order: what an optimizer updates.
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        stateEntries().compactMap { name, entry in
            if case .parameter(let tensor) = entry { return (name, tensor) }
            return nil
        }
    }

    /// Every float buffer of the tree (e.g. `bn1.running_mean`); integer counters are in `stateDict()` only.
    public func namedBuffers() -> [(name: String, tensor: Tensor)] {
        stateEntries().compactMap { name, entry in
            if case .buffer(.floats(let tensor)) = entry { return (name, tensor) }
            return nil
        }
    }

    /// Number of trainable elements (PyTorch's `sum(p.numel() for p in model.parameters())`).
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

    /// The keys of `stateDict()` in PyTorch's `state_dict()` order.
    public func stateDictKeys() -> [String] { stateEntries().map(\.name) }

    // MARK: State dict

    /// The module's state under PyTorch's `state_dict` names: parameters and float buffers as F32 with their
    /// shapes (convolutions OIHW), counters such as `num_batches_tracked` as I64 scalars (shape []).
    public func stateDict() -> [String: SafeTensors.TensorData] {
        var result: [String: SafeTensors.TensorData] = [:]
        for (name, entry) in stateEntries() {
            switch entry {
            case .parameter(let tensor), .buffer(.floats(let tensor)):
                result[name] = tensorData(tensor.scalars, shape: tensor.shape)
            case .buffer(.integer(let get, _)):
                result[name] = tensorData([Int64(get())], shape: [])
            }
        }
        return result
    }

    /// Copies `tensors` into the module's parameters and buffers (in place: optimizers and views keep working).
    ///
    /// Every entry is checked before anything is written, so a failed load changes nothing. Always refused: a
    /// shape that differs from the module's, a dtype that cannot hold the value (floats: F32, F64, F16, BF16;
    /// counters: I64, I32; a non-integral or negative counter). With `strict` (the default) also refused: keys
    /// the module has that `tensors` lacks, and keys of `tensors` the module does not have. The error lists
    /// every problem with its key.
    public func loadStateDict(_ tensors: [String: SafeTensors.TensorData], strict: Bool = true) throws {
        let entries = stateEntries()
        var missing: [String] = []
        var problems: [StateDictError.Problem] = []
        var floatUpdates: [(tensor: Tensor, values: [Float])] = []
        var integerUpdates: [(set: (Int) -> Void, value: Int)] = []
        for (name, entry) in entries {
            guard let data = tensors[name] else {
                missing.append(name)
                continue
            }
            switch entry {
            case .parameter(let tensor), .buffer(.floats(let tensor)):
                guard data.shape == tensor.shape else {
                    problems.append(.init(key: name, reason: "expected shape \(tensor.shape), found \(data.shape)"))
                    continue
                }
                do {
                    floatUpdates.append((tensor, try floatValues(data)))
                } catch {
                    problems.append(.init(key: name, reason: "\(error)"))
                }
            case .buffer(.integer(_, let set)):
                guard data.shape == [] || data.shape == [1] else {
                    problems.append(.init(key: name, reason: "expected shape [] (a counter), found \(data.shape)"))
                    continue
                }
                do {
                    integerUpdates.append((set, try counterValue(data)))
                } catch {
                    problems.append(.init(key: name, reason: "\(error)"))
                }
            }
        }
        let known = Set(entries.map(\.name))
        let unexpected = tensors.keys.filter { !known.contains($0) }.sorted()
        if !problems.isEmpty || (strict && !(missing.isEmpty && unexpected.isEmpty)) {
            throw StateDictError(
                module: String(describing: type(of: self)), missingKeys: strict ? missing : [],
                unexpectedKeys: strict ? unexpected : [], problems: problems)
        }
        for (tensor, values) in floatUpdates {
            tensor.withUnsafeMutableBufferPointer { buffer in
                values.withUnsafeBufferPointer { source in
                    if let base = source.baseAddress, buffer.count > 0 { buffer.baseAddress!.update(from: base, count: buffer.count) }
                }
            }
        }
        for (set, value) in integerUpdates { set(value) }
    }
}

/// Non-trainable state a module declares in `Module.customBuffers`.
public enum ModuleBuffer {
    /// A float tensor saved as F32 and loaded in place (e.g. `running_mean`).
    case floats(Tensor)
    /// An integer saved as an I64 scalar (e.g. `num_batches_tracked`), read and written through the closures.
    case integer(get: () -> Int, set: (Int) -> Void)
}

/// One entry of a module's state dict.
enum StateEntry {
    case parameter(Tensor)
    case buffer(ModuleBuffer)
}

/// `loadStateDict` refused a state dict: the keys missing or unexpected and every entry it could not use.
public struct StateDictError: Error, CustomStringConvertible, Equatable, Sendable {
    /// An entry that exists on both sides but cannot be loaded (shape or dtype).
    public struct Problem: Equatable, Sendable {
        /// The state-dict key, e.g. `layer1.0.conv1.weight`.
        public let key: String
        /// Why, e.g. "expected shape [16, 16, 3, 3], found [16, 16, 1, 1]".
        public let reason: String
    }

    /// The type of the module being loaded.
    public let module: String
    /// Keys the module has and the state dict lacks (strict loads only).
    public let missingKeys: [String]
    /// Keys of the state dict the module does not have (strict loads only).
    public let unexpectedKeys: [String]
    /// Entries with a wrong shape or dtype.
    public let problems: [Problem]

    /// The problems, one clause each, in the order missing, unexpected, per-key; long lists (weights of another
    /// network) show their first keys and a count.
    public var description: String {
        func list(_ keys: [String]) -> String {
            let shown = keys.prefix(8).joined(separator: ", ")
            return keys.count > 8 ? shown + " and \(keys.count - 8) more" : shown
        }
        var parts: [String] = []
        if !missingKeys.isEmpty { parts.append("missing keys: " + list(missingKeys)) }
        if !unexpectedKeys.isEmpty { parts.append("unexpected keys: " + list(unexpectedKeys)) }
        for problem in problems.prefix(8) { parts.append("\"\(problem.key)\": \(problem.reason)") }
        if problems.count > 8 { parts.append("and \(problems.count - 8) more entries of the wrong shape or type") }
        return "loadStateDict(\(module)): " + parts.joined(separator: "; ")
    }
}

/// A SafeTensors entry whose byte count matches `shape` by construction.
func tensorData<Element: SafeTensorsElement>(_ values: [Element], shape: [Int]) -> SafeTensors.TensorData {
    do {
        return try SafeTensors.TensorData(values, shape: shape)
    } catch {
        // Unreachable: `values.count` is the product of `shape` for every caller.
        preconditionFailure("tensorData: \(values.count) values do not fill shape \(shape): \(error)")
    }
}

/// The elements of a floating-point entry as Float (F32 as is; F64, F16, BF16 rounded to nearest).
func floatValues(_ data: SafeTensors.TensorData) throws -> [Float] {
    switch data.dtype {
    case .f32:
        return try data.floats()
    case .f64:
        return try data.doubles().map { Float($0) }
    case .f16:
        return stride(from: 0, to: data.bytes.count, by: 2).map { offset in
            Float(Float16(bitPattern: UInt16(data.bytes[offset]) | UInt16(data.bytes[offset + 1]) << 8))
        }
    case .bf16:
        return stride(from: 0, to: data.bytes.count, by: 2).map { offset in
            Float(bitPattern: (UInt32(data.bytes[offset]) | UInt32(data.bytes[offset + 1]) << 8) << 16)
        }
    default:
        throw BNNError(.module, "dtype \(data.dtype.rawValue) is not a float type (expected F32, F64, F16 or BF16)")
    }
}

/// Counters read from files are at most 2^53: far beyond any run's batches, exact as a Double (batch norm's
/// cumulative average divides by the count), and far enough from Int.max that training can still add to them.
let maximumCounter: Int64 = 1 << 53

/// The single non-negative integer of a counter entry (I64 or I32), at most `maximumCounter`.
func counterValue(_ data: SafeTensors.TensorData) throws -> Int {
    let value: Int64
    switch data.dtype {
    case .i64: value = try data.int64s()[0]
    case .i32: value = Int64(try data.int32s()[0])
    default: throw BNNError(.module, "dtype \(data.dtype.rawValue) is not an integer counter type (expected I64 or I32)")
    }
    guard value >= 0 else { throw BNNError(.module, "a counter must not be negative, found \(value)") }
    guard value <= maximumCounter else {
        throw BNNError(.module, "a counter must be at most \(maximumCounter) (the limit), found \(value)")
    }
    return Int(value)
}
