/// A NaN or infinite element found in a tensor: where it is and what it is.
public struct NonFiniteElement: Sendable, Equatable, CustomStringConvertible {
    /// The tensor's name.
    public let tensor: String
    /// The element's position in row-major order.
    public let index: Int
    /// The same position as one index per dimension.
    public let position: [Int]
    /// The tensor's shape.
    public let shape: [Int]
    /// "NaN", "+infinity" or "-infinity".
    public let value: String

    /// `tensor "layer1.0.conv1.weight" holds NaN at element 17 (index [0, 1, 2, 2] of shape [16, 16, 3, 3])`.
    public var description: String {
        let place = shape.count > 1 ? " (index \(position) of shape \(shape))" : ""
        return "tensor \"\(tensor)\" holds \(value) at element \(index)\(place)"
    }
}

extension SafeTensors.TensorData {
    /// The row-major position of the first NaN or infinite element and what it is, for the floating-point dtypes
    /// (F64, F32, F16, BF16, F8_E5M2 and F8_E4M3, which has NaN but no infinity); nil when every element is finite
    /// or the dtype is an integer or boolean one. Decided on the bits, so no conversion can hide a value.
    public func firstNonFiniteElement() -> (index: Int, value: String)? {
        let size = dtype.byteSize
        // (exponent mask, sign bit) of each format; an all-ones exponent is infinity or NaN. F8_E4M3 (the "fn"
        // variant of the format) spends its all-ones exponent on normal numbers and keeps only S.1111.111 for NaN.
        let exponent: UInt64, sign: UInt64
        switch dtype {
        case .f64: (exponent, sign) = (0x7FF0_0000_0000_0000, 1 << 63)
        case .f32: (exponent, sign) = (0x7F80_0000, 1 << 31)
        case .f16: (exponent, sign) = (0x7C00, 1 << 15)
        case .bf16: (exponent, sign) = (0x7F80, 1 << 15)
        case .f8e5m2: (exponent, sign) = (0x7C, 1 << 7)
        case .f8e4m3: (exponent, sign) = (0x7F, 1 << 7)
        default: return nil
        }
        let mantissa = (sign - 1) & ~exponent
        return bytes.withUnsafeBytes { raw -> (Int, String)? in
            for index in 0..<(raw.count / size) {
                var bits: UInt64 = 0
                for byte in 0..<size { bits |= UInt64(raw[index * size + byte]) << (8 * UInt64(byte)) }
                guard bits & exponent == exponent else { continue }
                if dtype == .f8e4m3 { return (index, "NaN") }
                if bits & mantissa != 0 { return (index, "NaN") }
                return (index, bits & sign != 0 ? "-infinity" : "+infinity")
            }
            return nil
        }
    }
}

extension ModelWeights {
    /// The first NaN or infinite element of `tensors`, visiting tensors in name order (UTF-8 byte order) so the
    /// answer does not depend on dictionary order; nil when every floating-point element is finite.
    ///
    /// Evaluating or packing such weights gives meaningless results without any error (a NaN logit never wins an
    /// arg-max, an infinite scale saturates every output), so `bnn eval` and `bnn export` refuse them, and a
    /// resumed training run refuses a checkpoint holding them.
    public static func firstNonFiniteElement(in tensors: [String: SafeTensors.TensorData]) -> NonFiniteElement? {
        for name in tensors.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            let tensor = tensors[name]!
            guard let (index, value) = tensor.firstNonFiniteElement() else { continue }
            var position = [Int](repeating: 0, count: tensor.shape.count)
            var rest = index
            for axis in tensor.shape.indices.reversed() where tensor.shape[axis] > 0 {
                position[axis] = rest % tensor.shape[axis]
                rest /= tensor.shape[axis]
            }
            return NonFiniteElement(tensor: name, index: index, position: position, shape: tensor.shape, value: value)
        }
        return nil
    }
}
