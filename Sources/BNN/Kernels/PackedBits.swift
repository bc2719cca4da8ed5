import CKernels

/// Signs of a `rows × columns` matrix of ±1 values packed into 64-bit words, the operand format of the
/// binary kernels: bit 1 means −1 and bit 0 means +1 (so sign(0) = +1); bit j of word w of a row holds
/// column 64·w + j; each row takes `wordsPerRow` words and the leftover bits of its last word are zero.
/// Packed NHWC activations have one row per pixel (N·H·W rows) and one column per channel.
public struct PackedBits: Sendable, Equatable {
    /// Number of rows (pixels, or vectors).
    public let rows: Int
    /// Number of bits per row (channels, or vector length).
    public let columns: Int
    /// The packed words, `rows × wordsPerRow`, row-major.
    public private(set) var words: [UInt64]

    /// 64-bit words per row.
    public var wordsPerRow: Int { wordCount(bits: columns) }

    /// All +1 (every bit zero).
    public init(rows: Int, columns: Int) throws {
        try self.init(zeroRows: rows, columns: columns, operation: "PackedBits(rows:columns:)")
    }

    /// Validated sizes, all bits zero; `operation` names the public initialiser in errors.
    private init(zeroRows rows: Int, columns: Int, operation: String) throws {
        try Require.size(rows, "rows", of: operation)
        try Require.size(columns, "columns", of: operation)
        let count = try Require.product([rows, wordCount(bits: columns)], "rows", of: operation)
        self.rows = rows
        self.columns = columns
        words = Array(repeating: 0, count: count)
    }

    /// Wraps already packed words; throws if their count does not match or a leftover bit is set.
    public init(words: [UInt64], rows: Int, columns: Int) throws {
        let operation = "PackedBits(words:rows:columns:)"
        try Require.size(rows, "rows", of: operation)
        try Require.size(columns, "columns", of: operation)
        let perRow = wordCount(bits: columns)
        let expected = try Require.product([rows, perRow], "rows", of: operation)
        try Require.count(
            words.count, expected, "words", of: operation, shape: "rows \(rows) × \(perRow) words for \(columns) columns")
        if columns % 64 != 0 {
            let leftover = ~((UInt64(1) << UInt64(columns % 64)) - 1)
            for row in 0..<rows where words[row * perRow + perRow - 1] & leftover != 0 {
                throw KernelError.argument(
                    "words", of: operation,
                    "row \(row) has bits set past column \(columns) (leftover bits must be zero)",
                    status: CK_ERR_SHAPE_MISMATCH)
            }
        }
        self.rows = rows
        self.columns = columns
        self.words = words
    }

    /// Packs the signs of a row-major `rows × columns` float matrix (for NHWC activations: rows = N·H·W,
    /// columns = C). Negative values become −1; 0, −0 and positive values become +1.
    public init(signsOf values: [Float], rows: Int, columns: Int) throws {
        self = try values.withUnsafeBufferPointer { try PackedBits(signsOf: $0, rows: rows, columns: columns) }
    }

    /// Pointer form of `init(signsOf:rows:columns:)`, for floats that live in other storage (no copy).
    public init(signsOf values: UnsafeBufferPointer<Float>, rows: Int, columns: Int) throws {
        let operation = "PackedBits(signsOf:rows:columns:)"
        try self.init(zeroRows: rows, columns: columns, operation: operation)
        let expected = try Require.product([rows, columns], "rows", of: operation)
        try Require.count(values.count, expected, "signsOf", of: operation, shape: "rows \(rows) × columns \(columns)")
        try words.withUnsafeMutableBufferPointer { out in
            try Kernels.packSigns(values, rows: rows, columns: columns, into: out)
        }
    }

    /// Packs the signs of an NCHW float tensor into packed NHWC: `n·h·w` rows of `c` columns.
    public init(signsOfNCHW values: [Float], n: Int, c: Int, h: Int, w: Int) throws {
        self = try values.withUnsafeBufferPointer { try PackedBits(signsOfNCHW: $0, n: n, c: c, h: h, w: w) }
    }

    /// Pointer form of `init(signsOfNCHW:n:c:h:w:)`.
    public init(signsOfNCHW values: UnsafeBufferPointer<Float>, n: Int, c: Int, h: Int, w: Int) throws {
        let operation = "PackedBits(signsOfNCHW:n:c:h:w:)"
        try Require.size(n, "n", of: operation)
        try Require.size(c, "c", of: operation)
        try Require.size(h, "h", of: operation)
        try Require.size(w, "w", of: operation)
        let pixels = try Require.product([n, h, w], "n", of: operation)
        try self.init(zeroRows: pixels, columns: c, operation: operation)
        let expected = try Require.product([n, c, h, w], "n", of: operation)
        try Require.count(values.count, expected, "signsOfNCHW", of: operation, shape: "n \(n) × c \(c) × h \(h) × w \(w)")
        try words.withUnsafeMutableBufferPointer { out in
            try check(
                ck_pack_signs_nchw(values.baseAddress, Int64(n), Int64(c), Int64(h), Int64(w), out.baseAddress),
                "\(operation) with n \(n), c \(c), h \(h), w \(w)")
        }
    }

    /// The ±1.0 values, row-major `rows × columns`.
    public func unpacked() -> [Float] {
        let count = rows * columns
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            let status = words.withUnsafeBufferPointer { bits in
                ck_unpack_signs(bits.baseAddress, Int64(rows), Int64(columns), out.baseAddress)
            }
            // Sizes were validated when this value was made, so the kernel has nothing to reject.
            precondition(status == CK_OK, "ck_unpack_signs failed on a valid PackedBits")
            initialized = count
        }
    }

    /// The value at (`row`, `column`): −1 or +1.
    public subscript(row: Int, column: Int) -> Float {
        isNegative(row: row, column: column) ? -1 : 1
    }

    /// Whether the value at (`row`, `column`) is −1 (its bit is set).
    public func isNegative(row: Int, column: Int) -> Bool {
        precondition(row >= 0 && row < rows && column >= 0 && column < columns, "PackedBits index out of range")
        return (words[row * wordsPerRow + column / 64] >> UInt64(column % 64)) & 1 == 1
    }

    /// Reads the packed words in place.
    public func withUnsafeWords<R>(_ body: (UnsafeBufferPointer<UInt64>) throws -> R) rethrows -> R {
        try words.withUnsafeBufferPointer(body)
    }

    /// Lets a kernel write the packed words in place (e.g. a convolution's bit output). Leftover bits past
    /// `columns` are cleared afterwards, so the value stays a valid operand whatever `body` wrote there.
    public mutating func withUnsafeMutableWords<R>(
        _ body: (UnsafeMutableBufferPointer<UInt64>) throws -> R
    ) rethrows -> R {
        defer { clearLeftoverBits() }
        return try words.withUnsafeMutableBufferPointer { try body($0) }
    }

    private mutating func clearLeftoverBits() {
        guard columns % 64 != 0 else { return }
        let keep = (UInt64(1) << UInt64(columns % 64)) - 1
        let perRow = wordsPerRow
        words.withUnsafeMutableBufferPointer { w in
            for row in 0..<rows { w[row * perRow + perRow - 1] &= keep }
        }
    }
}

extension Kernels {
    /// Packs the signs of a row-major `rows × columns` float matrix into `into`, which receives
    /// `rows × wordCount(bits: columns)` words (for storage the caller owns, e.g. a reused buffer). Negative values
    /// become −1 (bit 1); 0, −0 and positive values become +1.
    public static func packSigns(
        _ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int, into out: UnsafeMutableBufferPointer<UInt64>
    ) throws {
        let operation = "Kernels.packSigns"
        try Require.size(rows, "rows", of: operation)
        try Require.size(columns, "columns", of: operation)
        let expected = try Require.product([rows, columns], "rows", of: operation)
        try Require.count(values.count, expected, "values", of: operation, shape: "rows \(rows) × columns \(columns)")
        let words = try Require.product([rows, wordCount(bits: columns)], "rows", of: operation)
        try Require.atLeast(out.count, words, "into", of: operation, shape: "\(rows) rows × \(wordCount(bits: columns)) words")
        try check(
            ck_pack_signs(values.baseAddress, Int64(rows), Int64(columns), out.baseAddress),
            "\(operation) with rows \(rows), columns \(columns)")
    }
}
