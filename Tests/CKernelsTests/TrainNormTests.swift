import CKernels
import Testing

@Suite("Batch norm's input gradient through a ReLU")
struct BatchNormReLUBackwardTests {
    /// Values from a fixed generator, a third of them exactly 0 when `zeros` (ReLU inputs at the kink).
    static func values(_ count: Int, seed: UInt64, zeros: Bool = false) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let r = Float(state >> 40) / Float(1 << 24) * 4 - 2
            return zeros && (state >> 20) % 3 == 0 ? 0 : r
        }
    }

    // 37 rows × 19 channels: vector tails on every path, and more than one row block.
    @Test(
        "equals ck_batchnorm_backward_input_f32 then ck_relu_backward_f32, bit for bit",
        arguments: [(true, true), (true, false), (false, false)], [Float(0), 0.5])
    func matchesTwoKernels(mode: (training: Bool, withK: Bool), slope: Float) {
        let rows = 37, channels = 19, n = rows * channels
        let g = Self.values(n, seed: 1), pre = Self.values(n, seed: 2, zeros: true)
        let y = pre.map { max($0, 0) }
        let center = Self.values(channels, seed: 3), a = Self.values(channels, seed: 4)
        let b = Self.values(channels, seed: 5), k = Self.values(channels, seed: 6)
        let start = Self.values(n, seed: 7)
        for accumulate: Int32 in [0, 1] {
            var unfused = [Float](repeating: 0, count: n)
            var expected = start, fused = start
            let bnStatus = ck_batchnorm_backward_input_f32(
                g, mode.training ? y : nil, mode.training ? center : nil, a, mode.training ? b : nil,
                mode.withK ? k : nil, Int64(rows), Int64(channels), 0, &unfused)
            #expect(bnStatus == CK_OK)
            #expect(ck_relu_backward_f32(pre, unfused, Int64(n), slope, accumulate, &expected) == CK_OK)
            let status = ck_batchnorm_relu_backward_input_f32(
                g, mode.training ? y : nil, mode.training ? center : nil, a, mode.training ? b : nil,
                mode.withK ? k : nil, pre, slope, Int64(rows), Int64(channels), accumulate, &fused)
            #expect(status == CK_OK)
            #expect(fused.map(\.bitPattern) == expected.map(\.bitPattern), "accumulate \(accumulate)")
            // Not vacuous: the ReLU rule zeroed some entries and let others through.
            if accumulate == 0 { #expect(expected.contains(0) && expected.contains { $0 != 0 }) }
        }
    }

    @Test("rejects null pointers and sizes below 1")
    func badArguments() {
        let v = [Float](repeating: 1, count: 8)
        var dx = [Float](repeating: 0, count: 8)
        func call(
            g: [Float]? = v, y: [Float]? = v, center: [Float]? = v, a: [Float]? = v, b: [Float]? = v,
            pre: [Float]? = v, rows: Int64 = 2, channels: Int64 = 4, out: Bool = true
        ) -> ck_status {
            dx.withUnsafeMutableBufferPointer { buffer in
                ck_batchnorm_relu_backward_input_f32(
                    g, y, center, a, b, nil, pre, 0, rows, channels, 0, out ? buffer.baseAddress : nil)
            }
        }
        #expect(call() == CK_OK)
        #expect(call(g: nil) == CK_ERR_NULL_POINTER)
        #expect(call(a: nil) == CK_ERR_NULL_POINTER)
        #expect(call(pre: nil) == CK_ERR_NULL_POINTER)
        #expect(call(out: false) == CK_ERR_NULL_POINTER)
        // Training mode (b given) needs y and the center; evaluation mode (b nil) does not.
        #expect(call(y: nil) == CK_ERR_NULL_POINTER)
        #expect(call(center: nil) == CK_ERR_NULL_POINTER)
        #expect(call(y: nil, center: nil, b: nil) == CK_OK)
        #expect(call(rows: 0) == CK_ERR_INVALID_SIZE)
        #expect(call(channels: -1) == CK_ERR_INVALID_SIZE)
    }
}
