import CKernels

/// A matrix product to benchmark: `m × k` times `(n × k)ᵀ`.
public struct GEMMShape: Sendable {
    public var name: String
    public var m: Int
    public var n: Int
    public var k: Int
}

/// A 3×3, stride 1, padding 1 convolution of a batch-1 `size × size × channels` NHWC input.
public struct ConvolutionLayer: Sendable {
    public var name: String
    public var size: Int
    public var channels: Int
    public var outChannels: Int
}

/// The kernel benchmark: binary kernels against the machine's popcount peak and against float kernels on
/// the same shapes, all in one run.
///
/// Every binary result is compared with the float computation of the same ±1 operands before it is timed
/// (exact: the sums are small integers), so a wrong kernel stops the benchmark instead of being measured.
public struct KernelBenchmark {
    /// 1024×1024×4608 (the square bar), then ResNet-18's 3×3 ImageNet layers at batch 1 as im2col GEMMs.
    public static let gemmShapes: [GEMMShape] = [GEMMShape(name: "1024x1024x4608", m: 1024, n: 1024, k: 4608)]
        + resNet18Layers.map {
            GEMMShape(name: "\($0.name) im2col", m: $0.size * $0.size, n: $0.outChannels, k: 9 * $0.channels)
        }

    /// ResNet-18's 3×3 convolutions at ImageNet resolution (one per stage; stride-1 form).
    public static let resNet18Layers: [ConvolutionLayer] = [
        ConvolutionLayer(name: "layer1 56x56x64->64", size: 56, channels: 64, outChannels: 64),
        ConvolutionLayer(name: "layer2 28x28x128->128", size: 28, channels: 128, outChannels: 128),
        ConvolutionLayer(name: "layer3 14x14x256->256", size: 14, channels: 256, outChannels: 256),
        ConvolutionLayer(name: "layer4 7x7x512->512", size: 7, channels: 512, outChannels: 512),
    ]

    /// Threads of the binary kernels and of OpenBLAS.
    public let threads: Int
    public let timing: TimingPolicy
    /// How long the popcount peak is measured (per repetition; the peak takes the best of three).
    public let peakSeconds: Double

    /// Sets the kernels' and OpenBLAS's thread counts to `threads` and loads OpenBLAS.
    public init(threads: Int, timing: TimingPolicy, peakSeconds: Double) throws {
        self.threads = threads
        self.timing = timing
        self.peakSeconds = peakSeconds
        try check(ck_set_num_threads(Int32(threads)), "ck_set_num_threads(\(threads))")
        try check(ck_blas_load(), "loading OpenBLAS (libopenblas0 provides it) for the float baseline")
        try check(ck_blas_set_num_threads(Int32(threads)), "ck_blas_set_num_threads(\(threads))")
    }

    /// The instruction-set path the binary kernels run on.
    public var isa: String { String(cString: ck_isa_name(ck_isa_active())) }

    /// The kernel family OpenBLAS runs.
    public var openBLASCore: String { String(cString: ck_blas_core()) }

    /// In-register XNOR + popcount + add throughput on all threads, in binary MAC/s.
    public func measurePeak(seconds: Double? = nil) throws -> Double {
        var peak = 0.0
        let seconds = seconds ?? peakSeconds
        try check(ck_popcount_peak(Int32(threads), seconds, &peak),
                  "ck_popcount_peak(threads: \(threads), seconds: \(seconds))")
        return peak
    }

    /// Binary GEMM (weights packed once, A packed beforehand) against OpenBLAS sgemm of the same size.
    public func measureGEMM(_ shape: GEMMShape, peak: Double) throws -> KernelBenchmarkReport.Entry {
        let (m, n, k) = (shape.m, shape.n, shape.k)
        var generator = SplitMix64(seed: UInt64(m * 1_000_003 + n * 1009 + k))
        let a = try SignMatrix(rows: m, cols: k, generator: &generator)
        let b = try SignMatrix(rows: n, cols: k, generator: &generator)
        var weights: OpaquePointer?
        try check(ck_bgemm_weights_create(b.bits.pointer, Int64(n), Int64(k), &weights),
                  "ck_bgemm_weights_create(n: \(n), k: \(k))")
        defer { ck_bgemm_weights_destroy(weights) }
        let binaryOut = AlignedBuffer<Int32>(count: m * n)
        let floatOut = AlignedBuffer<Float>(count: m * n)

        func binary() throws {
            try check(ck_bgemm_packed(a.bits.pointer, Int64(m), weights, binaryOut.pointer, Int64(n)),
                      "ck_bgemm_packed(m: \(m), n: \(n), k: \(k))")
        }
        func float() throws {
            try check(ck_sgemm(0, 1, Int64(m), Int64(n), Int64(k), 1, a.values.pointer, Int64(k),
                               b.values.pointer, Int64(k), 0, floatOut.pointer, Int64(n)),
                      "ck_sgemm(m: \(m), n: \(n), k: \(k))")
        }

        try binary()
        try float()
        try verify("bgemm \(shape.name)", binaryOut, floatOut)
        let seconds = try measurePair(policy: timing, binary: binary, float: float)
        return KernelBenchmarkReport.Entry(name: shape.name, m: m, n: n, k: k, binarySeconds: seconds.binary,
                                           floatSeconds: seconds.float, peakBinaryMACsPerSecond: peak)
    }

    /// Binary convolution from packed NHWC input, writing floats through a per-channel scale and bias (what a
    /// deployed layer with folded BatchNorm does), against float im2col + sgemm of the same layer.
    public func measureConvolution(_ layer: ConvolutionLayer, peak: Double) throws -> KernelBenchmarkReport.Entry {
        let (c, o) = (layer.channels, layer.outChannels)
        var shape = ck_conv_shape(batch: 1, height: Int64(layer.size), width: Int64(layer.size),
                                  channels: Int64(c), kernel_h: 3, kernel_w: 3, stride_h: 1, stride_w: 1,
                                  pad_h: 1, pad_w: 1)
        var outHeight: Int64 = 0
        var outWidth: Int64 = 0
        try check(ck_conv_output_size(&shape, &outHeight, &outWidth), "ck_conv_output_size(\(layer.name))")
        let pixels = Int(outHeight * outWidth)
        let patch = 9 * c

        var generator = SplitMix64(seed: UInt64(layer.size * 1_000_003 + c * 1009 + o))
        let input = try SignMatrix(rows: layer.size * layer.size, cols: c, generator: &generator)
        // Filters as [O][kh·kw·C] floats for sgemm; their bits per tap (OHWI, channels packed) for bconv.
        let filters = try SignMatrix(rows: o, cols: patch, packedRowLength: c, generator: &generator)
        var weights: OpaquePointer?
        try check(ck_bconv_weights_create_from_bits(filters.bits.pointer, Int64(o), Int64(c), 3, 3, &weights),
                  "ck_bconv_weights_create_from_bits(\(layer.name))")
        defer { ck_bconv_weights_destroy(weights) }

        let scale = AlignedBuffer<Float>(count: o)
        let bias = AlignedBuffer<Float>(count: o)
        for channel in 0..<o {
            scale[channel] = Float.random(in: 0.5...1.5, using: &generator)
            bias[channel] = Float.random(in: -1...1, using: &generator)
        }
        let binaryOut = AlignedBuffer<Float>(count: pixels * o)
        var transform = ck_output_transform(scale: scale.pointer, bias: bias.pointer, residual: nil, flags: 0,
                                            out_int: nil, out: binaryOut.pointer, out_bits: nil)
        let columns = AlignedBuffer<Float>(count: pixels * patch)
        let floatOut = AlignedBuffer<Float>(count: pixels * o)

        func binary() throws {
            try check(ck_bconv2d(input.bits.pointer, &shape, weights, &transform), "ck_bconv2d(\(layer.name))")
        }
        func float() throws {
            try check(ck_im2col_nhwc_f32(input.values.pointer, &shape, columns.pointer),
                      "ck_im2col_nhwc_f32(\(layer.name))")
            try check(ck_sgemm(0, 1, Int64(pixels), Int64(o), Int64(patch), 1, columns.pointer, Int64(patch),
                               filters.values.pointer, Int64(patch), 0, floatOut.pointer, Int64(o)),
                      "ck_sgemm(\(layer.name))")
        }

        // The exact integers are checked once; the timed call writes the transformed floats instead.
        let exact = AlignedBuffer<Int32>(count: pixels * o)
        var exactTransform = ck_output_transform(scale: nil, bias: nil, residual: nil, flags: 0,
                                                 out_int: exact.pointer, out: nil, out_bits: nil)
        try check(ck_bconv2d(input.bits.pointer, &shape, weights, &exactTransform),
                  "ck_bconv2d(\(layer.name), integer output)")
        try float()
        try verify("bconv \(layer.name)", exact, floatOut)

        let seconds = try measurePair(policy: timing, binary: binary, float: float)
        return KernelBenchmarkReport.Entry(name: layer.name, m: pixels, n: o, k: patch,
                                           binarySeconds: seconds.binary, floatSeconds: seconds.float,
                                           peakBinaryMACsPerSecond: peak)
    }

    /// Runs every measurement; `onEntry` sees each entry as soon as it is measured.
    public func run(onEntry: (KernelBenchmarkReport.Section, KernelBenchmarkReport.Entry) -> Void = { _, _ in }) throws
        -> KernelBenchmarkReport
    {
        let peak = try measurePeak()
        return try run(peak: peak, onEntry: onEntry)
    }

    /// Runs the kernel measurements against an already measured peak.
    public func run(peak: Double,
                    onEntry: (KernelBenchmarkReport.Section, KernelBenchmarkReport.Entry) -> Void = { _, _ in })
        throws -> KernelBenchmarkReport
    {
        // The machine is shared: a neighbour can slow the peak loop as much as a kernel. So the peak is measured
        // again, briefly, before every row, and each row is compared with the best peak seen so far in this run
        // (the machine's capability), never with a disturbed one.
        var peak = peak
        var gemm: [KernelBenchmarkReport.Entry] = []
        for shape in Self.gemmShapes {
            peak = max(peak, try measurePeak(seconds: peakSeconds / 5))
            gemm.append(try measureGEMM(shape, peak: peak))
            onEntry(.bgemm, gemm[gemm.count - 1])
        }
        var convolution: [KernelBenchmarkReport.Entry] = []
        for layer in Self.resNet18Layers {
            peak = max(peak, try measurePeak(seconds: peakSeconds / 5))
            convolution.append(try measureConvolution(layer, peak: peak))
            onEntry(.bconv, convolution[convolution.count - 1])
        }
        return KernelBenchmarkReport(isa: isa, threads: threads, openBLASCore: openBLASCore,
                                     peakBinaryMACsPerSecond: peak, timing: timingDescription,
                                     bgemm: gemm, bconv: convolution)
    }

    /// The method, in words, for the report.
    public var timingDescription: String {
        timing.summary + "; binary and float batches alternate; binary results checked against float first"
    }
}

/// Throws unless the binary kernel's integers equal the float kernel's results element by element.
private func verify(_ name: String, _ binary: AlignedBuffer<Int32>, _ float: AlignedBuffer<Float>) throws {
    for index in 0..<binary.count where Float(binary[index]) != float[index] {
        throw BenchmarkError.wrongResult(benchmark: name, index: index, expected: float[index], found: binary[index])
    }
}
