import CKernels
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
/// Stems of 128 and 80 outputs run in groups of 64 (two words of sign bits; a partial second group).
let engineCases = [
    EngineCase(height: 11, width: 13, channels: 3, stemChannels: 16, stemKernel: 3, stemStride: 1),
    EngineCase(height: 12, width: 17, channels: 2, stemChannels: 40, stemKernel: 5, stemStride: 2),
    EngineCase(height: 9, width: 21, channels: 4, stemChannels: 20, stemKernel: 3, stemStride: 1),
    EngineCase(height: 10, width: 19, channels: 3, stemChannels: 128, stemKernel: 3, stemStride: 1),
    EngineCase(height: 9, width: 14, channels: 3, stemChannels: 80, stemKernel: 3, stemStride: 2),
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
            // The global pool as the training graph's kernel: a sum in double, one rounding of the mean.
            var pooled = [Float](repeating: 0, count: 10)
            let pixels = current.height * current.width
            for j in 0..<10 {
                var sum = 0.0
                for p in 0..<pixels { sum += Double(current.values[p * 10 + j]) }
                pooled[j] = Float(sum / Double(pixels))
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

// MARK: - The steps of general binary networks: float pools, the transform alone, float convolutions of many
// channels, the training graph's global average pool, a linear layer over any buffer.

/// An NHWC geometry with a square window: what a pool or convolution step reads.
struct WindowCase: CustomStringConvertible, Sendable {
    let height, width, channels, kernel, stride, pad: Int
    var out = 0

    var outHeight: Int { (height + 2 * pad - kernel) / stride + 1 }
    var outWidth: Int { (width + 2 * pad - kernel) / stride + 1 }
    var description: String {
        "\(height)×\(width)×\(channels), \(kernel)×\(kernel) stride \(stride) pad \(pad)" + (out > 0 ? " → \(out)" : "")
    }
}

private func convShape(_ h: Int, _ w: Int, _ c: Int, kernel: Int = 1, stride: Int = 1, pad: Int = 0) -> ck_conv_shape {
    ck_conv_shape(
        batch: 1, height: Int64(h), width: Int64(w), channels: Int64(c), kernel_h: Int64(kernel),
        kernel_w: Int64(kernel), stride_h: Int64(stride), stride_w: Int64(stride), pad_h: Int64(pad), pad_w: Int64(pad))
}

private func windowShape(_ g: WindowCase) -> ck_conv_shape {
    convShape(g.height, g.width, g.channels, kernel: g.kernel, stride: g.stride, pad: g.pad)
}

private func makeStep(
    _ kind: ck_step_kind, _ s: ck_conv_shape, out: Int = 0, input: Int, residual: Int = -1, output: Int = -1,
    bits: Int = -1, flags: Int32 = 0
) -> ck_step {
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

/// The transform in the header's order with absent parts skipped (not applied as 1 or 0, which could turn −0
/// into +0), as the training graph's separate ops compute it.
private func referenceAffine(
    _ x: Float, pre: Float?, scale: Float?, bias: Float?, residual: Float?, reluBefore: Bool, reluAfter: Bool
) -> Float {
    var v = x
    if let pre { v = v * pre }
    if reluBefore && v < 0 { v = 0 }
    if let scale { v = v * scale }
    if let bias { v = v + bias }
    if let residual { v = v + residual }
    if reluAfter && v < 0 { v = 0 }
    return v
}

/// Per-channel optional constants of a transform.
private struct TransformParts {
    var pre, scale, bias: [Float]?
    var reluBefore = false, reluAfter = false

    var flags: Int32 { (reluBefore ? Int32(CK_RELU_BEFORE) : 0) | (reluAfter ? Int32(CK_RELU_AFTER) : 0) }

    func apply(_ x: [Float], channels c: Int, residual: [Float]?) -> [Float] {
        x.indices.map { i in
            referenceAffine(
                x[i], pre: pre?[i % c], scale: scale?[i % c], bias: bias?[i % c], residual: residual?[i],
                reluBefore: reluBefore, reluAfter: reluAfter)
        }
    }

    func set(_ st: inout ck_step, _ constants: Constants) {
        st.prescale = pre.map { constants.pointer($0) }
        st.scale = scale.map { constants.pointer($0) }
        st.bias = bias.map { constants.pointer($0) }
        st.flags = flags
    }
}

/// Appends a binary 1×1 convolution that reads bits buffer `bits` (`pixels` × `c` signs s) and writes float
/// buffer `output` with c + 1 channels: Σ s, then Σ s − 2·s_o for each o. Its floats are exact integers from which
/// each sign follows, so a program's result shows the bits a step wrote.
private func appendSignProbe(
    _ steps: inout [ck_step], _ constants: Constants, bits: Int, height: Int, width: Int, c: Int, output: Int
) {
    var signs = [Int8](repeating: 1, count: (c + 1) * c)
    for o in 0..<c { signs[(o + 1) * c + o] = -1 }
    var weights: OpaquePointer?
    let status = ck_bconv_weights_create_from_bits(
        packRows(signs, rows: c + 1, columns: c), Int64(c + 1), Int64(c), 1, 1, &weights)
    #expect(status == CK_OK)
    constants.weights.append(weights)
    var st = makeStep(CK_STEP_BCONV, convShape(height, width, c), out: c + 1, input: bits, output: output)
    st.binary_weights = weights
    steps.append(st)
}

/// What appendSignProbe's convolution writes for floats y (`c` channels per pixel): their signs, sign(0) = +1.
private func probeValues(_ y: [Float], c: Int) -> [Float] {
    stride(from: 0, to: y.count, by: c).flatMap { p -> [Float] in
        let s = (0..<c).map { y[p + $0] < 0 ? Float(-1) : 1 }
        let sum = s.reduce(0, +)
        return [sum] + s.map { sum - 2 * $0 }
    }
}

/// Expects the same bits in `got` as in `expected` (a byte comparison first: element by element only to report a
/// difference, which unoptimised test code does slowly on large layers).
private func expectSameBits(
    _ got: [Float], _ expected: [Float], _ context: @autoclosure () -> String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let same = got.count == expected.count && got.withUnsafeBytes { a in
        expected.withUnsafeBytes { b in a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
    }
    if !same {
        expectEqualElements(
            got.map(\.bitPattern), expected.map(\.bitPattern), context(), sourceLocation: sourceLocation)
    }
}

/// Runs the program of `steps` under every configuration, all images in one call and then one at a time, and
/// expects `expected` (images × output floats) bit for bit.
private func expectProgram(
    _ steps: [ck_step], input: [Float], images: Int, expected: [Float], _ context: String,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    var program: OpaquePointer?
    var failed: Int32 = -2
    let status = ck_program_create_checked(steps, Int32(steps.count), &program, &failed)
    #expect(status == CK_OK, "\(context): create failed at step \(failed)", sourceLocation: sourceLocation)
    guard status == CK_OK else { return }
    defer { ck_program_destroy(program) }
    var inputFloats: Int64 = 0, outputFloats: Int64 = 0
    ck_program_sizes(program, &inputFloats, &outputFloats)
    #expect(Int(inputFloats) * images == input.count, sourceLocation: sourceLocation)
    #expect(Int(outputFloats) * images == expected.count, sourceLocation: sourceLocation)
    let inSize = Int(inputFloats), outSize = Int(outputFloats)
    try forEachConfiguration { configuration in
        var together = [Float](repeating: .nan, count: images * outSize)
        #expect(ck_program_run(program, input, Int64(images), &together) == CK_OK, sourceLocation: sourceLocation)
        expectSameBits(
            together, expected, "\(context), \(images) images together, \(configuration)",
            sourceLocation: sourceLocation)
        for n in 0..<images {
            var one = [Float](repeating: .nan, count: outSize)
            let status = input.withUnsafeBufferPointer {
                ck_program_run(program, $0.baseAddress! + n * inSize, 1, &one)
            }
            #expect(status == CK_OK, sourceLocation: sourceLocation)
            expectSameBits(
                one, Array(expected[(n * outSize)..<((n + 1) * outSize)]),
                "\(context), image \(n) alone, \(configuration)", sourceLocation: sourceLocation)
        }
    }
}

/// A step under test in the three ways it can write: floats (the program's result), floats and bits (read
/// back through the sign probe), bits alone (through the probe). `make` builds the step from its float and
/// bits outputs; `prefix` are steps before it (buffers 1 ..< firstFree), `expected` its floats per image.
private func expectStepOutputs(
    prefix: [ck_step] = [], firstFree: Int = 1, make: (_ output: Int, _ bits: Int) -> ck_step, constants: Constants,
    outHeight: Int, outWidth: Int, outChannels: Int, input: [Float], images: Int, expected: [Float],
    _ context: String, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let f = firstFree
    try expectProgram(
        prefix + [make(f, -1)], input: input, images: images, expected: expected, "\(context), floats",
        sourceLocation: sourceLocation)
    let probe = probeValues(expected, c: outChannels)
    for floats in [true, false] {
        var steps = prefix + [make(floats ? f : -1, f + 1)]
        appendSignProbe(
            &steps, constants, bits: f + 1, height: outHeight, width: outWidth, c: outChannels, output: f + 2)
        try expectProgram(
            steps, input: input, images: images, expected: probe, "\(context), \(floats ? "floats and " : "")bits",
            sourceLocation: sourceLocation)
    }
}

/// Random floats with a few NaNs (both signs), which pools and the transform must carry as the training ops do.
private func floatsWithNaN(_ count: Int, _ rng: inout SeededGenerator) -> [Float] {
    var x = randomFloats(count, &rng)
    for i in stride(from: 17, to: count, by: 97) { x[i] = i % 2 == 0 ? .nan : -.nan }
    return x
}

/// Naive float pools in PyTorch's definitions: max with −∞ padding (first maximum kept, NaN propagates), or the
/// sum of the window's real pixels in raster order from 0 divided by kernel² (zero padding counted).
private func referencePool(_ x: [Float], _ g: WindowCase, max: Bool) -> [Float] {
    let (oh, ow, c) = (g.outHeight, g.outWidth, g.channels)
    var y = [Float](repeating: 0, count: oh * ow * c)
    for oy in 0..<oh {
        for ox in 0..<ow {
            for k in 0..<c {
                var acc: Float = max ? -.infinity : 0
                for a in 0..<g.kernel {
                    let iy = oy * g.stride - g.pad + a
                    if iy < 0 || iy >= g.height { continue }
                    for b in 0..<g.kernel {
                        let ix = ox * g.stride - g.pad + b
                        if ix < 0 || ix >= g.width { continue }
                        let v = x[(iy * g.width + ix) * c + k]
                        if max {
                            if v > acc || v.isNaN { acc = v }
                        } else {
                            acc += v
                        }
                    }
                }
                y[(oy * ow + ox) * c + k] = max ? acc : acc / Float(g.kernel * g.kernel)
            }
        }
    }
    return y
}

let maxPoolCases = [
    WindowCase(height: 7, width: 9, channels: 70, kernel: 3, stride: 2, pad: 1),
    WindowCase(height: 7, width: 9, channels: 70, kernel: 2, stride: 2, pad: 0),
    WindowCase(height: 8, width: 6, channels: 5, kernel: 3, stride: 1, pad: 1),
    WindowCase(height: 5, width: 11, channels: 130, kernel: 3, stride: 3, pad: 1),
    // An ImageNet stem's pool (3×3 stride 2 pad 1, even input, many channels), large enough to be split.
    WindowCase(height: 44, width: 44, channels: 64, kernel: 3, stride: 2, pad: 1),
    WindowCase(height: 32, width: 32, channels: 130, kernel: 3, stride: 2, pad: 1),
]

let avgPoolCases = [
    WindowCase(height: 7, width: 9, channels: 70, kernel: 2, stride: 2, pad: 0),
    WindowCase(height: 7, width: 9, channels: 70, kernel: 3, stride: 1, pad: 1),
    WindowCase(height: 6, width: 10, channels: 130, kernel: 3, stride: 2, pad: 1),
    WindowCase(height: 9, width: 7, channels: 3, kernel: 4, stride: 2, pad: 2),
]

/// Float convolutions of more than 4 input channels: a 3×3 layer of 70 channels with a residual, a 1×1 stride-2
/// downsample 64 → 128, few channels over a stride and the padding, a layer large enough to be split among 2
/// threads (its rows), and 130 outputs through 5×5 windows reaching 2 pixels into the padding.
/// Float stems (at most 4 input channels) of one to three groups of 64 outputs, full and partial registers, strides
/// 1 and 2, windows over every border and rows with a partial block of pixels.
let directStemCases = [
    WindowCase(height: 11, width: 13, channels: 3, kernel: 3, stride: 1, pad: 1, out: 16),
    WindowCase(height: 12, width: 17, channels: 2, kernel: 5, stride: 2, pad: 2, out: 40),
    WindowCase(height: 9, width: 21, channels: 4, kernel: 3, stride: 1, pad: 1, out: 64),
    WindowCase(height: 10, width: 19, channels: 3, kernel: 3, stride: 1, pad: 1, out: 128),
    WindowCase(height: 9, width: 14, channels: 3, kernel: 3, stride: 2, pad: 1, out: 80),
    WindowCase(height: 7, width: 11, channels: 1, kernel: 3, stride: 1, pad: 1, out: 150),
    // ImageNet stems (7×7 stride 2 pad 3), with blocks of pixels of every width (64, 48 and 16 outputs).
    WindowCase(height: 30, width: 34, channels: 3, kernel: 7, stride: 2, pad: 3, out: 64),
    WindowCase(height: 24, width: 34, channels: 3, kernel: 7, stride: 2, pad: 3, out: 48),
    WindowCase(height: 20, width: 34, channels: 3, kernel: 7, stride: 2, pad: 3, out: 16),
]

let convManyCases = [
    WindowCase(height: 7, width: 9, channels: 70, kernel: 3, stride: 1, pad: 1, out: 24),
    WindowCase(height: 8, width: 8, channels: 64, kernel: 1, stride: 2, pad: 0, out: 128),
    WindowCase(height: 9, width: 7, channels: 5, kernel: 3, stride: 2, pad: 1, out: 33),
    WindowCase(height: 16, width: 16, channels: 64, kernel: 3, stride: 1, pad: 1, out: 128),
    WindowCase(height: 6, width: 5, channels: 70, kernel: 5, stride: 1, pad: 2, out: 130),
    // ResNet-18's first downsample (1×1 stride 2, 64 → 128) on an even input, rows split among threads.
    WindowCase(height: 28, width: 28, channels: 64, kernel: 1, stride: 2, pad: 0, out: 128),
]

/// ck_conv2d_forward_f32 of a batch (OHWI weight rows), the training graph's float convolution.
private func trainingConv(_ x: [Float], images: Int, _ g: WindowCase, weights: [Float]) -> [Float] {
    var shape = windowShape(g)
    shape.batch = Int64(images)
    var y = [Float](repeating: .nan, count: images * g.outHeight * g.outWidth * g.out)
    #expect(ck_conv2d_forward_f32(x, &shape, weights, Int64(g.out), 0, &y) == CK_OK)
    return y
}

/// The forward's definition, one image: per output, fused multiply-adds over taps (kernel row, kernel column)
/// then input channels, from +0, taps in the padding skipped (they would add a product of 0, which leaves the
/// sum unchanged: a sum started at +0 is never −0).
private func referenceFusedConv(_ x: [Float], _ g: WindowCase, weights: [Float]) -> [Float] {
    let (oh, ow, c, k) = (g.outHeight, g.outWidth, g.channels, g.kernel)
    var y = [Float](repeating: 0, count: oh * ow * g.out)
    for oy in 0..<oh {
        for ox in 0..<ow {
            for o in 0..<g.out {
                var acc: Float = 0
                for a in 0..<k {
                    let iy = oy * g.stride - g.pad + a
                    if iy < 0 || iy >= g.height { continue }
                    for b in 0..<k {
                        let ix = ox * g.stride - g.pad + b
                        if ix < 0 || ix >= g.width { continue }
                        let xp = (iy * g.width + ix) * c, wp = ((o * k + a) * k + b) * c
                        for ch in 0..<c { acc = acc.addingProduct(x[xp + ch], weights[wp + ch]) }
                    }
                }
                y[(oy * ow + ox) * g.out + o] = acc
            }
        }
    }
    return y
}

extension EveryPath {
    @Test("CK_STEP_MAXPOOL_F32 gives ck_maxpool2d_forward_f32's floats and their signs, bit for bit",
          arguments: maxPoolCases)
    func maxPoolF32Step(_ g: WindowCase) throws {
        var rng = SeededGenerator(seed: UInt64(g.height * 131 + g.channels * 7 + g.kernel))
        let constants = Constants()
        let images = 3, size = g.height * g.width * g.channels
        let input = floatsWithNaN(images * size, &rng)
        var expected: [Float] = []
        for n in 0..<images {
            expected += referencePool(Array(input[(n * size)..<((n + 1) * size)]), g, max: true)
        }
        // The training kernel on the whole batch gives the same bits as the naive definition.
        var shape = windowShape(g)
        shape.batch = Int64(images)
        var training = [Float](repeating: 0, count: expected.count)
        #expect(ck_maxpool2d_forward_f32(input, &shape, &training, nil) == CK_OK)
        expectEqualElements(training.map(\.bitPattern), expected.map(\.bitPattern), "\(g): training kernel")
        try expectStepOutputs(
            make: { makeStep(CK_STEP_MAXPOOL_F32, windowShape(g), input: 0, output: $0, bits: $1) },
            constants: constants, outHeight: g.outHeight, outWidth: g.outWidth, outChannels: g.channels,
            input: input, images: images, expected: expected, "max-pool \(g)")
    }

    @Test("CK_STEP_AVGPOOL_F32 gives ck_avgpool2d_forward_f32's floats and their signs, bit for bit",
          arguments: avgPoolCases)
    func avgPoolF32Step(_ g: WindowCase) throws {
        var rng = SeededGenerator(seed: UInt64(g.height * 137 + g.channels * 11 + g.kernel))
        let constants = Constants()
        let images = 3, size = g.height * g.width * g.channels
        let input = randomFloats(images * size, &rng)
        var expected: [Float] = []
        for n in 0..<images {
            expected += referencePool(Array(input[(n * size)..<((n + 1) * size)]), g, max: false)
        }
        var shape = windowShape(g)
        shape.batch = Int64(images)
        var training = [Float](repeating: 0, count: expected.count)
        #expect(ck_avgpool2d_forward_f32(input, &shape, &training) == CK_OK)
        expectEqualElements(training.map(\.bitPattern), expected.map(\.bitPattern), "\(g): training kernel")
        try expectStepOutputs(
            make: { makeStep(CK_STEP_AVGPOOL_F32, windowShape(g), input: 0, output: $0, bits: $1) },
            constants: constants, outHeight: g.outHeight, outWidth: g.outWidth, outChannels: g.channels,
            input: input, images: images, expected: expected, "average pool \(g)")
    }

    @Test("CK_STEP_AFFINE: every combination of prescale, scale, bias, residual and the two ReLUs, bit for bit")
    func affineStep() throws {
        let constants = Constants()
        for (h, w, c) in [(7, 9, 70), (3, 1, 130)] {
            var rng = SeededGenerator(seed: UInt64(h * 1000 + c))
            let images = 2, size = h * w * c
            let input = floatsWithNaN(images * size, &rng)
            // Buffer 1, the residual: x + b0 (a step before the one under test).
            let b0 = (0..<c).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
            var residualStep = makeStep(CK_STEP_AFFINE, convShape(h, w, c), input: 0, output: 1)
            residualStep.bias = constants.pointer(b0)
            let residual = input.indices.map { input[$0] + b0[$0 % c] }
            // Prescales and scales of both signs and some zeros, biases on the scale of the values.
            let pre = (0..<c).map { o -> Float in o % 7 == 3 ? 0 : Float.random(in: -2...2, using: &rng) }
            let scale = (0..<c).map { o -> Float in o % 5 == 4 ? 0 : Float.random(in: -1.5...1.5, using: &rng) }
            let bias = (0..<c).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
            for parts in 0..<16 {
                for flags in 0..<4 {
                    let t = TransformParts(
                        pre: parts & 1 != 0 ? pre : nil, scale: parts & 2 != 0 ? scale : nil,
                        bias: parts & 4 != 0 ? bias : nil, reluBefore: flags & 1 != 0, reluAfter: flags & 2 != 0)
                    let withResidual = parts & 8 != 0
                    let expected = t.apply(input, channels: c, residual: withResidual ? residual : nil)
                    try expectStepOutputs(
                        prefix: [residualStep], firstFree: 2,
                        make: { output, bits in
                            var st = makeStep(
                                CK_STEP_AFFINE, convShape(h, w, c), input: 0, residual: withResidual ? 1 : -1,
                                output: output, bits: bits)
                            t.set(&st, constants)
                            return st
                        },
                        constants: constants, outHeight: h, outWidth: w, outChannels: c, input: input, images: images,
                        expected: expected, "affine \(h)×\(w)×\(c), parts \(parts), flags \(flags)")
                }
            }
        }
    }

    @Test("ck_conv2d_forward_f32 gives the same floats for any batch, thread count and path: its definition",
          arguments: convManyCases)
    func convForwardIsDeterministic(_ g: WindowCase) throws {
        var rng = SeededGenerator(seed: UInt64(g.channels * 31 + g.out))
        let images = 3, size = g.height * g.width * g.channels, outSize = g.outHeight * g.outWidth * g.out
        let input = randomFloats(images * size, &rng)
        let weights = randomFloats(g.out * g.kernel * g.kernel * g.channels, &rng)
        // The naive definition for the smaller layers (the large one costs seconds unoptimised).
        var expected: [Float]? = nil
        if g.outHeight * g.outWidth * g.out * g.kernel * g.kernel * g.channels < 8_000_000 {
            expected = (0..<images).flatMap {
                referenceFusedConv(Array(input[($0 * size)..<(($0 + 1) * size)]), g, weights: weights)
            }
        }
        var first: [Float]? = nil
        try forEachConfiguration { configuration in
            let batch = trainingConv(input, images: images, g, weights: weights)
            let want = expected ?? first ?? batch
            first = first ?? batch
            expectSameBits(batch, want, "\(g), batch of \(images), \(configuration)")
            for n in 0..<images {
                let one = trainingConv(Array(input[(n * size)..<((n + 1) * size)]), images: 1, g, weights: weights)
                expectSameBits(one, Array(want[(n * outSize)..<((n + 1) * outSize)]), "\(g), image \(n) alone, \(configuration)")
            }
        }
    }

    @Test("CK_STEP_CONV_F32 of more than 4 input channels gives ck_conv2d_forward_f32's floats, then the transform",
          arguments: convManyCases)
    func convF32ManyChannelsStep(_ g: WindowCase) throws {
        var rng = SeededGenerator(seed: UInt64(g.channels * 37 + g.out * 3 + g.kernel))
        let constants = Constants()
        let images = 3, size = g.height * g.width * g.channels
        let input = randomFloats(images * size, &rng)
        let weights = randomFloats(g.out * g.kernel * g.kernel * g.channels, &rng)
        let scale = (0..<g.out).map { o -> Float in o % 5 == 4 ? 0 : Float.random(in: -1.5...1.5, using: &rng) }
        let bias = (0..<g.out).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
        let pre = (0..<g.out).map { _ in Float.random(in: 0.5...2, using: &rng) }
        // The first case adds a residual, buffer 1: a 1×1 convolution of the same input (also by rows).
        let withResidual = g.kernel == 3 && g.stride == 1 && g.channels == 70
        let one = WindowCase(height: g.height, width: g.width, channels: g.channels, kernel: 1, stride: 1, pad: 0,
                             out: g.out)
        let residualWeights = randomFloats(g.out * g.channels, &rng)
        var prefix: [ck_step] = []
        var residual: [Float]? = nil
        if withResidual {
            var st = makeStep(CK_STEP_CONV_F32, windowShape(one), out: g.out, input: 0, output: 1)
            st.weights = constants.pointer(residualWeights)
            prefix.append(st)
            residual = trainingConv(input, images: images, one, weights: residualWeights)
        }
        let variants = [
            TransformParts(pre: nil, scale: scale, bias: bias, reluBefore: true, reluAfter: false),
            TransformParts(pre: pre, scale: scale, bias: bias, reluBefore: true, reluAfter: true),
            TransformParts(pre: nil, scale: nil, bias: bias, reluBefore: false, reluAfter: true),
            TransformParts(pre: nil, scale: nil, bias: nil, reluBefore: false, reluAfter: false),
        ]
        let conv = trainingConv(input, images: images, g, weights: weights)
        // The large layer (there for its rows split among threads) with two of the transforms: its checks are slow.
        let large = g.outHeight * g.outWidth * g.out > 20_000
        for (index, t) in variants.enumerated() where !large || index < 2 {
            let expected = t.apply(conv, channels: g.out, residual: residual)
            try expectStepOutputs(
                prefix: prefix, firstFree: withResidual ? 2 : 1,
                make: { output, bits in
                    var st = makeStep(
                        CK_STEP_CONV_F32, windowShape(g), out: g.out, input: 0, residual: withResidual ? 1 : -1,
                        output: output, bits: bits)
                    st.weights = constants.pointer(weights)
                    t.set(&st, constants)
                    return st
                },
                constants: constants, outHeight: g.outHeight, outWidth: g.outWidth, outChannels: g.out, input: input,
                images: images, expected: expected, "conv \(g), transform \(index)")
        }
    }

    /// ck_conv2d_direct_f32 adds each product, rounded, to a sum from +0 in (kernel row, column, channel) order.
    @Test("ck_conv2d_direct_f32 gives its definition's floats on every path and thread count, any number of outputs",
          arguments: directStemCases)
    func directConvMatchesDefinition(_ g: WindowCase) throws {
        var rng = SeededGenerator(seed: UInt64(g.channels * 43 + g.out * 5 + g.stride))
        let images = 3, size = g.height * g.width * g.channels, outSize = g.outHeight * g.outWidth * g.out
        let input = randomFloats(images * size, &rng)
        let weights = randomFloats(g.out * g.kernel * g.kernel * g.channels, &rng)
        var expected = [Float](repeating: 0, count: images * outSize)
        let (k, c) = (g.kernel, g.channels)
        for n in 0..<images {
            for oy in 0..<g.outHeight {
                for ox in 0..<g.outWidth {
                    for o in 0..<g.out {
                        var acc: Float = 0
                        for a in 0..<k {
                            let iy = oy * g.stride - g.pad + a
                            if iy < 0 || iy >= g.height { continue }
                            for b in 0..<k {
                                let ix = ox * g.stride - g.pad + b
                                if ix < 0 || ix >= g.width { continue }
                                for ch in 0..<c {
                                    let product = input[n * size + (iy * g.width + ix) * c + ch]
                                        * weights[((o * k + a) * k + b) * c + ch]
                                    acc += product
                                }
                            }
                        }
                        expected[n * outSize + (oy * g.outWidth + ox) * g.out + o] = acc
                    }
                }
            }
        }
        var shape = windowShape(g)
        shape.batch = Int64(images)
        try forEachConfiguration { configuration in
            var got = [Float](repeating: .nan, count: images * outSize)
            #expect(ck_conv2d_direct_f32(input, &shape, weights, Int64(g.out), &got) == CK_OK)
            expectSameBits(got, expected, "direct conv \(g), \(configuration)")
        }
    }

    @Test("CK_STEP_CONV_F32 of at most 4 input channels: ck_conv2d_direct_f32's floats, then the transform with a prescale",
          arguments: [
              WindowCase(height: 11, width: 13, channels: 3, kernel: 3, stride: 1, pad: 1, out: 16),
              WindowCase(height: 12, width: 17, channels: 2, kernel: 5, stride: 2, pad: 2, out: 40),
              WindowCase(height: 9, width: 21, channels: 4, kernel: 3, stride: 1, pad: 1, out: 70),
              WindowCase(height: 10, width: 19, channels: 3, kernel: 3, stride: 1, pad: 1, out: 128),
              WindowCase(height: 9, width: 14, channels: 3, kernel: 3, stride: 2, pad: 1, out: 80),
              WindowCase(height: 30, width: 34, channels: 3, kernel: 7, stride: 2, pad: 3, out: 64),
          ])
    func convF32FewChannelsStep(_ g: WindowCase) throws {
        var rng = SeededGenerator(seed: UInt64(g.channels * 41 + g.out))
        let constants = Constants()
        let images = 3, size = g.height * g.width * g.channels
        let input = randomFloats(images * size, &rng)
        let weights = randomFloats(g.out * g.kernel * g.kernel * g.channels, &rng)
        var shape = windowShape(g)
        shape.batch = Int64(images)
        var conv = [Float](repeating: .nan, count: images * g.outHeight * g.outWidth * g.out)
        #expect(ck_conv2d_direct_f32(input, &shape, weights, Int64(g.out), &conv) == CK_OK)
        // Scale and bias present: this path adds a missing one as 1 and +0, which the skipping reference would not.
        let t = TransformParts(
            pre: (0..<g.out).map { o in o % 4 == 1 ? -0.5 : Float.random(in: 0.5...2, using: &rng) },
            scale: (0..<g.out).map { _ in Float.random(in: -1.5...1.5, using: &rng) },
            bias: (0..<g.out).map { _ in Float.random(in: -0.5...0.5, using: &rng) }, reluBefore: true,
            reluAfter: false)
        try expectStepOutputs(
            make: { output, bits in
                var st = makeStep(CK_STEP_CONV_F32, windowShape(g), out: g.out, input: 0, output: output, bits: bits)
                st.weights = constants.pointer(weights)
                t.set(&st, constants)
                return st
            },
            constants: constants, outHeight: g.outHeight, outWidth: g.outWidth, outChannels: g.out, input: input,
            images: images, expected: t.apply(conv, channels: g.out, residual: nil), "few-channel conv \(g)")
    }

    @Test("CK_STEP_GLOBAL_AVGPOOL gives ck_global_avgpool_forward_f32's floats, then ·scale + bias")
    func globalAvgPoolStep() throws {
        let constants = Constants()
        for (h, w, c) in [(7, 9, 70), (3, 5, 300), (1, 1, 3)] {
            var rng = SeededGenerator(seed: UInt64(h * 100 + c))
            let images = 3, pixels = h * w
            let input = randomFloats(images * pixels * c, &rng)
            var pooled = [Float](repeating: .nan, count: images * c)
            #expect(ck_global_avgpool_forward_f32(input, Int64(images), Int64(pixels), Int64(c), &pooled) == CK_OK)
            // Its definition: a sum in double, one rounding.
            let definition = (0..<(images * c)).map { i -> Float in
                let (n, k) = (i / c, i % c)
                var acc = 0.0
                for p in 0..<pixels { acc += Double(input[(n * pixels + p) * c + k]) }
                return Float(acc / Double(pixels))
            }
            expectEqualElements(pooled.map(\.bitPattern), definition.map(\.bitPattern), "\(h)×\(w)×\(c): definition")
            let scale = (0..<c).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
            let bias = (0..<c).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
            var st = makeStep(CK_STEP_GLOBAL_AVGPOOL, convShape(h, w, c), input: 0, output: 1)
            try expectProgram([st], input: input, images: images, expected: pooled, "global pool \(h)×\(w)×\(c)")
            st.scale = constants.pointer(scale)
            st.bias = constants.pointer(bias)
            let affine = pooled.indices.map { pooled[$0] * scale[$0 % c] + bias[$0 % c] }
            try expectProgram(
                [st], input: input, images: images, expected: affine, "global pool \(h)×\(w)×\(c), scale and bias")
        }
    }

    @Test("CK_STEP_LINEAR reads a whole [h, w, c] buffer as its NHWC flattening")
    func linearOverImageBuffer() throws {
        let constants = Constants()
        var rng = SeededGenerator(seed: 5)
        let (h, w, c, out) = (3, 5, 7, 10)
        let n = h * w * c, images = 3
        let input = randomFloats(images * n, &rng)
        let weights = randomFloats(out * n, &rng), bias = randomFloats(out, &rng)
        let scale = (0..<c).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
        // An affine step makes a 3×5×7 buffer; the linear layer reads its 105 floats.
        var affine = makeStep(CK_STEP_AFFINE, convShape(h, w, c), input: 0, output: 1)
        affine.scale = constants.pointer(scale)
        var linear = makeStep(CK_STEP_LINEAR, convShape(1, 1, n), out: out, input: 1, output: 2)
        linear.weights = constants.pointer(weights)
        linear.bias = constants.pointer(bias)
        var expected: [Float] = []
        for image in 0..<images {
            let x = (0..<n).map { input[image * n + $0] * scale[$0 % c] }
            for f in 0..<out {
                var sum: Float = 0
                for i in 0..<n { sum += weights[f * n + i] * x[i] }
                expected.append(sum + bias[f])
            }
        }
        try expectProgram([affine, linear], input: input, images: images, expected: expected, "linear over 3×5×7")
        // A channel count that is not the buffer's size is refused.
        var wrong = linear
        wrong.shape = convShape(1, 1, n - 1)
        var program: OpaquePointer?
        var failed: Int32 = -2
        #expect(ck_program_create_checked([affine, wrong], 2, &program, &failed) == CK_ERR_SHAPE_MISMATCH)
        #expect(failed == 1)
        #expect(program == nil)
    }

    @Test("CK_STEP_LINEAR of many outputs (several registers, several groups of 64): each output's sum in order")
    func linearManyOutputs() throws {
        let constants = Constants()
        for (n, out, withBias) in [(300, 70, true), (64, 130, false), (2048, 10, true), (5, 1, true), (512, 1000, true)] {
            var rng = SeededGenerator(seed: UInt64(n * 7 + out))
            let images = 3
            let input = randomFloats(images * n, &rng)
            let weights = randomFloats(out * n, &rng), bias = randomFloats(out, &rng)
            var linear = makeStep(CK_STEP_LINEAR, convShape(1, 1, n), out: out, input: 0, output: 1)
            linear.weights = constants.pointer(weights)
            if withBias { linear.bias = constants.pointer(bias) }
            var expected: [Float] = []
            for image in 0..<images {
                for f in 0..<out {
                    var sum: Float = 0
                    for i in 0..<n { sum += weights[f * n + i] * input[image * n + i] }
                    expected.append(sum + (withBias ? bias[f] : 0))
                }
            }
            try expectProgram([linear], input: input, images: images, expected: expected, "linear \(n) → \(out)")
        }
    }

    @Test("a chained program (sign bits → bconv → max-pool → affine → linear) equals a naive reference bit for bit")
    func chainedProgram() throws {
        let constants = Constants()
        var rng = SeededGenerator(seed: 77)
        let (h, w, c0, c1, classes) = (9, 11, 6, 70, 10)
        let images = 3, size = h * w * c0
        let input = randomFloats(images * size, &rng)
        // 0 → bits 1 (signs of the input) → bconv 3×3 pad 1 → floats 2 → max-pool 3×3/2 pad 1 → floats 3
        // → batch norm and ReLU → floats 4 → linear over all 5×6×70 → 5.
        var steps = [makeStep(CK_STEP_AFFINE, convShape(h, w, c0), input: 0, bits: 1)]
        let signs = randomSigns(c1 * 9 * c0, &rng)
        var weights: OpaquePointer?
        #expect(ck_bconv_weights_create_from_bits(
            packRows(signs, rows: c1 * 9, columns: c0), Int64(c1), Int64(c0), 3, 3, &weights) == CK_OK)
        constants.weights.append(weights)
        let pre = (0..<c1).map { _ in Float.random(in: 0.01...0.1, using: &rng) }
        let scale = (0..<c1).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
        let bias = (0..<c1).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
        var bconv = makeStep(CK_STEP_BCONV, convShape(h, w, c0, kernel: 3, stride: 1, pad: 1), out: c1, input: 1,
                             output: 2, flags: Int32(CK_RELU_BEFORE))
        bconv.binary_weights = weights
        bconv.prescale = constants.pointer(pre)
        bconv.scale = constants.pointer(scale)
        bconv.bias = constants.pointer(bias)
        steps.append(bconv)
        let pool = WindowCase(height: h, width: w, channels: c1, kernel: 3, stride: 2, pad: 1)
        steps.append(makeStep(CK_STEP_MAXPOOL_F32, windowShape(pool), input: 2, output: 3))
        let bnScale = (0..<c1).map { _ in Float.random(in: -1.5...1.5, using: &rng) }
        let bnBias = (0..<c1).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
        let bn = TransformParts(pre: nil, scale: bnScale, bias: bnBias, reluBefore: false, reluAfter: true)
        var affine = makeStep(CK_STEP_AFFINE, convShape(pool.outHeight, pool.outWidth, c1), input: 3, output: 4)
        bn.set(&affine, constants)
        steps.append(affine)
        let features = pool.outHeight * pool.outWidth * c1
        let linearWeights = randomFloats(classes * features, &rng), linearBias = randomFloats(classes, &rng)
        var linear = makeStep(CK_STEP_LINEAR, convShape(1, 1, features), out: classes, input: 4, output: 5)
        linear.weights = constants.pointer(linearWeights)
        linear.bias = constants.pointer(linearBias)
        steps.append(linear)

        var expected: [Float] = []
        for n in 0..<images {
            let x = Image(height: h, width: w, channels: c0, values: Array(input[(n * size)..<((n + 1) * size)]))
            let y = referenceBConv(
                x, signs: signs, out: c1, kernel: 3, stride: 1, pad: 1, pre: pre, scale: scale, bias: bias,
                residual: nil, reluBefore: true, reluAfter: false)
            let pooled = referencePool(y.values, pool, max: true)
            let normed = bn.apply(pooled, channels: c1, residual: nil)
            for f in 0..<classes {
                var sum: Float = 0
                for i in 0..<features { sum += linearWeights[f * features + i] * normed[i] }
                expected.append(sum + linearBias[f])
            }
        }
        try expectProgram(steps, input: input, images: images, expected: expected, "chained program")
    }
}

/// The transform as BCONV and CONV_F32 of few channels apply it: the prescale skipped when absent, every other part
/// applied, a missing scale, bias or residual as 1, +0 and +0 (so a −0 becomes +0, where the skipping reference keeps
/// it).
private func referenceNeutralTransform(
    _ x: Float, pre: Float?, scale: Float?, bias: Float?, residual: Float?, reluBefore: Bool, reluAfter: Bool
) -> Float {
    var v = x
    if let pre { v = v * pre }
    if reluBefore && v < 0 { v = 0 }
    v = v * (scale ?? 1)
    v = v + (bias ?? 0)
    v = v + (residual ?? 0)
    if reluAfter && v < 0 { v = 0 }
    return v
}

/// A step that applies the transform with neutral values: BCONV or CONV_F32 of at most 4 input channels.
struct NeutralTransformCase: CustomStringConvertible, Sendable {
    let binary: Bool
    let window: WindowCase
    var description: String { (binary ? "bconv " : "few-channel conv ") + window.description }
}

/// A binary convolution fused on AVX-512 (3×3 patches of 16 channels), one whose patches are too long to fuse
/// (141 words: popcounts, then the transform of a dot-product tile), and a float stem of two groups of outputs (the
/// second partial); each with outputs across two 64-channel blocks.
let neutralTransformCases = [
    NeutralTransformCase(
        binary: true, window: WindowCase(height: 7, width: 9, channels: 16, kernel: 3, stride: 1, pad: 1, out: 70)),
    NeutralTransformCase(
        binary: true, window: WindowCase(height: 3, width: 4, channels: 1000, kernel: 3, stride: 1, pad: 1, out: 70)),
    NeutralTransformCase(
        binary: false, window: WindowCase(height: 9, width: 14, channels: 3, kernel: 3, stride: 2, pad: 1, out: 80)),
]

extension EveryPath {
    @Test("BCONV and CONV_F32 of few channels: every combination of prescale, scale, bias, residual and the two ReLUs, bit for bit",
          arguments: neutralTransformCases)
    func neutralTransformSteps(_ n: NeutralTransformCase) throws {
        let g = n.window
        var rng = SeededGenerator(seed: UInt64(g.channels * 53 + g.out * 7 + (n.binary ? 1 : 0)))
        let constants = Constants()
        let images = 2, size = g.height * g.width * g.channels
        let outSize = g.outHeight * g.outWidth * g.out
        let input = floatsWithNaN(images * size, &rng)
        // Buffer 1: the signs of the input (what BCONV reads). Buffer 2, the residual: a 1×1 convolution of the input
        // with the step's stride, so of the output's shape.
        var prefix = [makeStep(CK_STEP_AFFINE, convShape(g.height, g.width, g.channels), input: 0, bits: 1)]
        let one = WindowCase(height: g.height, width: g.width, channels: g.channels, kernel: 1, stride: g.stride, pad: 0,
                             out: g.out)
        #expect(one.outHeight == g.outHeight && one.outWidth == g.outWidth)
        let residualWeights = randomFloats(g.out * g.channels, &rng)
        var residualStep = makeStep(CK_STEP_CONV_F32, windowShape(one), out: g.out, input: 0, output: 2)
        residualStep.weights = constants.pointer(residualWeights)
        prefix.append(residualStep)
        var batchShape = windowShape(one)
        batchShape.batch = Int64(images)
        var residual = [Float](repeating: .nan, count: images * outSize)
        if g.channels <= Int(CK_CONV_F32_DIRECT_CHANNELS) {
            #expect(ck_conv2d_direct_f32(input, &batchShape, residualWeights, Int64(g.out), &residual) == CK_OK)
        } else {
            residual = trainingConv(input, images: images, one, weights: residualWeights)
        }

        // x: the step's value before the transform (the exact integer of a binary convolution of the signs, or the
        // float convolution), and the step without its transform.
        let taps = g.kernel * g.kernel * g.channels
        var x = [Float](repeating: 0, count: images * outSize)
        var step: ck_step
        if n.binary {
            let signs = randomSigns(g.out * taps, &rng)
            var weights: OpaquePointer?
            #expect(ck_bconv_weights_create_from_bits(
                packRows(signs, rows: g.out * g.kernel * g.kernel, columns: g.channels), Int64(g.out),
                Int64(g.channels), Int64(g.kernel), Int64(g.kernel), &weights) == CK_OK)
            constants.weights.append(weights)
            step = makeStep(CK_STEP_BCONV, windowShape(g), out: g.out, input: 1)
            step.binary_weights = weights
            input.withUnsafeBufferPointer { input in
                signs.withUnsafeBufferPointer { w in
                    for image in 0..<images {
                        for oy in 0..<g.outHeight {
                            for ox in 0..<g.outWidth {
                                for o in 0..<g.out {
                                    var acc = 0
                                    for a in 0..<g.kernel {
                                        let iy = oy * g.stride - g.pad + a
                                        if iy < 0 || iy >= g.height { continue }
                                        for b in 0..<g.kernel {
                                            let ix = ox * g.stride - g.pad + b
                                            if ix < 0 || ix >= g.width { continue }
                                            let xp = image * size + (iy * g.width + ix) * g.channels
                                            let wp = ((o * g.kernel + a) * g.kernel + b) * g.channels
                                            for c in 0..<g.channels {
                                                acc += (input[xp + c] < 0 ? -1 : 1) * Int(w[wp + c])
                                            }
                                        }
                                    }
                                    x[image * outSize + (oy * g.outWidth + ox) * g.out + o] = Float(acc)
                                }
                            }
                        }
                    }
                }
            }
        } else {
            let weights = randomFloats(g.out * taps, &rng)
            var shape = windowShape(g)
            shape.batch = Int64(images)
            #expect(ck_conv2d_direct_f32(input, &shape, weights, Int64(g.out), &x) == CK_OK)
            step = makeStep(CK_STEP_CONV_F32, windowShape(g), out: g.out, input: 0)
            step.weights = constants.pointer(weights)
        }

        // Prescales of both signs with zeros (a −0 from x = 0), scales of both signs with zeros, biases on the scale
        // of the transformed values.
        let magnitude = n.binary ? Float(taps).squareRoot() : 1
        let pre = (0..<g.out).map { o -> Float in o % 7 == 3 ? 0 : Float.random(in: -2...2, using: &rng) / magnitude }
        let scale = (0..<g.out).map { o -> Float in o % 5 == 4 ? 0 : Float.random(in: -1.5...1.5, using: &rng) }
        let bias = (0..<g.out).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
        for parts in 0..<16 {
            for flags in 0..<4 {
                let t = TransformParts(
                    pre: parts & 1 != 0 ? pre : nil, scale: parts & 2 != 0 ? scale : nil,
                    bias: parts & 4 != 0 ? bias : nil, reluBefore: flags & 1 != 0, reluAfter: flags & 2 != 0)
                let withResidual = parts & 8 != 0
                let expected = x.indices.map { i in
                    referenceNeutralTransform(
                        x[i], pre: t.pre?[i % g.out], scale: t.scale?[i % g.out], bias: t.bias?[i % g.out],
                        residual: withResidual ? residual[i] : nil, reluBefore: t.reluBefore, reluAfter: t.reluAfter)
                }
                try expectStepOutputs(
                    prefix: prefix, firstFree: 3,
                    make: { output, bits in
                        var st = step
                        st.residual = withResidual ? 2 : -1
                        st.output = Int32(output)
                        st.output_bits = Int32(bits)
                        t.set(&st, constants)
                        return st
                    },
                    constants: constants, outHeight: g.outHeight, outWidth: g.outWidth, outChannels: g.out,
                    input: input, images: images, expected: expected, "\(n), parts \(parts), flags \(flags)")
            }
        }
    }
}

/// Steps the engine must refuse at creation, with the status and the index of the step at fault.
@Test("invalid new steps are refused with a status, at the step at fault")
func invalidEngineSteps() {
    let constants = Constants()
    let image = convShape(7, 9, 70)
    let ok = makeStep(CK_STEP_AFFINE, image, input: 0, output: 1)
    var cases: [(String, [ck_step], ck_status)] = []
    func pool(_ kind: ck_step_kind, kernel: Int, stride: Int = 1, pad: Int = 0) -> ck_step {
        makeStep(kind, convShape(7, 9, 70, kernel: kernel, stride: stride, pad: pad), input: 1, output: 2)
    }
    cases.append(("max-pool kernel 0", [ok, pool(CK_STEP_MAXPOOL_F32, kernel: 0)], CK_ERR_INVALID_SIZE))
    cases.append(("average pool stride 0", [ok, pool(CK_STEP_AVGPOOL_F32, kernel: 2, stride: 0)], CK_ERR_INVALID_SIZE))
    cases.append(("average pool pad above kernel/2", [ok, pool(CK_STEP_AVGPOOL_F32, kernel: 3, pad: 2)],
                  CK_ERR_SHAPE_MISMATCH))
    cases.append(("max-pool window larger than the padded image", [ok, pool(CK_STEP_MAXPOOL_F32, kernel: 8, pad: 0)],
                  CK_ERR_SHAPE_MISMATCH))
    var batch2 = pool(CK_STEP_MAXPOOL_F32, kernel: 2)
    batch2.shape.batch = 2
    cases.append(("pool of batch 2", [ok, batch2], CK_ERR_INVALID_SIZE))
    let bitsOnly = makeStep(CK_STEP_AFFINE, image, input: 0, bits: 1)
    cases.append(("max-pool reading bits", [bitsOnly, pool(CK_STEP_MAXPOOL_F32, kernel: 2)], CK_ERR_SHAPE_MISMATCH))
    var withResidual = pool(CK_STEP_MAXPOOL_F32, kernel: 1)
    withResidual.residual = 1
    cases.append(("residual on a pool", [ok, withResidual], CK_ERR_SHAPE_MISMATCH))
    var withFlags = pool(CK_STEP_AVGPOOL_F32, kernel: 2)
    withFlags.flags = Int32(CK_RELU_AFTER)
    cases.append(("ReLU flag on a pool", [ok, withFlags], CK_ERR_SHAPE_MISMATCH))
    var unknownFlag = makeStep(CK_STEP_AFFINE, image, input: 1, output: 2)
    unknownFlag.flags = 4
    cases.append(("unknown flag", [ok, unknownFlag], CK_ERR_INVALID_SIZE))
    let smaller = makeStep(CK_STEP_AVGPOOL_F32, convShape(7, 9, 70, kernel: 2, stride: 2), input: 1, output: 2)
    cases.append(("affine residual of another shape",
                  [ok, smaller, makeStep(CK_STEP_AFFINE, image, input: 1, residual: 2, output: 3)],
                  CK_ERR_SHAPE_MISMATCH))
    cases.append(("affine in place", [ok, makeStep(CK_STEP_AFFINE, image, input: 1, output: 1)], CK_ERR_SHAPE_MISMATCH))
    cases.append(("affine writing nothing", [ok, makeStep(CK_STEP_AFFINE, image, input: 1)], CK_ERR_NULL_POINTER))
    cases.append(("affine of the wrong shape", [ok, makeStep(CK_STEP_AFFINE, convShape(9, 7, 70), input: 1, output: 2)],
                  CK_ERR_SHAPE_MISMATCH))
    cases.append(("affine writing buffer 0", [makeStep(CK_STEP_AFFINE, image, input: 0, output: 0)],
                  CK_ERR_SHAPE_MISMATCH))
    let huge = 1 << 30
    cases.append(("affine of 2⁹⁰ floats",
                  [makeStep(CK_STEP_AFFINE, convShape(huge, huge, huge), input: 0, output: 1)], CK_ERR_INVALID_SIZE))
    var global = makeStep(CK_STEP_GLOBAL_AVGPOOL, image, input: 1, output: 2)
    global.prescale = constants.pointer([Float](repeating: 1, count: 70))
    cases.append(("prescale on a global pool", [ok, global], CK_ERR_SHAPE_MISMATCH))
    var linearBits = makeStep(CK_STEP_LINEAR, convShape(1, 1, 7 * 9 * 70), out: 3, input: 1, output: 2, bits: 3)
    linearBits.weights = constants.pointer([Float](repeating: 1, count: 3 * 7 * 9 * 70))
    cases.append(("bits from a linear step", [ok, linearBits], CK_ERR_SHAPE_MISMATCH))
    var linearScale = makeStep(CK_STEP_LINEAR, convShape(1, 1, 7 * 9 * 70), out: 3, input: 1, output: 2)
    linearScale.weights = linearBits.weights
    linearScale.scale = global.prescale
    cases.append(("scale on a linear step", [ok, linearScale], CK_ERR_SHAPE_MISMATCH))
    var shortcutBits = makeStep(CK_STEP_SHORTCUT, convShape(7, 9, 70, stride: 2), out: 72, input: 1, output: 2, bits: 3)
    shortcutBits.out_channels = 72
    cases.append(("bits from a shortcut", [ok, shortcutBits], CK_ERR_SHAPE_MISMATCH))
    cases.append(("float output of a binary max-pool",
                  [bitsOnly,
                   makeStep(CK_STEP_BMAXPOOL, convShape(7, 9, 70, kernel: 2, stride: 2), input: 1, output: 2)],
                  CK_ERR_SHAPE_MISMATCH))
    cases.append(("binary max-pool pad above kernel/2",
                  [bitsOnly, makeStep(CK_STEP_BMAXPOOL, convShape(7, 9, 70, kernel: 2, stride: 2, pad: 2), input: 1,
                                      bits: 2), ok], CK_ERR_SHAPE_MISMATCH))
    cases.append(("conv without weights",
                  [ok, makeStep(CK_STEP_CONV_F32, convShape(7, 9, 70, kernel: 3, pad: 1), out: 8, input: 1, output: 2)],
                  CK_ERR_NULL_POINTER))
    cases.append(("unknown kind", [ok, makeStep(ck_step_kind(rawValue: 9), image, input: 1, output: 2)],
                  CK_ERR_INVALID_SIZE))
    for (name, steps, status) in cases {
        var program: OpaquePointer?
        var failed: Int32 = -2
        let got = ck_program_create_checked(steps, Int32(steps.count), &program, &failed)
        #expect(got == status, "\(name)")
        #expect(program == nil, "\(name)")
        // The last step is the one at fault in every case but the binary max-pool's padding (step 1 of 3).
        let culprit = name == "binary max-pool pad above kernel/2" ? 1 : steps.count - 1
        #expect(failed == Int32(culprit), "\(name): failed step \(failed)")
        ck_program_destroy(program)
    }
}
