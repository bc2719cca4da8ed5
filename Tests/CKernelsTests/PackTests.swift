import BNN
import CKernels
import Testing

/// The sign the header defines: −1 for values below zero, +1 otherwise (0 and −0.0 included).
func referenceSign(_ x: Float) -> Int8 { x < 0 ? -1 : 1 }

let packColumns = [1, 63, 64, 65, 127, 1000]

extension EveryPath {
    @Test("ck_pack_signs and ck_unpack_signs match the sign convention", arguments: packColumns)
    func packRowMajor(columns: Int) throws {
        for rows in [1, 3, 70] {
            var rng = SeededGenerator(seed: UInt64(rows * 10_000 + columns))
            let values = randomFloats(rows * columns, &rng)
            let signs = values.map(referenceSign)
            let expected = packRows(signs, rows: rows, columns: columns)
            try forEachConfiguration { configuration in
                let context = "rows \(rows), columns \(columns), \(configuration)"
                // Garbage in the output first: leftover bits must be written as zero, not merely left alone.
                var words = [UInt64](repeating: ~0, count: expected.count)
                #expect(ck_pack_signs(values, Int64(rows), Int64(columns), &words) == CK_OK)
                expectEqualElements(words, expected, "ck_pack_signs \(context)") { "word \($0)" }

                var unpacked = [Float](repeating: .nan, count: rows * columns)
                #expect(ck_unpack_signs(expected, Int64(rows), Int64(columns), &unpacked) == CK_OK)
                let expectedValues = signs.map(Float.init)
                expectEqualElements(unpacked, expectedValues, "ck_unpack_signs \(context)")

                let packed = try PackedBits(signsOf: values, rows: rows, columns: columns)
                expectEqualElements(packed.words, expected, "PackedBits(signsOf:) \(context)") { "word \($0)" }
                #expect(packed.wordsPerRow == (columns + 63) / 64)
                expectEqualElements(packed.unpacked(), expectedValues, "PackedBits.unpacked \(context)")
                let probe = (rows / 2, columns - 1)
                #expect(packed[probe.0, probe.1] == Float(signs[probe.0 * columns + probe.1]))
            }
        }
    }

    @Test("ck_pack_signs_nchw packs NCHW floats into NHWC rows", arguments: packColumns)
    func packNCHW(channels: Int) throws {
        for (n, h, w) in [(1, 1, 1), (2, 3, 5), (3, 7, 4)] {
            var rng = SeededGenerator(seed: UInt64(channels * 100 + n * 10 + h))
            let values = randomFloats(n * channels * h * w, &rng)
            // Reference: walk NHWC order and read each value at its NCHW offset.
            var nhwcSigns = [Int8](repeating: 0, count: values.count)
            for b in 0..<n {
                for y in 0..<h {
                    for x in 0..<w {
                        for c in 0..<channels {
                            nhwcSigns[((b * h + y) * w + x) * channels + c] =
                                referenceSign(values[((b * channels + c) * h + y) * w + x])
                        }
                    }
                }
            }
            let expected = packRows(nhwcSigns, rows: n * h * w, columns: channels)
            try forEachConfiguration { configuration in
                var words = [UInt64](repeating: ~0, count: expected.count)
                #expect(
                    ck_pack_signs_nchw(values, Int64(n), Int64(channels), Int64(h), Int64(w), &words) == CK_OK)
                expectEqualElements(words, expected, "ck_pack_signs_nchw n \(n) c \(channels) h \(h) w \(w), \(configuration)") {
                    "word \($0)"
                }
                let packed = try PackedBits(signsOfNCHW: values, n: n, c: channels, h: h, w: w)
                #expect(packed.rows == n * h * w && packed.columns == channels)
                expectEqualElements(packed.words, expected, "PackedBits(signsOfNCHW:) n \(n) c \(channels) h \(h) w \(w)")
            }
        }
    }
}

@Suite struct PackEdgeCases {
    @Test("zero, negative zero, infinities, denormals and extremes pack by the sign rule")
    func specialValues() throws {
        let values: [Float] = [
            0, -0.0, 1, -1, .infinity, -.infinity, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
            .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNormalMagnitude, -.leastNormalMagnitude,
        ]
        let packed = try PackedBits(signsOf: values, rows: 1, columns: values.count)
        // The negative values sit at the odd indices from 3 on; −0.0 at index 1 counts as +1.
        let expected: UInt64 = (1 << 3) | (1 << 5) | (1 << 7) | (1 << 9) | (1 << 11)
        #expect(packed.words == [expected])
        #expect(packed.unpacked() == [1, 1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1])
    }

    @Test("PackedBits(words:) rejects leftover bits and wrong counts, naming the argument")
    func wordsValidation() throws {
        #expect(throws: KernelError.self) { try PackedBits(words: [1 << 5], rows: 1, columns: 5) }
        do {
            _ = try PackedBits(words: [0, 1 << 63], rows: 2, columns: 63)
            Issue.record("a set leftover bit was accepted")
        } catch let error as KernelError {
            #expect(error.argument == "words")
            #expect(error.description.contains("row 1"))
        }
        do {
            _ = try PackedBits(words: [0, 0, 0], rows: 2, columns: 65)
            Issue.record("a wrong word count was accepted")
        } catch let error as KernelError {
            #expect(error.argument == "words")
            #expect(error.description.contains("3") && error.description.contains("4"))
        }
        // Column 63 of a 64-column row is a real bit, not a leftover.
        let full = try PackedBits(words: [1 << 63], rows: 1, columns: 64)
        #expect(full[0, 63] == -1)
    }

    @Test("withUnsafeMutableWords keeps leftover bits zero")
    func mutableWordsClearLeftovers() throws {
        var bits = try PackedBits(rows: 2, columns: 70)
        bits.withUnsafeMutableWords { words in
            for i in words.indices { words[i] = ~0 }
        }
        let lowSix: UInt64 = (1 << 6) - 1
        #expect(bits.words == [~0, lowSix, ~0, lowSix])
        #expect(bits.unpacked() == [Float](repeating: -1, count: 140))
    }
}
