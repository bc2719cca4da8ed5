/// The JSON the library writes: safetensors headers, checkpoint metadata (the training configuration, a partial
/// epoch's sums), `log.jsonl` lines and `bnn eval --json`. Keys keep the order given, integers are exact and
/// floating-point numbers are written in the shortest form that reads back to the same value, so that a file
/// compares bit for bit after a round trip. Reading is `JSONDecoder`'s (Codable types), and for safetensors
/// headers the C reader's (`bnn_safetensors_parse` in BNNRuntime).
indirect enum JSONValue: Equatable {
    /// Keys in the order given.
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// A number's text (produced by `integer` and `real`).
    case number(String)
    case bool(Bool)
    case null

    /// An exact integer.
    static func integer(_ value: some BinaryInteger) -> JSONValue { .number(String(value)) }

    /// The shortest text that reads back to the same `Double` (Swift's own algorithm, e.g. 0.1, 3.0, 1e-05);
    /// `null` when absent or not finite (JSON has no NaN).
    static func real(_ value: Double?) -> JSONValue {
        guard let value, value.isFinite else { return .null }
        return .number(value.description)
    }

    /// The shortest text that reads back to the same `Float` (so 0.1, not 0.10000000149011612); `null` when
    /// absent or not finite.
    static func real(_ value: Float?) -> JSONValue {
        guard let value, value.isFinite else { return .null }
        return .number(value.description)
    }

    static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
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

    /// The text: compact, or with a space after each `,` and `:` (`spaced`, for files people read).
    func serialized(spaced: Bool = false) -> String {
        let (comma, colon) = spaced ? (", ", ": ") : (",", ":")
        switch self {
        case .object(let pairs):
            return "{" + pairs.map { JSONValue.quoted($0.key) + colon + $0.value.serialized(spaced: spaced) }
                .joined(separator: comma) + "}"
        case .array(let values):
            return "[" + values.map { $0.serialized(spaced: spaced) }.joined(separator: comma) + "]"
        case .string(let text): return JSONValue.quoted(text)
        case .number(let text): return text
        case .bool(let flag): return flag ? "true" : "false"
        case .null: return "null"
        }
    }

    /// `text` as a JSON string literal: quote, backslash and control characters escaped, everything else as
    /// UTF-8.
    static func quoted(_ text: String) -> String {
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                escaped += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }
}
