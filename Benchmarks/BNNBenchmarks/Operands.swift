import CKernels

/// A 64-byte aligned buffer of `count` elements, zero-filled, owned by the instance.
///
/// Kernels load whole vectors; aligned operands keep the figures free of split-load effects that a real
/// caller (whose buffers come from the same aligned allocator) would not see.
final class AlignedBuffer<Element: BitwiseCopyable> {
    let count: Int
    let pointer: UnsafeMutablePointer<Element>

    init(count: Int) {
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Element>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    subscript(index: Int) -> Element {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }
}

/// SplitMix64: a small seeded generator, so every run benchmarks the same operands.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A `rows × cols` matrix of random ±1 floats and the same values packed as sign bits.
///
/// Both forms hold the same numbers, so the float and binary kernels compute the same exact integers and
/// their outputs can be compared element by element.
struct SignMatrix {
    let rows: Int
    let cols: Int
    let values: AlignedBuffer<Float>
    let bits: AlignedBuffer<UInt64>

    /// Random values; the bits are packed in rows of `packedRowLength` values (by default `cols`), which
    /// must divide `cols` — convolution filters are packed per tap, not per whole filter.
    init(rows: Int, cols: Int, packedRowLength: Int? = nil, generator: inout SplitMix64) throws {
        let bitRow = packedRowLength ?? cols
        precondition(bitRow > 0 && cols % bitRow == 0, "packed row length must divide the row length")
        self.rows = rows
        self.cols = cols
        values = AlignedBuffer(count: rows * cols)
        var index = 0
        while index < rows * cols {
            var word = generator.next()
            for _ in 0..<min(64, rows * cols - index) {
                values[index] = word & 1 == 0 ? 1 : -1
                word >>= 1
                index += 1
            }
        }
        let bitRows = rows * cols / bitRow
        bits = AlignedBuffer(count: bitRows * Int(ck_words(Int64(bitRow))))
        try check(ck_pack_signs(values.pointer, Int64(bitRows), Int64(bitRow), bits.pointer),
                  "ck_pack_signs(rows: \(bitRows), cols: \(bitRow))")
    }
}
