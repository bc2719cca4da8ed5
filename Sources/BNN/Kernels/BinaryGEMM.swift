import CKernels

/// The right-hand operand of the XNOR-popcount GEMM, packed once into the kernels' panel layout and
/// reusable across calls and threads (it is never written after creation). Holds `rows` ±1 vectors of
/// `columns` bits: the product with an `m × columns` left operand is `m × rows`.
public final class BinaryGEMMWeights: @unchecked Sendable {
    /// Number of vectors (n: the columns of the product).
    public let rows: Int
    /// Length of each vector in bits (k).
    public let columns: Int
    let handle: OpaquePointer

    /// Packs `b` (n rows of k bits) into panels.
    public convenience init(packing b: PackedBits) throws {
        let handle = try b.withUnsafeWords { words in
            try Self.pack(words, rows: b.rows, columns: b.columns, operation: "BinaryGEMMWeights(packing:)")
        }
        self.init(handle: handle, rows: b.rows, columns: b.columns)
    }

    /// Packs `rows × ck_words(columns)` words of already packed signs (leftover bits must be zero).
    public convenience init(packing words: UnsafeBufferPointer<UInt64>, rows: Int, columns: Int) throws {
        let handle = try Self.pack(words, rows: rows, columns: columns, operation: "BinaryGEMMWeights(packing:rows:columns:)")
        self.init(handle: handle, rows: rows, columns: columns)
    }

    private init(handle: OpaquePointer, rows: Int, columns: Int) {
        self.handle = handle
        self.rows = rows
        self.columns = columns
    }

    private static func pack(_ words: UnsafeBufferPointer<UInt64>, rows: Int, columns: Int, operation: String) throws
        -> OpaquePointer
    {
        try Require.size(rows, "rows", of: operation)
        try Require.size(columns, "columns", of: operation)
        let perRow = wordCount(bits: columns)
        try Require.count(
            words.count, try Require.product([rows, perRow], "rows", of: operation), "packing", of: operation,
            shape: "rows \(rows) × \(perRow) words for \(columns) columns")
        var pointer: OpaquePointer?
        try check(
            ck_bgemm_weights_create(words.baseAddress, Int64(rows), Int64(columns), &pointer),
            "\(operation) with rows \(rows), columns \(columns)")
        guard let pointer else {
            throw KernelError(status: Int32(CK_ERR_OUT_OF_MEMORY.rawValue), context: "\(operation): no weights returned")
        }
        return pointer
    }

    deinit { ck_bgemm_weights_destroy(handle) }

    /// out[i][j] = Σₜ a[i][t]·b[j][t] over ±1 values, an `a.rows × rows` row-major matrix.
    public func multiply(_ a: PackedBits) throws -> [Int32] {
        let operation = "BinaryGEMMWeights.multiply"
        try requireBits(a.columns, name: "a", operation: operation)
        let count = try Require.product([a.rows, rows], "a", of: operation)
        var result = [Int32](repeating: 0, count: count)
        try a.withUnsafeWords { words in
            try result.withUnsafeMutableBufferPointer { out in
                try multiply(words, rows: a.rows, into: out, rowStride: rows)
            }
        }
        return result
    }

    /// Pointer form of `multiply(_:)`: `a` holds `m` rows of `ck_words(columns)` words (leftover bits zero);
    /// row i of the result goes to `out[i·rowStride ..< i·rowStride + self.rows]` (`rowStride ≥ self.rows`),
    /// other elements of `out` are left alone.
    public func multiply(
        _ a: UnsafeBufferPointer<UInt64>, rows m: Int, into out: UnsafeMutableBufferPointer<Int32>, rowStride: Int
    ) throws {
        let operation = "BinaryGEMMWeights.multiply"
        try Require.size(m, "rows", of: operation)
        let perRow = wordCount(bits: columns)
        try Require.count(
            a.count, try Require.product([m, perRow], "rows", of: operation), "a", of: operation,
            shape: "rows \(m) × \(perRow) words for the weights' \(columns) bits")
        guard rowStride >= rows else {
            throw KernelError.argument(
                "rowStride", of: operation, "is \(rowStride), less than the \(rows) columns of the product")
        }
        try Require.size(rowStride, "rowStride", of: operation)
        let needed = try Require.product([m - 1, rowStride], "rows", of: operation) + rows
        try Require.atLeast(
            out.count, needed, "into", of: operation, shape: "\(m) rows of \(rows) with row stride \(rowStride)")
        try check(
            ck_bgemm_packed(a.baseAddress, Int64(m), handle, out.baseAddress, Int64(rowStride)),
            "\(operation) with m \(m), n \(rows), k \(columns), rowStride \(rowStride)")
    }

    private func requireBits(_ bits: Int, name: String, operation: String) throws {
        guard bits == columns else {
            throw KernelError.argument(
                name, of: operation, "has \(bits) bits per row, but the weights have \(columns)")
        }
    }
}

extension Kernels {
    /// One-shot XNOR-popcount GEMM: out[i][j] = Σₜ a[i][t]·b[j][t] over ±1 values, `a.rows × b.rows`.
    /// Packs `b` for this call only; keep a `BinaryGEMMWeights` to reuse it.
    public static func bgemm(a: PackedBits, b: PackedBits) throws -> [Int32] {
        let operation = "Kernels.bgemm"
        guard a.columns == b.columns else {
            throw KernelError.argument(
                "b", of: operation, "has \(b.columns) bits per row, but `a` has \(a.columns)")
        }
        let count = try Require.product([a.rows, b.rows], "a", of: operation)
        var result = [Int32](repeating: 0, count: count)
        try a.withUnsafeWords { aw in
            try b.withUnsafeWords { bw in
                try result.withUnsafeMutableBufferPointer { out in
                    try check(
                        ck_bgemm(
                            aw.baseAddress, bw.baseAddress, Int64(a.rows), Int64(b.rows), Int64(a.columns),
                            out.baseAddress),
                        "\(operation) with m \(a.rows), n \(b.rows), k \(a.columns)")
                }
            }
        }
        return result
    }
}
