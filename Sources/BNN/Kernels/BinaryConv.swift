import CKernels

/// Packed sign(W) of a binary convolution, with what the exact zero-padding correction needs; made once
/// and reusable across calls and threads (never written after creation).
public final class BinaryConvWeights: @unchecked Sendable {
    /// Output channels O.
    public let outputChannels: Int
    /// Input channels C.
    public let inputChannels: Int
    /// Kernel height.
    public let kernelHeight: Int
    /// Kernel width.
    public let kernelWidth: Int
    let handle: OpaquePointer

    /// Packs sign(W) of float weights in PyTorch's OIHW layout (sign(0) = +1).
    public convenience init(
        oihw weights: [Float], outputChannels: Int, inputChannels: Int, kernelHeight: Int, kernelWidth: Int
    ) throws {
        let handle = try weights.withUnsafeBufferPointer { weights in
            try Self.pack(oihw: weights, outputChannels, inputChannels, kernelHeight, kernelWidth)
        }
        self.init(handle: handle, outputChannels, inputChannels, kernelHeight, kernelWidth)
    }

    /// Pointer form of `init(oihw:outputChannels:inputChannels:kernelHeight:kernelWidth:)`, for weights that live
    /// in other storage (no copy).
    public convenience init(
        oihw weights: UnsafeBufferPointer<Float>, outputChannels: Int, inputChannels: Int, kernelHeight: Int,
        kernelWidth: Int
    ) throws {
        let handle = try Self.pack(oihw: weights, outputChannels, inputChannels, kernelHeight, kernelWidth)
        self.init(handle: handle, outputChannels, inputChannels, kernelHeight, kernelWidth)
    }

    /// From already packed signs in OHWI order: `bits` has `outputChannels·kernelHeight·kernelWidth` rows
    /// (order O, kh, kw) of `inputChannels` columns.
    public convenience init(packedOHWI bits: PackedBits, outputChannels: Int, kernelHeight: Int, kernelWidth: Int) throws {
        let operation = "BinaryConvWeights(packedOHWI:outputChannels:kernelHeight:kernelWidth:)"
        try Self.validate(outputChannels, bits.columns, kernelHeight, kernelWidth, operation: operation)
        let rows = try Require.product([outputChannels, kernelHeight, kernelWidth], "outputChannels", of: operation)
        guard bits.rows == rows else {
            throw KernelError.argument(
                "packedOHWI", of: operation,
                "has \(bits.rows) rows, expected outputChannels \(outputChannels) × kernelHeight \(kernelHeight) "
                    + "× kernelWidth \(kernelWidth) = \(rows)")
        }
        var pointer: OpaquePointer?
        let status = bits.withUnsafeWords { w in
            ck_bconv_weights_create_from_bits(
                w.baseAddress, Int64(outputChannels), Int64(bits.columns), Int64(kernelHeight), Int64(kernelWidth),
                &pointer)
        }
        let handle = try Self.created(pointer, status, operation: operation)
        self.init(handle: handle, outputChannels, bits.columns, kernelHeight, kernelWidth)
    }

    private init(handle: OpaquePointer, _ outputChannels: Int, _ inputChannels: Int, _ kernelHeight: Int,
                 _ kernelWidth: Int) {
        self.handle = handle
        self.outputChannels = outputChannels
        self.inputChannels = inputChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
    }

    /// Checks the sizes and packs OIHW float weights.
    private static func pack(
        oihw weights: UnsafeBufferPointer<Float>, _ outputChannels: Int, _ inputChannels: Int, _ kernelHeight: Int,
        _ kernelWidth: Int
    ) throws -> OpaquePointer {
        let operation = "BinaryConvWeights(oihw:outputChannels:inputChannels:kernelHeight:kernelWidth:)"
        try validate(outputChannels, inputChannels, kernelHeight, kernelWidth, operation: operation)
        let expected = try Require.product(
            [outputChannels, inputChannels, kernelHeight, kernelWidth], "oihw", of: operation)
        try Require.count(
            weights.count, expected, "oihw", of: operation,
            shape: "O \(outputChannels) × I \(inputChannels) × H \(kernelHeight) × W \(kernelWidth)")
        var pointer: OpaquePointer?
        let status = ck_bconv_weights_create(
            weights.baseAddress, Int64(outputChannels), Int64(inputChannels), Int64(kernelHeight), Int64(kernelWidth),
            &pointer)
        return try created(pointer, status, operation: operation)
    }

    deinit { ck_bconv_weights_destroy(handle) }

    /// Whether patches are stored as one contiguous bit string (bit-level im2col, chosen when that saves
    /// words) rather than one word-aligned pixel per tap.
    public var isBitLevel: Bool { ck_bconv_weights_bit_level(handle) == 1 }

    private static func validate(_ o: Int, _ c: Int, _ kh: Int, _ kw: Int, operation: String) throws {
        try Require.size(o, "outputChannels", of: operation)
        try Require.size(c, "inputChannels", of: operation)
        try Require.size(kh, "kernelHeight", of: operation)
        try Require.size(kw, "kernelWidth", of: operation)
    }

    private static func created(_ pointer: OpaquePointer?, _ status: ck_status, operation: String) throws
        -> OpaquePointer
    {
        try check(status, "\(operation): the weights could not be packed")
        guard let pointer else {
            throw KernelError(status: Int32(CK_ERR_OUT_OF_MEMORY.rawValue), context: "\(operation): no weights returned")
        }
        return pointer
    }
}

/// What a binary convolution computes from its exact integer result `acc` and which outputs it writes:
///   y = (reluBefore ? max(acc, 0) : acc) · scale[o] + bias[o];  y += residual;  y = reluAfter ? max(y, 0) : y.
public struct OutputTransform: Sendable {
    /// Which outputs a convolution writes.
    public struct Outputs: OptionSet, Sendable {
        /// The raw bits (see `init(rawValue:)`).
        public let rawValue: Int
        /// A set from its raw bits (1 integers, 2 floats, 4 bits).
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// The exact integer dot products `acc`.
        public static let integers = Outputs(rawValue: 1)
        /// The float result y.
        public static let floats = Outputs(rawValue: 2)
        /// The packed sign of y (input of the next binary layer).
        public static let bits = Outputs(rawValue: 4)
    }

    /// Per output channel multiplier; nil means 1.
    public var scale: [Float]?
    /// Per output channel offset; nil means 0.
    public var bias: [Float]?
    /// NHWC tensor of the output's shape added after scale and bias; nil for none.
    public var residual: [Float]?
    /// Clamp `acc` at 0 before the multiply.
    public var reluBefore: Bool
    /// Clamp y at 0 after the residual add.
    public var reluAfter: Bool
    /// The outputs to produce (at least one).
    public var outputs: Outputs

    /// A transform; by default none (y = acc) and only the integer output.
    public init(
        scale: [Float]? = nil, bias: [Float]? = nil, residual: [Float]? = nil, reluBefore: Bool = false,
        reluAfter: Bool = false, outputs: Outputs = .integers
    ) {
        self.scale = scale
        self.bias = bias
        self.residual = residual
        self.reluBefore = reluBefore
        self.reluAfter = reluAfter
        self.outputs = outputs
    }
}

/// The outputs of a binary convolution, NHWC with `channels` = the weights' output channels.
public struct BinaryConvResult: Sendable {
    /// Output batch, height, width, channels.
    public let batch, height, width, channels: Int
    /// `acc`, if requested.
    public let integers: [Int32]?
    /// y, if requested.
    public let floats: [Float]?
    /// sign(y) packed (one row per output pixel), if requested.
    public let bits: PackedBits?
}

extension Kernels {
    /// Binary 2-d convolution of a packed NHWC input (`geometry.batch·height·width` rows of
    /// `geometry.channels` bits) with `weights`. Zero padding is exact: `acc` equals the float convolution of
    /// the ±1 input padded with zeros.
    public static func binaryConv2d(
        input: PackedBits, geometry: ConvGeometry, weights: BinaryConvWeights,
        transform: OutputTransform = OutputTransform()
    ) throws -> BinaryConvResult {
        let operation = "Kernels.binaryConv2d"
        let (outHeight, outWidth) = try geometry.validatedOutputSize(operation: operation, argument: "geometry")
        try checkPackedInput(input, matches: geometry, operation: operation)
        guard !transform.outputs.isEmpty else {
            throw KernelError.argument(
                "transform.outputs", of: operation, "is empty: request at least one of integers, floats, bits",
                status: CK_ERR_NULL_POINTER)
        }
        let pixels = try Require.product([geometry.batch, outHeight, outWidth], "geometry", of: operation)
        let count = try Require.product([pixels, weights.outputChannels], "geometry", of: operation)
        var integers = transform.outputs.contains(.integers) ? [Int32](repeating: 0, count: count) : nil
        var floats = transform.outputs.contains(.floats) ? [Float](repeating: 0, count: count) : nil
        var bits = transform.outputs.contains(.bits) ? try PackedBits(rows: pixels, columns: weights.outputChannels) : nil
        try input.withUnsafeWords { input in
            try withOptionalBuffer(transform.scale) { scale in
                try withOptionalBuffer(transform.bias) { bias in
                    try withOptionalBuffer(transform.residual) { residual in
                        try withOptionalMutableBuffer(&integers) { integersOut in
                            try withOptionalMutableBuffer(&floats) { floatsOut in
                                try withOptionalMutableWords(&bits) { bitsOut in
                                    try binaryConv2d(
                                        input: input, geometry: geometry, weights: weights, scale: scale, bias: bias,
                                        residual: residual, reluBefore: transform.reluBefore,
                                        reluAfter: transform.reluAfter, integers: integersOut, floats: floatsOut,
                                        bits: bitsOut, argumentPrefix: "transform.")
                                }
                            }
                        }
                    }
                }
            }
        }
        return BinaryConvResult(
            batch: geometry.batch, height: outHeight, width: outWidth, channels: weights.outputChannels,
            integers: integers, floats: floats, bits: bits)
    }

    /// Pointer form of `binaryConv2d(input:geometry:weights:transform:)` for callers that own their
    /// storage (no copies): `input` is `N·H·W × ck_words(C)` words; `scale`, `bias` have O elements,
    /// `residual` and the outputs `N·OH·OW·O` elements (`bits`: `N·OH·OW × ck_words(O)` words). Pass nil
    /// for what is not used; at least one output must be given.
    public static func binaryConv2d(
        input: UnsafeBufferPointer<UInt64>, geometry: ConvGeometry, weights: BinaryConvWeights,
        scale: UnsafeBufferPointer<Float>? = nil, bias: UnsafeBufferPointer<Float>? = nil,
        residual: UnsafeBufferPointer<Float>? = nil, reluBefore: Bool = false, reluAfter: Bool = false,
        integers: UnsafeMutableBufferPointer<Int32>? = nil, floats: UnsafeMutableBufferPointer<Float>? = nil,
        bits: UnsafeMutableBufferPointer<UInt64>? = nil
    ) throws {
        try binaryConv2d(
            input: input, geometry: geometry, weights: weights, scale: scale, bias: bias, residual: residual,
            reluBefore: reluBefore, reluAfter: reluAfter, integers: integers, floats: floats, bits: bits,
            argumentPrefix: "")
    }

    private static func binaryConv2d(
        input: UnsafeBufferPointer<UInt64>, geometry: ConvGeometry, weights: BinaryConvWeights,
        scale: UnsafeBufferPointer<Float>?, bias: UnsafeBufferPointer<Float>?, residual: UnsafeBufferPointer<Float>?,
        reluBefore: Bool, reluAfter: Bool, integers: UnsafeMutableBufferPointer<Int32>?,
        floats: UnsafeMutableBufferPointer<Float>?, bits: UnsafeMutableBufferPointer<UInt64>?, argumentPrefix: String
    ) throws {
        let operation = "Kernels.binaryConv2d"
        let (outHeight, outWidth) = try geometry.validatedOutputSize(operation: operation, argument: "geometry")
        guard weights.inputChannels == geometry.channels else {
            throw KernelError.argument(
                "weights", of: operation,
                "have \(weights.inputChannels) input channels, but geometry.channels is \(geometry.channels)")
        }
        guard weights.kernelHeight == geometry.kernelHeight, weights.kernelWidth == geometry.kernelWidth else {
            throw KernelError.argument(
                "weights", of: operation,
                "have a \(weights.kernelHeight)×\(weights.kernelWidth) kernel, but the geometry's is "
                    + "\(geometry.kernelHeight)×\(geometry.kernelWidth)")
        }
        let inputWords = try Require.product(
            [geometry.batch, geometry.height, geometry.width, wordCount(bits: geometry.channels)], "geometry",
            of: operation)
        try Require.count(
            input.count, inputWords, "input", of: operation,
            shape: "N·H·W \(geometry.inputPixels) pixels × \(wordCount(bits: geometry.channels)) words")
        let o = weights.outputChannels
        let pixels = geometry.batch * outHeight * outWidth
        let outputShape = "N·OH·OW \(pixels) output pixels × \(o) channels"
        if let scale { try Require.count(scale.count, o, argumentPrefix + "scale", of: operation, shape: "one per output channel") }
        if let bias { try Require.count(bias.count, o, argumentPrefix + "bias", of: operation, shape: "one per output channel") }
        if let residual {
            try Require.count(residual.count, pixels * o, argumentPrefix + "residual", of: operation, shape: outputShape)
        }
        if let integers {
            try Require.count(integers.count, pixels * o, "integers", of: operation, shape: outputShape)
        }
        if let floats { try Require.count(floats.count, pixels * o, "floats", of: operation, shape: outputShape) }
        if let bits {
            try Require.count(
                bits.count, pixels * wordCount(bits: o), "bits", of: operation,
                shape: "\(pixels) output pixels × \(wordCount(bits: o)) words")
        }
        guard integers != nil || floats != nil || bits != nil else {
            throw KernelError.argument(
                "integers", of: operation, "and `floats` and `bits` are all nil: give at least one output",
                status: CK_ERR_NULL_POINTER)
        }
        var shape = geometry.cShape
        var transform = ck_output_transform(
            scale: scale?.baseAddress, bias: bias?.baseAddress, residual: residual?.baseAddress,
            flags: (reluBefore ? Int32(CK_RELU_BEFORE) : 0) | (reluAfter ? Int32(CK_RELU_AFTER) : 0),
            out_int: integers?.baseAddress, out: floats?.baseAddress, out_bits: bits?.baseAddress)
        try check(
            ck_bconv2d(input.baseAddress, &shape, weights.handle, &transform),
            "\(operation) with geometry \(geometry), \(o) output channels")
    }

    /// Fails unless `input` holds one row of `geometry.channels` bits per input pixel of `geometry`.
    private static func checkPackedInput(_ input: PackedBits, matches geometry: ConvGeometry, operation: String) throws {
        guard input.columns == geometry.channels else {
            throw KernelError.argument(
                "input", of: operation, "has \(input.columns) channels, but geometry.channels is \(geometry.channels)")
        }
        guard input.rows == geometry.inputPixels else {
            throw KernelError.argument(
                "input", of: operation,
                "has \(input.rows) rows, but the geometry has N·H·W = \(geometry.inputPixels) input pixels")
        }
    }

    /// Binary max-pool of a packed NHWC input: the max over ±1 values of each window, ignoring padding.
    /// Returns `N·OH·OW` rows of `geometry.channels` bits.
    public static func binaryMaxPool2d(input: PackedBits, geometry: ConvGeometry) throws -> PackedBits {
        let operation = "Kernels.binaryMaxPool2d"
        let (outHeight, outWidth) = try geometry.validatedOutputSize(operation: operation, argument: "geometry")
        try checkPackedInput(input, matches: geometry, operation: operation)
        let pixels = try Require.product([geometry.batch, outHeight, outWidth], "geometry", of: operation)
        var result = try PackedBits(rows: pixels, columns: geometry.channels)
        try input.withUnsafeWords { x in
            try result.withUnsafeMutableWords { out in
                try binaryMaxPool2d(input: x, geometry: geometry, into: out)
            }
        }
        return result
    }

    /// Pointer form of `binaryMaxPool2d(input:geometry:)`: `input` is `N·H·W × ck_words(C)` words,
    /// `into` receives `N·OH·OW × ck_words(C)` words.
    public static func binaryMaxPool2d(
        input: UnsafeBufferPointer<UInt64>, geometry: ConvGeometry, into out: UnsafeMutableBufferPointer<UInt64>
    ) throws {
        let operation = "Kernels.binaryMaxPool2d"
        let (outHeight, outWidth) = try geometry.validatedOutputSize(operation: operation, argument: "geometry")
        // As in PyTorch, padding beyond half the window is refused: a window could then hold no real pixel.
        for (pad, kernel, name) in [
            (geometry.padHeight, geometry.kernelHeight, "padHeight"), (geometry.padWidth, geometry.kernelWidth, "padWidth"),
        ] where 2 * pad > kernel {
            throw KernelError.argument(
                "geometry.\(name)", of: operation, "is \(pad), more than half the \(kernel)-wide window")
        }
        let words = wordCount(bits: geometry.channels)
        let inputWords = try Require.product(
            [geometry.batch, geometry.height, geometry.width, words], "geometry", of: operation)
        try Require.count(
            input.count, inputWords, "input", of: operation,
            shape: "N·H·W \(geometry.inputPixels) pixels × \(words) words")
        let pixels = geometry.batch * outHeight * outWidth
        try Require.count(out.count, pixels * words, "into", of: operation, shape: "\(pixels) output pixels × \(words) words")
        var shape = geometry.cShape
        try check(
            ck_bmaxpool2d(input.baseAddress, &shape, out.baseAddress), "\(operation) with geometry \(geometry)")
    }
}

/// Calls `body` with a buffer over `array`, or nil.
private func withOptionalBuffer<R>(_ array: [Float]?, _ body: (UnsafeBufferPointer<Float>?) throws -> R) rethrows
    -> R
{
    guard let array else { return try body(nil) }
    return try array.withUnsafeBufferPointer { try body($0) }
}

/// Calls `body` with a mutable buffer over `array`, or nil.
private func withOptionalMutableBuffer<T, R>(
    _ array: inout [T]?, _ body: (UnsafeMutableBufferPointer<T>?) throws -> R
) rethrows -> R {
    guard array != nil else { return try body(nil) }
    return try array!.withUnsafeMutableBufferPointer { try body($0) }
}

/// Calls `body` with the mutable words of `bits`, or nil.
private func withOptionalMutableWords<R>(
    _ bits: inout PackedBits?, _ body: (UnsafeMutableBufferPointer<UInt64>?) throws -> R
) rethrows -> R {
    guard bits != nil else { return try body(nil) }
    return try bits!.withUnsafeMutableWords { try body($0) }
}
