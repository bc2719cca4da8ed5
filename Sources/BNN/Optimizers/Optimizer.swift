/// Updates parameters from their gradients, with per-parameter state saved by parameter name so a checkpoint
/// can resume it exactly.
public protocol Optimizer: AnyObject {
    /// The learning rate of the next `step()`; a schedule sets it each epoch.
    var learningRate: Float { get set }
    /// Updates every parameter that has a gradient (parameters without one are left alone, as in PyTorch).
    func step() throws
    /// Forgets every parameter's gradient before the next backward pass.
    func zeroGrad()
    /// The per-parameter state under `<parameter name>.<field>` (e.g. `layer1.0.conv1.weight.momentum_buffer`).
    func stateDict() -> [String: SafeTensors.TensorData]
    /// Replaces the state with `state` (as returned by `stateDict()`); checks every key and shape first, so a
    /// refused state changes nothing.
    func loadStateDict(_ state: [String: SafeTensors.TensorData]) throws
}

/// The parameter list every optimizer starts from, checked once: names and tensors must be unique, or an
/// update would be applied twice and state keys would collide.
struct ParameterList {
    let names: [String]
    let tensors: [Tensor]
    let index: [String: Int]
    /// Why the list cannot be used, reported by `step()` and `loadStateDict` (initialisers do not throw).
    let problem: String?

    init(_ parameters: [(name: String, tensor: Tensor)], optimizer: String) {
        names = parameters.map(\.name)
        tensors = parameters.map(\.tensor)
        var index: [String: Int] = [:]
        var seen = Set<ObjectIdentifier>()
        var problem: String?
        for (position, (name, tensor)) in parameters.enumerated() {
            if index[name] != nil, problem == nil {
                problem = "\(optimizer): parameter name \"\(name)\" appears more than once"
            }
            if !seen.insert(ObjectIdentifier(tensor)).inserted, problem == nil {
                problem = "\(optimizer): parameter \"\(name)\" is the same tensor as an earlier parameter"
            }
            index[name] = index[name] ?? position
        }
        self.index = index
        self.problem = problem
    }

    func check() throws {
        if let problem { throw BNNError(.optimizer, problem) }
    }

    /// Splits a state key `<parameter>.<field>` at the last dot and finds the parameter.
    func locate(_ key: String, optimizer: String, fields: [String]) throws -> (parameter: Int, field: String) {
        guard let dot = key.lastIndex(of: "."), let position = index[String(key[..<dot])] else {
            throw BNNError(.optimizer, "\(optimizer).loadStateDict: key \"\(key)\" names no parameter of this optimizer")
        }
        let field = String(key[key.index(after: dot)...])
        guard fields.contains(field) else {
            throw BNNError(.optimizer, 
                "\(optimizer).loadStateDict: key \"\(key)\" has field \"\(field)\", expected one of "
                    + fields.joined(separator: ", "))
        }
        return (position, field)
    }

    /// The F32 (or other float) values of a state entry shaped like parameter `position`.
    func values(_ data: SafeTensors.TensorData, key: String, parameter position: Int, optimizer: String) throws -> [Float] {
        guard data.shape == tensors[position].shape else {
            throw BNNError(.optimizer, 
                "\(optimizer).loadStateDict: \"\(key)\": expected shape \(tensors[position].shape), found \(data.shape)")
        }
        do {
            return try floatValues(data)
        } catch {
            throw BNNError(.optimizer, "\(optimizer).loadStateDict: \"\(key)\": \(error)")
        }
    }
}

/// Throws unless `value` is finite and not negative.
func requireNonNegative(_ value: Float, _ name: String, of optimizer: String) throws {
    guard value.isFinite, value >= 0 else {
        throw BNNError(.optimizer, "\(optimizer): `\(name)` must be finite and ≥ 0, got \(value)")
    }
}
