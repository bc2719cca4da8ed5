import BNNRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a safetensors file could not be read or written, naming the file and, where it applies, the tensor.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file ("<memory>" for bytes parsed in memory, empty for a tensor built in memory).
    public let file: String
    /// The tensor concerned, if the problem is about one.
    public let tensor: String?
    /// What is wrong, with expected and found values.
    public let reason: String

    /// An error about `file`, and `tensor` if given.
    public init(file: String, tensor: String? = nil, reason: String) {
        self.file = file
        self.tensor = tensor
        self.reason = reason
    }

    public var description: String {
        let place = file.isEmpty ? "safetensors" : "safetensors file \(file)"
        if let tensor { return "\(place), tensor \"\(tensor)\": \(reason)" }
        return "\(place): \(reason)"
    }
}

/// A value type that can be stored in a safetensors tensor element by element (little-endian).
public protocol SafeTensorsElement: Sendable {
    /// The dtype this Swift type maps to.
    static var safeTensorsDType: SafeTensors.DType { get }
    /// The value with its bytes reversed (used only on big-endian hosts).
    var byteReversed: Self { get }
}

extension Float: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .f32 }
    public var byteReversed: Float { Float(bitPattern: bitPattern.byteSwapped) }
}
extension Double: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .f64 }
    public var byteReversed: Double { Double(bitPattern: bitPattern.byteSwapped) }
}
extension Int64: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .i64 }
    public var byteReversed: Int64 { byteSwapped }
}
extension Int32: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .i32 }
    public var byteReversed: Int32 { byteSwapped }
}
extension Int16: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .i16 }
    public var byteReversed: Int16 { byteSwapped }
}
extension Int8: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .i8 }
    public var byteReversed: Int8 { self }
}
extension UInt64: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .u64 }
    public var byteReversed: UInt64 { byteSwapped }
}
extension UInt32: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .u32 }
    public var byteReversed: UInt32 { byteSwapped }
}
extension UInt16: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .u16 }
    public var byteReversed: UInt16 { byteSwapped }
}
extension UInt8: SafeTensorsElement {
    public static var safeTensorsDType: SafeTensors.DType { .u8 }
    public var byteReversed: UInt8 { self }
}

/// Reading and writing the safetensors format: an 8-byte little-endian header length N, N bytes of JSON
/// describing each tensor (dtype, shape, byte range) plus optional string metadata, then the bytes.
public enum SafeTensors {
    /// Element types of the format. Every one can be read and written as raw bytes; typed access exists for
    /// those with a Swift type (`SafeTensorsElement`) and for BOOL.
    public enum DType: String, Sendable, CaseIterable, Equatable {
        case bool = "BOOL"
        case u8 = "U8"
        case i8 = "I8"
        case f8e5m2 = "F8_E5M2"
        case f8e4m3 = "F8_E4M3"
        case i16 = "I16"
        case u16 = "U16"
        case f16 = "F16"
        case bf16 = "BF16"
        case i32 = "I32"
        case u32 = "U32"
        case f32 = "F32"
        case f64 = "F64"
        case i64 = "I64"
        case u64 = "U64"

        /// Bytes per element.
        public var byteSize: Int {
            switch self {
            case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
            case .i16, .u16, .f16, .bf16: return 2
            case .i32, .u32, .f32: return 4
            case .f64, .i64, .u64: return 8
            }
        }
    }

    /// Headers larger than this are refused (the reference implementation's limit), so a corrupt length
    /// cannot make the reader allocate gigabytes.
    public static let maximumHeaderSize = Int(BNN_SAFETENSORS_MAX_HEADER)

    /// One tensor: dtype, shape and its bytes (little-endian, row-major), always consistent with each other.
    public struct TensorData: Sendable, Equatable {
        /// Element type.
        public let dtype: DType
        /// Dimensions, outermost first; [] for a scalar.
        public let shape: [Int]
        /// The elements, little-endian, row-major.
        public let bytes: [UInt8]

        /// Wraps raw bytes; throws unless `bytes.count == product(shape) × dtype.byteSize`.
        public init(dtype: DType, shape: [Int], bytes: [UInt8]) throws(SafeTensorsError) {
            guard let expected = TensorData.byteCount(dtype: dtype, shape: shape) else {
                throw SafeTensorsError(file: "", reason: "shape \(shape) is negative or too large for \(dtype.rawValue)")
            }
            guard expected == bytes.count else {
                throw SafeTensorsError(file: "", reason: "shape \(shape) of \(dtype.rawValue) needs \(expected) bytes, found \(bytes.count)")
            }
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        /// Stores `values` (row-major) with the given shape; throws if the counts differ.
        public init<Element: SafeTensorsElement>(_ values: [Element], shape: [Int]) throws(SafeTensorsError) {
            var bytes = [UInt8](repeating: 0, count: values.count * MemoryLayout<Element>.stride)
            if SafeTensors.hostIsLittleEndian {
                values.withUnsafeBytes { source in bytes.withUnsafeMutableBytes { $0.copyMemory(from: source) } }
            } else {
                values.map(\.byteReversed).withUnsafeBytes { source in bytes.withUnsafeMutableBytes { $0.copyMemory(from: source) } }
            }
            try self.init(dtype: Element.safeTensorsDType, shape: shape, bytes: bytes)
        }

        /// Stores booleans as BOOL (one byte, 0 or 1).
        public init(bools values: [Bool], shape: [Int]) throws(SafeTensorsError) {
            try self.init(dtype: .bool, shape: shape, bytes: values.map { $0 ? 1 : 0 })
        }

        /// The number of elements (1 for a scalar, shape []).
        public var elementCount: Int { shape.reduce(1, *) }

        /// The elements as `Element`; throws if the dtype is not `Element`'s.
        public func values<Element: SafeTensorsElement>(as type: Element.Type) throws(SafeTensorsError) -> [Element] {
            guard dtype == Element.safeTensorsDType else {
                throw SafeTensorsError(file: "", reason: "dtype is \(dtype.rawValue), not \(Element.safeTensorsDType.rawValue)")
            }
            let count = bytes.count / MemoryLayout<Element>.stride
            let values = [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
                bytes.withUnsafeBytes { source in
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(from: source)
                }
                initialized = count
            }
            return SafeTensors.hostIsLittleEndian ? values : values.map(\.byteReversed)
        }

        /// F32 elements.
        public func floats() throws(SafeTensorsError) -> [Float] { try values(as: Float.self) }
        /// F64 elements.
        public func doubles() throws(SafeTensorsError) -> [Double] { try values(as: Double.self) }
        /// I64 elements.
        public func int64s() throws(SafeTensorsError) -> [Int64] { try values(as: Int64.self) }
        /// I32 elements.
        public func int32s() throws(SafeTensorsError) -> [Int32] { try values(as: Int32.self) }
        /// U8 elements.
        public func uint8s() throws(SafeTensorsError) -> [UInt8] { try values(as: UInt8.self) }
        /// U64 elements.
        public func uint64s() throws(SafeTensorsError) -> [UInt64] { try values(as: UInt64.self) }

        /// BOOL elements; throws on a byte other than 0 or 1.
        public func bools() throws(SafeTensorsError) -> [Bool] {
            guard dtype == .bool else { throw SafeTensorsError(file: "", reason: "dtype is \(dtype.rawValue), not BOOL") }
            if let index = bytes.firstIndex(where: { $0 > 1 }) {
                throw SafeTensorsError(file: "", reason: "BOOL element \(index) holds \(bytes[index]), expected 0 or 1")
            }
            return bytes.map { $0 == 1 }
        }

        /// product(shape) × byteSize, or nil on a negative dimension or overflow.
        ///
        /// The product of the non-zero dimensions must not overflow either: a tensor with no element can still
        /// carry dimensions such as [0, 2^40, 2^40], and any later product of part of its shape (a stride, the
        /// size of a slice) would trap. Requiring the whole non-zero product to fit makes every such product fit.
        static func byteCount(dtype: DType, shape: [Int]) -> Int? {
            var count = dtype.byteSize
            var nonZero = dtype.byteSize
            for dimension in shape {
                guard dimension >= 0 else { return nil }
                let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
                let (nonZeroProduct, nonZeroOverflow) = nonZero.multipliedReportingOverflow(by: Swift.max(dimension, 1))
                if overflow || nonZeroOverflow { return nil }
                count = product
                nonZero = nonZeroProduct
            }
            return count
        }
    }

    static let hostIsLittleEndian = 1.littleEndian == 1

    // MARK: Reading

    /// Reads and validates a whole file. The file is read into memory rather than mapped: a mapped file
    /// truncated by another process while being read would crash the reader. A path that is not a regular file
    /// (a directory, a device, a FIFO) is refused by its kind.
    public static func read(_ url: URL) throws(SafeTensorsError) -> SafeTensorsFile {
        let data: Data
        do {
            data = try FileAccess.readRegularFile(url.path)
        } catch {
            throw SafeTensorsError(file: url.path, reason: "cannot be read: \(error.reason)")
        }
        return try parse(data, file: url.path)
    }

    /// Parses and validates the bytes of a safetensors file; `file` names it in errors. The parsing and every
    /// check are the C reader's (`bnn_safetensors_parse` in BNNRuntime), shared with packed models and the C API.
    public static func parse(_ data: Data, file: String = "<memory>") throws(SafeTensorsError) -> SafeTensorsFile {
        let result: Result<SafeTensorsFile, SafeTensorsError> = data.withUnsafeBytes { raw in
            var parsed: UnsafeMutablePointer<bnn_safetensors>?
            var error = bnn_safetensors_error()
            let status = bnn_safetensors_parse(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, &parsed, &error)
            defer { bnn_safetensors_error_clear(&error) }
            guard status == Int32(BNN_OK), let parsed else {
                return .failure(SafeTensorsError(
                    file: file, tensor: error.tensor.map { String(cString: $0) },
                    reason: error.reason.map { String(cString: $0) } ?? String(cString: bnn_status_message(status))))
            }
            defer { bnn_safetensors_free(parsed) }
            // The views point into `data`: copy out while it is held.
            return Result { () throws(SafeTensorsError) in try contents(of: parsed.pointee, file: file) }
        }
        return try result.get()
    }

    /// Swift values of a file the C reader accepted (its views must still be valid).
    static func contents(of parsed: bnn_safetensors, file: String) throws(SafeTensorsError) -> SafeTensorsFile {
        func text(_ view: bnn_text_view) -> String {
            guard let bytes = view.bytes else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: bytes, count: view.length), as: UTF8.self)
        }
        var tensors: [String: TensorData] = [:]
        var names: [String] = []
        names.reserveCapacity(parsed.tensor_count)
        for index in 0..<parsed.tensor_count {
            let view = parsed.tensors[index]
            let name = text(view.name)
            guard let dtype = DType(rawValue: String(cString: bnn_dtype_name(view.dtype))) else {
                throw SafeTensorsError(file: file, tensor: name, reason: "dtype \(view.dtype.rawValue) has no Swift name")
            }
            let shape = (0..<Int(view.rank)).map { Int(view.shape[$0]) }
            let bytes = view.size == 0 ? [] : [UInt8](UnsafeBufferPointer(start: view.data, count: view.size))
            // Names the reader saw as different bytes can still be equal Strings (canonical equivalence).
            guard tensors[name] == nil else {
                throw SafeTensorsError(file: file, tensor: name, reason: "tensor name appears twice in the header")
            }
            do {
                tensors[name] = try TensorData(dtype: dtype, shape: shape, bytes: bytes)
            } catch {
                throw SafeTensorsError(file: file, tensor: name, reason: error.reason)
            }
            names.append(name)
        }
        var metadata: [String: String] = [:]
        for index in 0..<parsed.metadata_count {
            let entry = parsed.metadata[index]
            let key = text(entry.key)
            guard metadata.updateValue(text(entry.value), forKey: key) == nil else {
                throw SafeTensorsError(file: file, reason: "__metadata__ key \"\(key)\" appears twice")
            }
        }
        return SafeTensorsFile(tensors: tensors, metadata: metadata, names: names)
    }

    // MARK: Writing

    /// The complete file contents: tensors ordered by element size (largest first), then by name (UTF-8
    /// byte order); header padded with spaces to a multiple of 8 bytes, so every tensor is aligned.
    public static func serialize(_ tensors: [String: TensorData], metadata: [String: String] = [:]) throws(SafeTensorsError) -> [UInt8] {
        let (header, names) = try makeHeader(tensors, metadata: metadata, file: "<memory>")
        var result = header
        for name in names { result.append(contentsOf: tensors[name]!.bytes) }
        return result
    }

    /// Writes a file atomically: the bytes go to a temporary file in the same directory, which is flushed
    /// to disk and then renamed over `url`, so a crash leaves either the old file or the new one. A destination
    /// that exists but is not a regular file (a directory, /dev/null) is refused before anything is written.
    public static func write(_ tensors: [String: TensorData], metadata: [String: String] = [:], to url: URL) throws(SafeTensorsError) {
        let path = url.path
        let (header, names) = try makeHeader(tensors, metadata: metadata, file: path)
        do {
            try FileAccess.writeAtomically([header] + names.map { tensors[$0]!.bytes }, to: path)
        } catch {
            throw SafeTensorsError(file: path, reason: error.reason)
        }
    }

    /// The 8-byte length plus padded JSON header, and the tensor names in data order.
    private static func makeHeader(_ tensors: [String: TensorData], metadata: [String: String], file: String)
        throws(SafeTensorsError) -> ([UInt8], [String])
    {
        let byUTF8: (String, String) -> Bool = { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        // Larger elements first keeps every tensor aligned to its element size (the header ends on a
        // multiple of 8), as the reference writer does; names break ties so the order is deterministic.
        let names = tensors.keys.sorted { a, b in
            let (sizeA, sizeB) = (tensors[a]!.dtype.byteSize, tensors[b]!.dtype.byteSize)
            return sizeA != sizeB ? sizeA > sizeB : byUTF8(a, b)
        }
        var entries: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            entries.append((key: "__metadata__",
                            value: .object(metadata.keys.sorted(by: byUTF8).map { (key: $0, value: .string(metadata[$0]!)) })))
        }
        var offset = 0
        for name in names {
            guard name != "__metadata__" else {
                throw SafeTensorsError(file: file, tensor: name, reason: "\"__metadata__\" is reserved and cannot name a tensor")
            }
            let tensor = tensors[name]!
            let end = offset + tensor.bytes.count
            entries.append((key: name, value: .object([
                (key: "dtype", value: .string(tensor.dtype.rawValue)),
                (key: "shape", value: .array(tensor.shape.map { .integer($0) })),
                (key: "data_offsets", value: .array([.integer(offset), .integer(end)])),
            ])))
            offset = end
        }
        var json = Array(JSONValue.object(entries).serialized().utf8)
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - json.count % 8) % 8))
        guard json.count <= maximumHeaderSize else {
            throw SafeTensorsError(file: file, reason: "header would be \(json.count) bytes, over the limit of \(maximumHeaderSize)")
        }
        var result = [UInt8]()
        result.reserveCapacity(8 + json.count)
        let length = UInt64(json.count)
        for i in 0..<8 { result.append(UInt8(truncatingIfNeeded: length >> (8 * UInt64(i)))) }
        result.append(contentsOf: json)
        return (result, names)
    }
}

/// The contents of a safetensors file: tensors by name, the `__metadata__` strings, and the names in the
/// order of their data in the file.
public struct SafeTensorsFile: Sendable, Equatable {
    /// Every tensor, by name.
    public let tensors: [String: SafeTensors.TensorData]
    /// The `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// Tensor names ordered by data offset.
    public let names: [String]
}
