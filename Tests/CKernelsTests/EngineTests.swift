import CKernels
import Testing

/// One geometry of the packed-network test: the input images and the float stem in front of the binary layers.
struct EngineCase: CustomStringConvertible, Sendable {
    let height, width, channels: Int
    let stemChannels, stemKernel, stemStride: Int

    var description: String {
        "input \(height)×\(width)×\(channels), stem \(stemKernel)×\(stemKernel) stride \(stemStride) → \(stemChannels)"
    }
}

/// Stems of 1, 3 and 1 sixteen-channel registers (pixel blocks of 8, 2 and 4, windows over every border, widths
/// that leave a partial block), in front of the same binary layers: a stride-2 convolution that writes only sign
/// bits (thresholds), a shortcut and a residual convolution writing floats and bits, a 70-channel convolution
/// whose windows reach two pixels into the padding (no ReLU), a 1×1 convolution of 70 channels (two words per
/// pixel), pooling and a linear layer.
let engineCases = [
    EngineCase(height: 11, width: 13, channels: 3, stemChannels: 16, stemKernel: 3, stemStride: 1),
    EngineCase(height: 12, width: 17, channels: 2, stemChannels: 40, stemKernel: 5, stemStride: 2),
    EngineCase(height: 9, width: 21, channels: 4, stemChannels: 20, stemKernel: 3, stemStride: 1),
]

/// A tensor of one image: height × width × channels floats, NHWC.
private struct Image {
    var height, width, channels: Int
    var values: [Float]
}

/// The step's output transform, in the header's order: max(acc·prescale, floor) · scale + bias (+ residual), then
/// the ReLU after if asked.
private func referenceTransform(
    _ acc: Float, pre: Float, scale: Float, bias: Float, residual: Float, reluBefore: Bool, reluAfter: Bool
) -> Float {
    var v = acc * pre
    if reluBefore && v < 0 { v = 0 }
    var y = v * scale + bias + residual
    if reluAfter && y < 0 { y = 0 }
    return y
}

/// Naive float convolution, products added in (kernel row, kernel column, channel) order and taps in the padding
/// skipped, as the engine's float conv step adds them.
private func referenceConvF32(
    _ x: Image, weights: [Float], out: Int, kernel: Int, stride: Int, pad: Int, scale: [Float], bias: [Float],
    reluBefore: Bool
) -> Image {
    let oh = (x.height + 2 * pad - kernel) / stride + 1, ow = (x.width + 2 * pad - kernel) / stride + 1
    var y = Image(height: oh, width: ow, channels: out, values: [Float](repeating: 0, count: oh * ow * out))
    for oy in 0..<oh {
        for ox in 0..<ow {
            for o in 0..<out {
                var acc: Float = 0
                for a in 0..<kernel {
                    let iy = oy * stride - pad + a
                    if iy < 0 || iy >= x.height { continue }
                    for b in 0..<kernel {
                        let ix = ox * stride - pad + b
                        if ix < 0 || ix >= x.width { continue }
                        for c in 0..<x.channels {
                            let product = x.values[(iy * x.width + ix) * x.channels + c]
                                * weights[((o * kernel + a) * kernel + b) * x.channels + c]
                            acc += product
                        }
                    }
                }
                y.values[(oy * ow + ox) * out + o] = referenceTransform(
                    acc, pre: 1, scale: scale[o], bias: bias[o], residual: 0, reluBefore: reluBefore, reluAfter: false)
            }
        }
    }
    return y
}

/// Naive binary convolution of the signs of `x` (sign(0) = +1) with ±1 OHWI weights, zero padding, then the
/// transform.
private func referenceBConv(
    _ x: Image, signs: [Int8], out: Int, kernel: Int, stride: Int, pad: Int, pre: [Float], scale: [Float],
    bias: [Float], residual: Image?, reluBefore: Bool, reluAfter: Bool
) -> Image {
    let oh = (x.height + 2 * pad - kernel) / stride + 1, ow = (x.width + 2 * pad - kernel) / stride + 1
    var y = Image(height: oh, width: ow, channels: out, values: [Float](repeating: 0, count: oh * ow * out))
    for oy in 0..<oh {
        for ox in 0..<ow {
            for o in 0..<out {
                var acc: Int32 = 0
                for a in 0..<kernel {
                    let iy = oy * stride - pad + a
                    if iy < 0 || iy >= x.height { continue }
                    for b in 0..<kernel {
                        let ix = ox * stride - pad + b
                        if ix < 0 || ix >= x.width { continue }
                        for c in 0..<x.channels {
                            let xs: Int32 = x.values[(iy * x.width + ix) * x.channels + c] < 0 ? -1 : 1
                            acc += xs * Int32(signs[((o * kernel + a) * kernel + b) * x.channels + c])
                        }
                    }
                }
                let at = (oy * ow + ox) * out + o
                y.values[at] = referenceTransform(
                    Float(acc), pre: pre[o], scale: scale[o], bias: bias[o], residual: residual?.values[at] ?? 0,
                    reluBefore: reluBefore, reluAfter: reluAfter)
            }
        }
    }
    return y
}

/// Memory for the program's constants, released at the end of the test.
private final class Constants {
    var floats: [UnsafeMutablePointer<Float>] = []
    var weights: [OpaquePointer?] = []

    func pointer(_ values: [Float]) -> UnsafePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: values.count)
        p.initialize(from: values, count: values.count)
        floats.append(p)
        return UnsafePointer(p)
    }

    deinit {
        for p in floats { p.deallocate() }
        for w in weights { ck_bconv_weights_destroy(w) }
    }
}

extension EveryPath {
    @Test("a packed network of every step kind gives the floats of a naive reference, bit for bit", arguments: engineCases)
    func programMatchesReference(_ e: EngineCase) throws {
        var rng = SeededGenerator(seed: UInt64(e.height * 1009 + e.width * 101 + e.stemChannels))
        let constants = Constants()
        var steps: [ck_step] = []
        func shape(_ h: Int, _ w: Int, _ c: Int, kernel: Int = 1, stride: Int = 1, pad: Int = 0) -> ck_conv_shape {
            ck_conv_shape(
                batch: 1, height: Int64(h), width: Int64(w), channels: Int64(c), kernel_h: Int64(kernel),
                kernel_w: Int64(kernel), stride_h: Int64(stride), stride_w: Int64(stride), pad_h: Int64(pad),
                pad_w: Int64(pad))
        }
        func step(_ kind: ck_step_kind, _ s: ck_conv_shape, out: Int, input: Int, residual: Int = -1, output: Int = -1,
                  bits: Int = -1, flags: Int32 = 0) -> ck_step {
            var st = ck_step()
            st.kind = kind
            st.shape = s
            st.out_channels = Int64(out)
            st.input = Int32(input)
            st.residual = Int32(residual)
            st.output = Int32(output)
            st.output_bits = Int32(bits)
            st.flags = flags
            return st
        }
        /// Per-channel constants that give both signs of the transform: prescale (some 0, some negative), scale
        /// (some 0, some negative), bias on the scale of the products.
        func transformConstants(_ out: Int, magnitude: Float) -> ([Float], [Float], [Float]) {
            let pre = (0..<out).map { o -> Float in
                o == 0 ? 0 : (o == 1 ? -0.03 : Float.random(in: 0.01...0.1, using: &rng))
            }
            let scale = (0..<out).map { o -> Float in
                o % 5 == 4 ? 0 : Float.random(in: 0.5...1.5, using: &rng) * (o % 3 == 1 ? -1 : 1)
            }
            let bias = (0..<out).map { _ in Float.random(in: -magnitude...magnitude, using: &rng) }
            return (pre, scale, bias)
        }
        let relu = Int32(CK_RELU_BEFORE)

        // Step 0, stem: float conv of buffer 0 → floats 1, bits 2.
        let c0 = e.channels, c1 = e.stemChannels, k0 = e.stemKernel, s0 = e.stemStride, p0 = k0 / 2
        let stemWeights = randomFloats(c1 * k0 * k0 * c0, &rng)
        let stemScale = (0..<c1).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
        let stemBias = (0..<c1).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
        var st = step(CK_STEP_CONV_F32, shape(e.height, e.width, c0, kernel: k0, stride: s0, pad: p0), out: c1,
                      input: 0, output: 1, bits: 2, flags: relu)
        st.weights = constants.pointer(stemWeights)
        st.scale = constants.pointer(stemScale)
        st.bias = constants.pointer(stemBias)
        steps.append(st)
        let h1 = (e.height + 2 * p0 - k0) / s0 + 1, w1 = (e.width + 2 * p0 - k0) / s0 + 1
        let h2 = (h1 - 1) / 2 + 1, w2 = (w1 - 1) / 2 + 1

        // Binary convolutions: (input bits, geometry, outputs, flags, residual).
        let c2 = c1 + 4
        struct Binary {
            let input, height, width, channels, out, kernel, stride, pad: Int
            let residual, output, bits: Int
            let flags: Int32
        }
        let binaries = [
            Binary(input: 2, height: h1, width: w1, channels: c1, out: c2, kernel: 3, stride: 2, pad: 1,
                   residual: -1, output: -1, bits: 3, flags: relu),
            Binary(input: 3, height: h2, width: w2, channels: c2, out: c2, kernel: 3, stride: 1, pad: 1,
                   residual: 4, output: 5, bits: 6, flags: relu),
            Binary(input: 6, height: h2, width: w2, channels: c2, out: 70, kernel: 3, stride: 1, pad: 2,
                   residual: -1, output: -1, bits: 7, flags: 0),
            Binary(input: 7, height: h2 + 2, width: w2 + 2, channels: 70, out: 10, kernel: 1, stride: 1, pad: 0,
                   residual: -1, output: 8, bits: -1, flags: Int32(CK_RELU_AFTER)),
        ]
        var signs: [[Int8]] = []
        var transforms: [([Float], [Float], [Float])] = []
        for (index, b) in binaries.enumerated() {
            let ohwi = randomSigns(b.out * b.kernel * b.kernel * b.channels, &rng)
            var weights: OpaquePointer?
            let status = ck_bconv_weights_create_from_bits(
                packRows(ohwi, rows: b.out * b.kernel * b.kernel, columns: b.channels), Int64(b.out),
                Int64(b.channels), Int64(b.kernel), Int64(b.kernel), &weights)
            #expect(status == CK_OK)
            constants.weights.append(weights)
            let t = transformConstants(b.out, magnitude: 0.05 * Float(b.kernel * b.kernel * b.channels).squareRoot())
            signs.append(ohwi)
            transforms.append(t)
            var st = step(CK_STEP_BCONV, shape(b.height, b.width, b.channels, kernel: b.kernel, stride: b.stride,
                                               pad: b.pad),
                          out: b.out, input: b.input, residual: b.residual, output: b.output, bits: b.bits,
                          flags: b.flags)
            st.binary_weights = weights
            st.prescale = constants.pointer(t.0)
            st.scale = constants.pointer(t.1)
            st.bias = constants.pointer(t.2)
            if index == 1 {
                // The shortcut the residual convolution adds: every other pixel of the stem, channels centred.
                steps.append(step(CK_STEP_SHORTCUT, shape(h1, w1, c1, stride: 2), out: c2, input: 1, output: 4))
            }
            steps.append(st)
        }
        let poolScale = (0..<10).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
        let poolBias = (0..<10).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
        st = step(CK_STEP_GLOBAL_AVGPOOL, shape(h2 + 2, w2 + 2, 10), out: 10, input: 8, output: 9)
        st.scale = constants.pointer(poolScale)
        st.bias = constants.pointer(poolBias)
        steps.append(st)
        let linearWeights = randomFloats(5 * 10, &rng), linearBias = randomFloats(5, &rng)
        st = step(CK_STEP_LINEAR, shape(1, 1, 10), out: 5, input: 9, output: 10)
        st.weights = constants.pointer(linearWeights)
        st.bias = constants.pointer(linearBias)
        steps.append(st)

        var program: OpaquePointer?
        #expect(ck_program_create(steps, Int32(steps.count), &program) == CK_OK)
        defer { ck_program_destroy(program) }

        // The reference, image by image.
        let images = 3, imageSize = e.height * e.width * c0
        let input = (0..<(images * imageSize)).map { _ in Float.random(in: -2...2, using: &rng) }
        var expected: [Float] = []
        for n in 0..<images {
            let x = Image(height: e.height, width: e.width, channels: c0,
                          values: Array(input[(n * imageSize)..<((n + 1) * imageSize)]))
            let stem = referenceConvF32(x, weights: stemWeights, out: c1, kernel: k0, stride: s0, pad: p0,
                                        scale: stemScale, bias: stemBias, reluBefore: true)
            var shortcut = Image(height: h2, width: w2, channels: c2, values: [Float](repeating: 0, count: h2 * w2 * c2))
            for y in 0..<h2 {
                for xx in 0..<w2 {
                    for c in 0..<c1 {
                        shortcut.values[(y * w2 + xx) * c2 + 2 + c] = stem.values[(2 * y * w1 + 2 * xx) * c1 + c]
                    }
                }
            }
            var current = stem
            for (index, b) in binaries.enumerated() {
                let t = transforms[index]
                current = referenceBConv(
                    current, signs: signs[index], out: b.out, kernel: b.kernel, stride: b.stride, pad: b.pad,
                    pre: t.0, scale: t.1, bias: t.2, residual: b.residual >= 0 ? shortcut : nil,
                    reluBefore: b.flags & relu != 0, reluAfter: b.flags & Int32(CK_RELU_AFTER) != 0)
            }
            var pooled = [Float](repeating: 0, count: 10)
            for p in 0..<(current.height * current.width) {
                for j in 0..<10 { pooled[j] += current.values[p * 10 + j] }
            }
            for j in 0..<10 {
                pooled[j] /= Float(current.height * current.width)
                pooled[j] *= poolScale[j]
                pooled[j] += poolBias[j]
            }
            for f in 0..<5 {
                var sum: Float = 0
                for i in 0..<10 { sum += linearWeights[f * 10 + i] * pooled[i] }
                expected.append(sum + linearBias[f])
            }
        }

        try forEachConfiguration { configuration in
            // All images in one call (across images with 2 threads), then one at a time (threads within layers).
            var together = [Float](repeating: .nan, count: images * 5)
            #expect(ck_program_run(program, input, Int64(images), &together) == CK_OK)
            expectEqualElements(together, expected, "\(e), \(images) images together, \(configuration)")
            for n in 0..<images {
                var one = [Float](repeating: .nan, count: 5)
                let status = input.withUnsafeBufferPointer {
                    ck_program_run(program, $0.baseAddress! + n * imageSize, 1, &one)
                }
                #expect(status == CK_OK)
                expectEqualElements(one, Array(expected[(n * 5)..<((n + 1) * 5)]), "\(e), image \(n) alone, \(configuration)")
            }
        }
    }
}
