import BNN
import CKernels
import Testing

/// Naive float im2col of NHWC input: row per output pixel, columns (kh, kw, c), zeros in the padding.
func referenceIm2col(_ x: [Float], _ g: ConvGeometry) -> [Float] {
    let oh = (g.height + 2 * g.padHeight - g.kernelHeight) / g.strideHeight + 1
    let ow = (g.width + 2 * g.padWidth - g.kernelWidth) / g.strideWidth + 1
    let row = g.kernelHeight * g.kernelWidth * g.channels
    var out = [Float](repeating: 0, count: g.batch * oh * ow * row)
    for b in 0..<g.batch {
        for oy in 0..<oh {
            for ox in 0..<ow {
                let p = (b * oh + oy) * ow + ox
                for i in 0..<g.kernelHeight {
                    for j in 0..<g.kernelWidth {
                        let iy = oy * g.strideHeight - g.padHeight + i
                        let ix = ox * g.strideWidth - g.padWidth + j
                        guard iy >= 0 && iy < g.height && ix >= 0 && ix < g.width else { continue }
                        for c in 0..<g.channels {
                            out[p * row + (i * g.kernelWidth + j) * g.channels + c] =
                                x[((b * g.height + iy) * g.width + ix) * g.channels + c]
                        }
                    }
                }
            }
        }
    }
    return out
}

/// Naive row-major C = alpha·op(A)·op(B) + beta·C with leading dimensions, accumulated in Double; also
/// returns per element the sum of the magnitudes of its terms, the scale a relative tolerance refers to.
func referenceSgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int, b: [Float], ldb: Int,
    beta: Float, c: [Float], ldc: Int
) -> (values: [Float], magnitudes: [Float]) {
    var out = c
    var magnitudes = [Float](repeating: 0, count: c.count)
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            var magnitude = 0.0
            for t in 0..<k {
                let av = transA ? a[t * lda + i] : a[i * lda + t]
                let bv = transB ? b[j * ldb + t] : b[t * ldb + j]
                sum += Double(av) * Double(bv)
                magnitude += abs(Double(av) * Double(bv))
            }
            let old = Double(c[i * ldc + j])
            out[i * ldc + j] = Float(Double(alpha) * sum + Double(beta) * old)
            magnitudes[i * ldc + j] = Float(abs(Double(alpha)) * magnitude + abs(Double(beta) * old))
        }
    }
    return (out, magnitudes)
}

@Suite struct FloatKernels {
    @Test(
        "im2col NHWC equals the naive gather",
        arguments: [
            ConvGeometry(batch: 1, height: 5, width: 6, channels: 3, kernelSize: 3, stride: 1, padding: 1),
            ConvGeometry(batch: 2, height: 9, width: 7, channels: 16, kernelSize: 3, stride: 2, padding: 1),
            ConvGeometry(batch: 1, height: 7, width: 7, channels: 5, kernelSize: 7, stride: 1, padding: 3),
            ConvGeometry(batch: 3, height: 4, width: 6, channels: 65, kernelSize: 1, stride: 2, padding: 0),
            ConvGeometry(
                batch: 1, height: 6, width: 5, channels: 2, kernelHeight: 3, kernelWidth: 1, strideHeight: 1,
                strideWidth: 2, padHeight: 0, padWidth: 1),
            // Large enough (> 65,536 output floats) for the kernel's parallel branch.
            ConvGeometry(batch: 2, height: 16, width: 16, channels: 32, kernelSize: 3, stride: 1, padding: 1),
        ])
    func im2colMatchesReference(_ g: ConvGeometry) throws {
        var rng = SeededGenerator(seed: UInt64(g.channels * 31 + g.kernelHeight))
        let x = (0..<(g.inputPixels * g.channels)).map { _ in Float.random(in: -3...3, using: &rng) }
        let expected = referenceIm2col(x, g)
        let got = try Kernels.im2colNHWC(input: x, geometry: g)
        expectEqualElements(got, expected, "Kernels.im2colNHWC \(g)")
        // Garbage first: padding taps must be written as zeros.
        var direct = [Float](repeating: .nan, count: expected.count)
        var shape = g.cShape
        #expect(ck_im2col_nhwc_f32(x, &shape, &direct) == CK_OK)
        expectEqualElements(direct, expected, "ck_im2col_nhwc_f32 \(g)")
    }

    struct GEMMCase: CustomStringConvertible, Sendable {
        let transA, transB: Bool
        let m, n, k, padA, padB, padC: Int
        let alpha, beta: Float
        var description: String {
            "transA \(transA) transB \(transB) m \(m) n \(n) k \(k) pads \(padA)/\(padB)/\(padC) α \(alpha) β \(beta)"
        }
    }

    @Test(
        "sgemm equals the naive product, with transposes and leading dimensions",
        arguments: [
            GEMMCase(transA: false, transB: false, m: 1, n: 1, k: 1, padA: 0, padB: 0, padC: 0, alpha: 1, beta: 0),
            GEMMCase(transA: false, transB: false, m: 37, n: 29, k: 65, padA: 0, padB: 0, padC: 0, alpha: 1, beta: 0),
            GEMMCase(transA: true, transB: false, m: 17, n: 64, k: 33, padA: 3, padB: 0, padC: 5, alpha: 0.5, beta: 1),
            GEMMCase(transA: false, transB: true, m: 64, n: 7, k: 128, padA: 0, padB: 2, padC: 0, alpha: -1, beta: 0.25),
            GEMMCase(transA: true, transB: true, m: 100, n: 90, k: 80, padA: 1, padB: 1, padC: 1, alpha: 2, beta: -1),
        ])
    func sgemmMatchesReference(_ t: GEMMCase) throws {
        var rng = SeededGenerator(seed: UInt64(t.m * 1000 + t.n * 10 + t.k))
        let (aRows, aCols) = t.transA ? (t.k, t.m) : (t.m, t.k)
        let (bRows, bCols) = t.transB ? (t.n, t.k) : (t.k, t.n)
        let (lda, ldb, ldc) = (aCols + t.padA, bCols + t.padB, t.n + t.padC)
        let a = (0..<(aRows * lda)).map { _ in Float.random(in: -1...1, using: &rng) }
        let b = (0..<(bRows * ldb)).map { _ in Float.random(in: -1...1, using: &rng) }
        let c0 = (0..<(t.m * ldc)).map { _ in Float.random(in: -1...1, using: &rng) }
        let (expected, magnitudes) = referenceSgemm(
            transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: lda, b: b,
            ldb: ldb, beta: t.beta, c: c0, ldc: ldc)
        var c = c0
        try Kernels.sgemm(
            transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: lda, b: b,
            ldb: ldb, beta: t.beta, c: &c, ldc: ldc)
        var wrong = 0
        for i in 0..<t.m {
            for j in 0..<ldc {
                let index = i * ldc + j
                if j < t.n {
                    // Relative 1e-4 of the magnitude of the terms summed, so cancellation cannot make it flaky.
                    if abs(c[index] - expected[index]) > 1e-4 * max(magnitudes[index], 1e-6) { wrong += 1 }
                } else if c[index] != c0[index] {
                    wrong += 1  // the padding of C must be left alone
                }
            }
        }
        #expect(wrong == 0, "\(t): \(wrong) elements wrong")
    }

    @Test("OpenBLAS is found and names its core")
    func blasCore() throws {
        try Kernels.loadBLAS()
        let core = Kernels.blasCore
        #expect(!core.isEmpty && core != "unavailable")
        try Kernels.setBLASThreads(1)
        try Kernels.setBLASThreads(2)
    }
}
