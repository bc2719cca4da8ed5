import BNN
import CKernels
import Testing

/// Naive max-pool over ±1 NHWC values; positions in the padding are skipped (PyTorch pads with −∞).
func referenceMaxPool(_ x: [Int8], _ g: ConvGeometry) -> [Int8] {
    let oh = (g.height + 2 * g.padHeight - g.kernelHeight) / g.strideHeight + 1
    let ow = (g.width + 2 * g.padWidth - g.kernelWidth) / g.strideWidth + 1
    var out = [Int8](repeating: 0, count: g.batch * oh * ow * g.channels)
    for b in 0..<g.batch {
        for oy in 0..<oh {
            for ox in 0..<ow {
                for c in 0..<g.channels {
                    var best: Int8 = -2  // below any ±1 value; every window here has an input pixel
                    for i in 0..<g.kernelHeight {
                        let iy = oy * g.strideHeight - g.padHeight + i
                        guard iy >= 0 && iy < g.height else { continue }
                        for j in 0..<g.kernelWidth {
                            let ix = ox * g.strideWidth - g.padWidth + j
                            guard ix >= 0 && ix < g.width else { continue }
                            best = max(best, x[((b * g.height + iy) * g.width + ix) * g.channels + c])
                        }
                    }
                    out[((b * oh + oy) * ow + ox) * g.channels + c] = best
                }
            }
        }
    }
    return out
}

let poolGeometries: [ConvGeometry] = [3, 64, 65].flatMap { channels in
    [
        ConvGeometry(batch: 2, height: 8, width: 6, channels: channels, kernelSize: 2, stride: 2),
        ConvGeometry(batch: 1, height: 9, width: 7, channels: channels, kernelSize: 2, stride: 2),
        ConvGeometry(batch: 2, height: 8, width: 8, channels: channels, kernelSize: 3, stride: 2, padding: 1),
        ConvGeometry(batch: 1, height: 9, width: 7, channels: channels, kernelSize: 3, stride: 2, padding: 1),
    ]
}

extension EveryPath {
    @Test("bmaxpool2d equals the naive max over ±1 values, ignoring padding", arguments: poolGeometries)
    func maxPoolMatchesReference(_ g: ConvGeometry) throws {
        var rng = SeededGenerator(seed: UInt64(g.channels * 100 + g.kernelHeight * 10 + g.height))
        // Mostly −1 so that windows of all −1 (where the max stays −1) actually occur.
        let signs: [Int8] = (0..<(g.inputPixels * g.channels)).map { _ in rng.next() % 4 == 0 ? 1 : -1 }
        let expectedSigns = referenceMaxPool(signs, g)
        let (oh, ow) = try g.outputSize()
        let expected = packRows(expectedSigns, rows: g.batch * oh * ow, columns: g.channels)
        #expect(expectedSigns.contains(-1) && expectedSigns.contains(1), "\(g): the data should give both outputs")
        let input = try packedBits(signs, rows: g.inputPixels, columns: g.channels)
        try forEachConfiguration { configuration in
            var direct = [UInt64](repeating: ~0, count: expected.count)
            var shape = g.cShape
            let status = input.withUnsafeWords { ck_bmaxpool2d($0.baseAddress, &shape, &direct) }
            #expect(status == CK_OK)
            expectEqualElements(direct, expected, "ck_bmaxpool2d \(g), \(configuration)") { "word \($0)" }
            let pooled = try Kernels.binaryMaxPool2d(input: input, geometry: g)
            #expect(pooled.rows == g.batch * oh * ow && pooled.columns == g.channels)
            expectEqualElements(pooled.words, expected, "Kernels.binaryMaxPool2d \(g), \(configuration)") { "word \($0)" }
        }
    }
}
