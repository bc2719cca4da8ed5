import BNN
import CKernels
import Testing

/// One binary convolution case: geometry (NHWC input, window) and output channels.
struct ConvCase: CustomStringConvertible, Sendable {
    let batch, height, width, channels, outputChannels: Int
    let kernelHeight, kernelWidth, strideHeight, strideWidth, padHeight, padWidth: Int

    init(n: Int, h: Int, w: Int, c: Int, o: Int, kernel: Int, stride: Int, pad: Int) {
        self.init(n: n, h: h, w: w, c: c, o: o, kernel: (kernel, kernel), stride: (stride, stride), pad: (pad, pad))
    }

    init(n: Int, h: Int, w: Int, c: Int, o: Int, kernel: (Int, Int), stride: (Int, Int), pad: (Int, Int)) {
        (batch, height, width, channels, outputChannels) = (n, h, w, c, o)
        (kernelHeight, kernelWidth) = kernel
        (strideHeight, strideWidth) = stride
        (padHeight, padWidth) = pad
    }

    var geometry: ConvGeometry {
        ConvGeometry(
            batch: batch, height: height, width: width, channels: channels, kernelHeight: kernelHeight,
            kernelWidth: kernelWidth, strideHeight: strideHeight, strideWidth: strideWidth, padHeight: padHeight,
            padWidth: padWidth)
    }

    var outputHeight: Int { (height + 2 * padHeight - kernelHeight) / strideHeight + 1 }
    var outputWidth: Int { (width + 2 * padWidth - kernelWidth) / strideWidth + 1 }
    var outputPixels: Int { batch * outputHeight * outputWidth }

    /// Where element `index` of an NHWC output is, for failure messages.
    func locateElement(_ index: Int) -> String {
        locatePixel(index / outputChannels) + " channel \(index % outputChannels)"
    }

    /// Where word `index` of a packed NHWC output is.
    func locateWord(_ index: Int) -> String {
        let words = (outputChannels + 63) / 64
        return locatePixel(index / words) + " word \(index % words)"
    }

    private func locatePixel(_ p: Int) -> String {
        "image \(p / (outputHeight * outputWidth)) y \((p / outputWidth) % outputHeight) x \(p % outputWidth)"
    }

    var description: String {
        "N\(batch) H\(height) W\(width) C\(channels) → O\(outputChannels), kernel \(kernelHeight)×\(kernelWidth), "
            + "stride \(strideHeight)×\(strideWidth), pad \(padHeight)×\(padWidth)"
    }
}

/// A covering set rather than the full product: every kernel size (1, 3, 5, 7), stride (1, 2), padding
/// (0, 1, 3), channel count (3, 16, 64, 65, 512: word-level and bit-level patches), batch (1, 3) and
/// output channel count (1, 17, 64, 130) appears, with windows that hang over the padding on every side,
/// windows entirely in the padding (pad 3 with a 3×3 kernel) and one non-square window.
let convCases: [ConvCase] = [
    ConvCase(n: 1, h: 5, w: 6, c: 3, o: 17, kernel: 1, stride: 1, pad: 0),
    ConvCase(n: 3, h: 9, w: 7, c: 65, o: 64, kernel: 1, stride: 2, pad: 0),
    ConvCase(n: 1, h: 5, w: 6, c: 512, o: 1, kernel: 1, stride: 1, pad: 1),
    ConvCase(n: 3, h: 9, w: 7, c: 16, o: 17, kernel: 3, stride: 1, pad: 1),
    ConvCase(n: 1, h: 9, w: 7, c: 64, o: 64, kernel: 3, stride: 2, pad: 1),
    ConvCase(n: 1, h: 5, w: 6, c: 65, o: 1, kernel: 3, stride: 1, pad: 0),
    ConvCase(n: 3, h: 5, w: 6, c: 3, o: 17, kernel: 3, stride: 2, pad: 3),
    ConvCase(n: 3, h: 5, w: 6, c: 512, o: 64, kernel: 3, stride: 1, pad: 1),
    ConvCase(n: 1, h: 5, w: 6, c: 64, o: 17, kernel: 5, stride: 1, pad: 3),
    ConvCase(n: 1, h: 9, w: 7, c: 16, o: 64, kernel: 5, stride: 2, pad: 0),
    ConvCase(n: 3, h: 5, w: 6, c: 512, o: 17, kernel: 5, stride: 1, pad: 1),
    ConvCase(n: 3, h: 9, w: 7, c: 65, o: 64, kernel: 7, stride: 2, pad: 3),
    ConvCase(n: 1, h: 5, w: 6, c: 3, o: 1, kernel: 7, stride: 1, pad: 1),
    ConvCase(n: 1, h: 9, w: 7, c: 512, o: 17, kernel: 7, stride: 1, pad: 0),
    ConvCase(n: 1, h: 9, w: 7, c: 16, o: 64, kernel: 7, stride: 2, pad: 1),
    ConvCase(n: 1, h: 9, w: 7, c: 65, o: 17, kernel: (3, 1), stride: (2, 1), pad: (1, 0)),
    // More than 64 output channels (several words of output bits, a partial last one) and more output
    // pixels than one unit of the kernel's work.
    ConvCase(n: 3, h: 9, w: 7, c: 65, o: 130, kernel: 3, stride: 1, pad: 1),
    // Fewer than 64 channels gathered as row words (one word per kernel row or two, a tap across a word
    // boundary, strides 1, 2 and 3, widths that are not a multiple of 8), output channels that fill or split
    // 16-channel panels, and pixel counts that are not a multiple of the micro-kernel's rows.
    ConvCase(n: 2, h: 11, w: 13, c: 32, o: 32, kernel: 3, stride: 1, pad: 1),
    ConvCase(n: 1, h: 10, w: 19, c: 40, o: 40, kernel: 3, stride: 2, pad: 1),
    ConvCase(n: 1, h: 9, w: 21, c: 21, o: 16, kernel: 3, stride: 3, pad: 2),
    ConvCase(n: 3, h: 6, w: 5, c: 16, o: 48, kernel: (1, 3), stride: (1, 2), pad: (0, 1)),
]

/// Naive convolution of ±1 NHWC input with ±1 weights (given as OHWI, i.e. the OIHW signs transposed so
/// the inner loop runs over contiguous channels), zero-padded: out[p][o] = Σ x·w over in-bounds taps.
func referenceBConv(input: [Int8], weightsOHWI: [Int8], _ c: ConvCase) -> [Int32] {
    let channels = c.channels
    let taps = c.kernelHeight * c.kernelWidth
    var out = [Int32](repeating: 0, count: c.outputPixels * c.outputChannels)
    input.withUnsafeBufferPointer { x in
        weightsOHWI.withUnsafeBufferPointer { w in
            out.withUnsafeMutableBufferPointer { out in
                let parts = c.outputPixels * c.outputChannels * taps * channels > 1_000_000 ? 2 : 1
                parallelFor(parts) { part in
                    var p = part
                    while p < c.outputPixels {
                        let b = p / (c.outputHeight * c.outputWidth)
                        let oy = (p / c.outputWidth) % c.outputHeight
                        let ox = p % c.outputWidth
                        for o in 0..<c.outputChannels {
                            var sum: Int32 = 0
                            for i in 0..<c.kernelHeight {
                                let iy = oy * c.strideHeight - c.padHeight + i
                                if iy < 0 || iy >= c.height { continue }
                                for j in 0..<c.kernelWidth {
                                    let ix = ox * c.strideWidth - c.padWidth + j
                                    if ix < 0 || ix >= c.width { continue }
                                    let xp = x.baseAddress! + ((b * c.height + iy) * c.width + ix) * channels
                                    let wp = w.baseAddress! + ((o * c.kernelHeight + i) * c.kernelWidth + j) * channels
                                    var t = 0
                                    while t < channels {
                                        sum &+= Int32(xp[t] &* wp[t])
                                        t &+= 1
                                    }
                                }
                            }
                            out[p * c.outputChannels + o] = sum
                        }
                        p &+= parts
                    }
                }
            }
        }
    }
    return out
}

/// The header's output transform, in its order: (relu? acc) · scale + bias, + residual, relu.
func referenceTransform(
    _ acc: [Int32], channels: Int, scale: [Float]?, bias: [Float]?, residual: [Float]?, reluBefore: Bool,
    reluAfter: Bool
) -> [Float] {
    acc.indices.map { index in
        let o = index % channels
        var y = Float(reluBefore ? max(acc[index], 0) : acc[index])
        y = y * (scale?[o] ?? 1) + (bias?[o] ?? 0)
        if let residual { y += residual[index] }
        if reluAfter { y = max(y, 0) }
        return y
    }
}

/// One output transform to try, by name.
struct TransformCase {
    let name: String
    let scale: Bool, bias: Bool, residual: Bool, reluBefore: Bool, reluAfter: Bool
}

let transformCases = [
    TransformCase(name: "scale, bias, relu before", scale: true, bias: true, residual: false, reluBefore: true, reluAfter: false),
    TransformCase(name: "scale, bias, residual, relu after", scale: true, bias: true, residual: true, reluBefore: false, reluAfter: true),
    TransformCase(name: "relu before and after with residual", scale: true, bias: true, residual: true, reluBefore: true, reluAfter: true),
    TransformCase(name: "bias only", scale: false, bias: true, residual: false, reluBefore: false, reluAfter: false),
]

extension EveryPath {
    @Test("bconv2d equals the naive zero-padded ±1 convolution, with every output transform", arguments: convCases)
    func bconvMatchesReference(_ c: ConvCase) throws {
        var rng = SeededGenerator(seed: UInt64(c.channels * 7919 + c.kernelHeight * 131 + c.outputChannels * 17 + c.batch))
        let inputSigns = randomSigns(c.batch * c.height * c.width * c.channels, &rng)
        let weightFloats = randomFloats(c.outputChannels * c.channels * c.kernelHeight * c.kernelWidth, &rng)
        // OIHW signs transposed to OHWI, by index arithmetic only.
        var weightsOHWI = [Int8](repeating: 0, count: weightFloats.count)
        for o in 0..<c.outputChannels {
            for ch in 0..<c.channels {
                for i in 0..<c.kernelHeight {
                    for j in 0..<c.kernelWidth {
                        let oihw = ((o * c.channels + ch) * c.kernelHeight + i) * c.kernelWidth + j
                        let ohwi = ((o * c.kernelHeight + i) * c.kernelWidth + j) * c.channels + ch
                        weightsOHWI[ohwi] = referenceSign(weightFloats[oihw])
                    }
                }
            }
        }
        let expected = referenceBConv(input: inputSigns, weightsOHWI: weightsOHWI, c)
        let count = c.outputPixels * c.outputChannels
        let scale = (0..<c.outputChannels).map { o in o % 5 == 4 ? 0 : Float.random(in: -2...2, using: &rng) }
        let bias = (0..<c.outputChannels).map { _ in Float(Int.random(in: -8...8, using: &rng)) * 0.5 }
        let residual = (0..<count).map { _ in Float.random(in: -4...4, using: &rng) }

        let input = try packedBits(inputSigns, rows: c.batch * c.height * c.width, columns: c.channels)
        let fromFloats = try BinaryConvWeights(
            oihw: weightFloats, outputChannels: c.outputChannels, inputChannels: c.channels,
            kernelHeight: c.kernelHeight, kernelWidth: c.kernelWidth)
        let fromBits = try BinaryConvWeights(
            packedOHWI: try packedBits(weightsOHWI, rows: c.outputChannels * c.kernelHeight * c.kernelWidth,
                                       columns: c.channels),
            outputChannels: c.outputChannels, kernelHeight: c.kernelHeight, kernelWidth: c.kernelWidth)
        // The same two weight sets made through the C API, for calling ck_bconv2d directly.
        let packedOHWI = packRows(weightsOHWI, rows: c.outputChannels * c.kernelHeight * c.kernelWidth, columns: c.channels)
        var cFromFloats: OpaquePointer?
        var cFromBits: OpaquePointer?
        #expect(ck_bconv_weights_create(
            weightFloats, Int64(c.outputChannels), Int64(c.channels), Int64(c.kernelHeight), Int64(c.kernelWidth),
            &cFromFloats) == CK_OK)
        #expect(ck_bconv_weights_create_from_bits(
            packedOHWI, Int64(c.outputChannels), Int64(c.channels), Int64(c.kernelHeight), Int64(c.kernelWidth),
            &cFromBits) == CK_OK)
        defer {
            ck_bconv_weights_destroy(cFromFloats)
            ck_bconv_weights_destroy(cFromBits)
        }
        let taps = c.kernelHeight * c.kernelWidth
        let savesWords = (taps * c.channels + 63) / 64 < taps * ((c.channels + 63) / 64)
        for weights in [fromFloats, fromBits] {
            #expect(!weights.isBitLevel || savesWords, "\(c): bit-level layout chosen where it saves no words")
        }
        #expect(fromFloats.isBitLevel == fromBits.isBitLevel, "\(c): the two creation paths chose different layouts")

        try forEachConfiguration { configuration in
            for (origin, weights, cWeights) in [("OIHW floats", fromFloats, cFromFloats), ("packed OHWI bits", fromBits, cFromBits)] {
                let context = "\(c), weights from \(origin), \(configuration)"

                // The C API directly, no transform: y = acc. Outputs start as garbage so every element and
                // every leftover bit must be written.
                var outInt = [Int32](repeating: 0x7777_7777, count: count)
                var outFloat = [Float](repeating: .nan, count: count)
                let bitWords = c.outputPixels * ((c.outputChannels + 63) / 64)
                var outBits = [UInt64](repeating: ~0, count: bitWords)
                var shape = c.geometry.cShape
                let status = outInt.withUnsafeMutableBufferPointer { outInt in
                    outFloat.withUnsafeMutableBufferPointer { outFloat in
                        outBits.withUnsafeMutableBufferPointer { outBits in
                            var transform = ck_output_transform(
                                scale: nil, bias: nil, residual: nil, flags: 0, out_int: outInt.baseAddress,
                                out: outFloat.baseAddress, out_bits: outBits.baseAddress)
                            return input.withUnsafeWords { ck_bconv2d($0.baseAddress, &shape, cWeights, &transform) }
                        }
                    }
                }
                #expect(status == CK_OK, "\(context): \(String(cString: ck_status_message(status)))")
                expectEqualElements(outInt, expected, "out_int \(context)", locate: c.locateElement)
                let plain = expected.map(Float.init)
                expectEqualElements(outFloat, plain, "out without transform \(context)", locate: c.locateElement)
                let plainBits = packRows(plain.map(referenceSign), rows: c.outputPixels, columns: c.outputChannels)
                expectEqualElements(outBits, plainBits, "out_bits without transform \(context)", locate: c.locateWord)

                for t in transformCases {
                    let transform = OutputTransform(
                        scale: t.scale ? scale : nil, bias: t.bias ? bias : nil, residual: t.residual ? residual : nil,
                        reluBefore: t.reluBefore, reluAfter: t.reluAfter, outputs: [.integers, .floats, .bits])
                    let result = try Kernels.binaryConv2d(input: input, geometry: c.geometry, weights: weights, transform: transform)
                    #expect(result.height == c.outputHeight && result.width == c.outputWidth)
                    expectEqualElements(result.integers, expected, "out_int with \(t.name), \(context)", locate: c.locateElement)
                    let want = referenceTransform(
                        expected, channels: c.outputChannels, scale: transform.scale, bias: transform.bias,
                        residual: transform.residual, reluBefore: t.reluBefore, reluAfter: t.reluAfter)
                    // The same float operations in the same order (no fused multiply-add): the same bits.
                    let got = result.floats ?? []
                    expectEqualElements(
                        got.map(\.bitPattern), want.map(\.bitPattern), "out with \(t.name), \(context)",
                        locate: c.locateElement)
                    // The bits are the sign of the float output the kernel wrote (sign(0) = +1).
                    let wantBits = packRows(got.map(referenceSign), rows: c.outputPixels, columns: c.outputChannels)
                    expectEqualElements(result.bits?.words, wantBits, "out_bits with \(t.name), \(context)", locate: c.locateWord)

                    // Bits alone, through the pointer-level entry, must be the same bits.
                    var alone = [UInt64](repeating: ~0, count: bitWords)
                    try input.withUnsafeWords { x in
                        try withBuffers(transform) { scale, bias, residual in
                            try alone.withUnsafeMutableBufferPointer { out in
                                try Kernels.binaryConv2d(
                                    input: x, geometry: c.geometry, weights: weights, scale: scale, bias: bias,
                                    residual: residual, reluBefore: t.reluBefore, reluAfter: t.reluAfter, bits: out)
                            }
                        }
                    }
                    expectEqualElements(alone, wantBits, "out_bits alone with \(t.name), \(context)", locate: c.locateWord)
                }
            }
        }
    }

    @Test("both patch layouts are exercised by the convolution cases")
    func bothLayoutsCovered() throws {
        var layouts = Set<Bool>()
        for c in convCases {
            let weights = try BinaryConvWeights(
                oihw: [Float](repeating: 1, count: c.outputChannels * c.channels * c.kernelHeight * c.kernelWidth),
                outputChannels: c.outputChannels, inputChannels: c.channels, kernelHeight: c.kernelHeight,
                kernelWidth: c.kernelWidth)
            layouts.insert(weights.isBitLevel)
        }
        #expect(layouts == [false, true], "layouts seen (bit-level?): \(layouts)")
    }
}

/// Buffers over the optional arrays of a transform, for the pointer-level entry.
func withBuffers<R>(
    _ t: OutputTransform,
    _ body: (UnsafeBufferPointer<Float>?, UnsafeBufferPointer<Float>?, UnsafeBufferPointer<Float>?) throws -> R
) rethrows -> R {
    func with(_ array: [Float]?, _ next: (UnsafeBufferPointer<Float>?) throws -> R) rethrows -> R {
        guard let array else { return try next(nil) }
        return try array.withUnsafeBufferPointer { try next($0) }
    }
    return try with(t.scale) { s in try with(t.bias) { b in try with(t.residual) { r in try body(s, b, r) } } }
}
