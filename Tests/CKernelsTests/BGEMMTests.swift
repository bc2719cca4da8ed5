import BNN
import CKernels
import Testing

/// Naive ±1 GEMM: out[i][j] = Σₜ a[i][t]·b[j][t], integer loops over the unpacked values.
func referenceBGEMM(a: [Int8], b: [Int8], m: Int, n: Int, k: Int) -> [Int32] {
    var out = [Int32](repeating: 0, count: m * n)
    a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { out in
                // Rows are dealt out round-robin so both halves of the work are about equal.
                let parts = m * n * k > 1_000_000 ? 2 : 1
                parallelFor(parts) { part in
                    var i = part
                    while i < m {
                        let rowA = a.baseAddress! + i * k
                        var j = 0
                        while j < n {
                            let rowB = b.baseAddress! + j * k
                            var sum: Int32 = 0
                            var t = 0
                            while t < k {
                                sum &+= Int32(rowA[t] &* rowB[t])
                                t &+= 1
                            }
                            out[i * n + j] = sum
                            j &+= 1
                        }
                        i &+= parts
                    }
                }
            }
        }
    }
    return out
}

/// Sizes on both sides of the 64-bit word and of the kernels' register tiles, plus one large size.
let gemmSizes = [1, 7, 63, 64, 65, 127, 1000]

struct GEMMShape: CustomStringConvertible, Sendable {
    let m, n, k: Int
    var description: String { "M \(m) N \(n) K \(k)" }
}

/// The cartesian product of `gemmSizes`, except the all-1000 shape when `includeLargest` is false.
func gemmShapes(includeLargest: Bool) -> [GEMMShape] {
    var shapes: [GEMMShape] = []
    for m in gemmSizes {
        for n in gemmSizes {
            for k in gemmSizes where includeLargest || m * n * k <= 130_000_000 {
                shapes.append(GEMMShape(m: m, n: n, k: k))
            }
        }
    }
    return shapes
}

extension EveryPath {
    @Test("bgemm equals the naive ±1 product on every shape, path and thread count",
          arguments: gemmShapes(includeLargest: true))
    func bgemmMatchesReference(shape: GEMMShape) throws {
        let (m, n, k) = (shape.m, shape.n, shape.k)
        var rng = SeededGenerator(seed: UInt64(m * 1_000_003 + n * 1009 + k))
        let aSigns = randomSigns(m * k, &rng)
        let bSigns = randomSigns(n * k, &rng)
        let expected = referenceBGEMM(a: aSigns, b: bSigns, m: m, n: n, k: k)
        let a = try packedBits(aSigns, rows: m, columns: k)
        let b = try packedBits(bSigns, rows: n, columns: k)
        let weights = try BinaryGEMMWeights(packing: b)
        try forEachConfiguration { configuration in
            let oneShot = try Kernels.bgemm(a: a, b: b)
            let packed = try weights.multiply(a)
            for (name, got) in [("ck_bgemm", oneShot), ("ck_bgemm_packed", packed)] {
                expectEqualElements(got, expected, "\(name) \(shape), \(configuration)") {
                    "row \($0 / n) column \($0 % n)"
                }
            }
        }
    }

    @Test("packed weights are reused across different left operands")
    func weightsReusedAcrossCalls() throws {
        for shape in [GEMMShape(m: 65, n: 127, k: 1000), GEMMShape(m: 7, n: 17, k: 63), GEMMShape(m: 200, n: 300, k: 129)] {
            var rng = SeededGenerator(seed: UInt64(shape.m * 31 + shape.n * 7 + shape.k))
            let bSigns = randomSigns(shape.n * shape.k, &rng)
            let weights = try BinaryGEMMWeights(packing: try packedBits(bSigns, rows: shape.n, columns: shape.k))
            let aSigns = (0..<2).map { _ in randomSigns(shape.m * shape.k, &rng) }
            let expected = aSigns.map { referenceBGEMM(a: $0, b: bSigns, m: shape.m, n: shape.n, k: shape.k) }
            let operands = try aSigns.map { try packedBits($0, rows: shape.m, columns: shape.k) }
            try forEachConfiguration { configuration in
                // Alternate the operands so each call follows one on different data.
                for round in 0..<2 {
                    for which in [round, 1 - round] {
                        let got = try weights.multiply(operands[which])
                        expectEqualElements(got, expected[which], "\(shape), \(configuration), operand \(which)") {
                            "row \($0 / shape.n) column \($0 % shape.n)"
                        }
                    }
                }
            }
        }
    }

    @Test("bgemm with a row stride larger than n leaves the gap untouched")
    func rowStrideLargerThanN() throws {
        let sentinel: Int32 = 0x5A5A_5A5A
        for (shape, stride) in [(GEMMShape(m: 9, n: 17, k: 65), 20), (GEMMShape(m: 130, n: 64, k: 128), 131),
                                (GEMMShape(m: 1, n: 1, k: 1), 2)] {
            var rng = SeededGenerator(seed: UInt64(stride))
            let aSigns = randomSigns(shape.m * shape.k, &rng)
            let bSigns = randomSigns(shape.n * shape.k, &rng)
            let expected = referenceBGEMM(a: aSigns, b: bSigns, m: shape.m, n: shape.n, k: shape.k)
            let a = packRows(aSigns, rows: shape.m, columns: shape.k)
            let weights = try BinaryGEMMWeights(packing: try packedBits(bSigns, rows: shape.n, columns: shape.k))
            try forEachConfiguration { configuration in
                // One extra full row at the end checks nothing is written past the last row either.
                var out = [Int32](repeating: sentinel, count: (shape.m + 1) * stride)
                try a.withUnsafeBufferPointer { a in
                    try out.withUnsafeMutableBufferPointer { out in
                        try weights.multiply(a, rows: shape.m, into: out, rowStride: stride)
                    }
                }
                var wrong = 0
                var touchedGap = 0
                for i in 0...shape.m {
                    for j in 0..<stride {
                        let value = out[i * stride + j]
                        if i < shape.m && j < shape.n {
                            if value != expected[i * shape.n + j] { wrong += 1 }
                        } else if value != sentinel {
                            touchedGap += 1
                        }
                    }
                }
                #expect(wrong == 0, "\(shape), row stride \(stride), \(configuration): \(wrong) wrong results")
                #expect(touchedGap == 0, "\(shape), row stride \(stride), \(configuration): \(touchedGap) gap elements written")
            }
        }
    }
}
