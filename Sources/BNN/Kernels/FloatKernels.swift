import CKernels

extension Kernels {
    /// Float im2col of an NHWC input: one row per output pixel (n, oh, ow), columns ordered (kh, kw, c),
    /// zero where the window covers padding. Returns `N·OH·OW × kernelHeight·kernelWidth·C` floats.
    public static func im2colNHWC(input: [Float], geometry: ConvGeometry) throws -> [Float] {
        let operation = "Kernels.im2colNHWC"
        let (outHeight, outWidth) = try geometry.validatedOutputSize(operation: operation, argument: "geometry")
        let count = try Require.product(
            [geometry.batch, outHeight, outWidth, geometry.kernelHeight, geometry.kernelWidth, geometry.channels],
            "geometry", of: operation)
        var result = [Float](repeating: 0, count: count)
        try input.withUnsafeBufferPointer { x in
            try result.withUnsafeMutableBufferPointer { out in
                try im2colNHWC(input: x, geometry: geometry, into: out)
            }
        }
        return result
    }

    /// Pointer form of `im2colNHWC(input:geometry:)`: writes the first `N·OH·OW·kh·kw·C` elements of `into`.
    public static func im2colNHWC(
        input: UnsafeBufferPointer<Float>, geometry: ConvGeometry, into out: UnsafeMutableBufferPointer<Float>
    ) throws {
        let operation = "Kernels.im2colNHWC"
        let (outHeight, outWidth) = try geometry.validatedOutputSize(operation: operation, argument: "geometry")
        let inputCount = try Require.product(
            [geometry.batch, geometry.height, geometry.width, geometry.channels], "geometry", of: operation)
        try Require.count(
            input.count, inputCount, "input", of: operation,
            shape: "N \(geometry.batch) × H \(geometry.height) × W \(geometry.width) × C \(geometry.channels)")
        let outputCount = try Require.product(
            [geometry.batch, outHeight, outWidth, geometry.kernelHeight, geometry.kernelWidth, geometry.channels],
            "geometry", of: operation)
        try Require.atLeast(
            out.count, outputCount, "into", of: operation,
            shape: "\(geometry.batch * outHeight * outWidth) output pixels × "
                + "\(geometry.kernelHeight)·\(geometry.kernelWidth)·\(geometry.channels)")
        try im2colNHWC(input: input.baseAddress!, geometry: geometry, into: out.baseAddress!,
                       context: "\(operation) with geometry \(geometry)")
    }

    /// The im2col behind the public forms and the ops, on buffers the caller has sized; `context` names the call
    /// in errors.
    static func im2colNHWC(
        input: UnsafePointer<Float>, geometry: ConvGeometry, into out: UnsafeMutablePointer<Float>,
        context: @autoclosure () -> String
    ) throws {
        var shape = geometry.cShape
        try check(ck_im2col_nhwc_f32(input, &shape, out), context())
    }

    /// Row-major single-precision GEMM through OpenBLAS: c = alpha·op(a)·op(b) + beta·c, where op(x) is x
    /// or its transpose, op(a) is m × k, op(b) is k × n and c is m × n; `lda`, `ldb`, `ldc` are the stored
    /// row lengths. Elements of `c` outside the m × n matrix are left alone.
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int, b: [Float],
        ldb: Int, beta: Float, c: inout [Float], ldc: Int
    ) throws {
        try a.withUnsafeBufferPointer { a in
            try b.withUnsafeBufferPointer { b in
                try c.withUnsafeMutableBufferPointer { c in
                    try sgemm(
                        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b,
                        ldb: ldb, beta: beta, c: c, ldc: ldc)
                }
            }
        }
    }

    /// Pointer form of the array `sgemm`, for operands that live in other storage (no copies).
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafeBufferPointer<Float>, lda: Int,
        b: UnsafeBufferPointer<Float>, ldb: Int, beta: Float, c: UnsafeMutableBufferPointer<Float>, ldc: Int
    ) throws {
        let operation = "Kernels.sgemm"
        try Require.size(m, "m", of: operation)
        try Require.size(n, "n", of: operation)
        try Require.size(k, "k", of: operation)
        // Stored shape of each operand: rows × row length (before the leading dimension pads it).
        let operands: [(name: String, rows: Int, columns: Int, leading: Int, leadingName: String, count: Int)] = [
            ("a", transA ? k : m, transA ? m : k, lda, "lda", a.count),
            ("b", transB ? n : k, transB ? k : n, ldb, "ldb", b.count),
            ("c", m, n, ldc, "ldc", c.count),
        ]
        for operand in operands {
            guard operand.leading >= operand.columns else {
                throw KernelError.argument(
                    operand.leadingName, of: operation,
                    "is \(operand.leading), less than the \(operand.columns) elements of a row of `\(operand.name)`")
            }
            try Require.size(operand.leading, operand.leadingName, of: operation)
            let needed = (operand.rows - 1) * operand.leading + operand.columns
            try Require.atLeast(
                operand.count, needed, operand.name, of: operation,
                shape: "\(operand.rows) rows of \(operand.columns) with \(operand.leadingName) \(operand.leading)")
        }
        try sgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a.baseAddress!, lda: lda,
            b: b.baseAddress!, ldb: ldb, beta: beta, c: c.baseAddress!, ldc: ldc,
            context: "\(operation) with m \(m), n \(n), k \(k), lda \(lda), ldb \(ldb), ldc \(ldc)")
    }

    /// The sgemm behind the public forms and the ops, on operands the caller has sized; `context` names the call
    /// in errors.
    static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
        context: @autoclosure () -> String
    ) throws {
        try check(
            ck_sgemm(
                transA ? 1 : 0, transB ? 1 : 0, Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta,
                c, Int64(ldc)),
            context())
    }
}
