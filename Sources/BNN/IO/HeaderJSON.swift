/// The JSON a safetensors header needs, written without Foundation so that key order and integers are exact.
/// Reading is the C reader's (`bnn_safetensors_parse` in BNNRuntime), strict about what this writes and more.
indirect enum HeaderJSON: Equatable {
    /// Keys in file order; duplicates are kept so the caller can report them.
    case object([(key: String, value: HeaderJSON)])
    case array([HeaderJSON])
    case string(String)
    /// The number's text exactly as written (validated against JSON's grammar).
    case number(String)
    case bool(Bool)
    case null

    static func == (lhs: HeaderJSON, rhs: HeaderJSON) -> Bool {
        switch (lhs, rhs) {
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.array(let a), .array(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.null, .null): return true
        default: return false
        }
    }

    /// Serialises compactly; object keys keep their given order.
    func serialized() -> String {
        switch self {
        case .object(let pairs):
            return "{" + pairs.map { HeaderJSON.quoted($0.key) + ":" + $0.value.serialized() }.joined(separator: ",") + "}"
        case .array(let values):
            return "[" + values.map { $0.serialized() }.joined(separator: ",") + "]"
        case .string(let text): return HeaderJSON.quoted(text)
        case .number(let text): return text
        case .bool(let flag): return flag ? "true" : "false"
        case .null: return "null"
        }
    }

    /// A JSON string literal (`JSONText.string`, the one escaping rule of the module).
    static func quoted(_ text: String) -> String { JSONText.string(text) }
}
