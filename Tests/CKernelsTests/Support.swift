import BNN
import CKernels
import Dispatch
import Testing

/// Reproducible random numbers (SplitMix64), so a failing case can be rerun exactly.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random floats in [-1, 1] with about 5 % exact 0 and 5 % −0.0, both of which must pack as +1.
func randomFloats(_ count: Int, _ rng: inout SeededGenerator) -> [Float] {
    (0..<count).map { _ in
        switch rng.next() % 20 {
        case 0: 0
        case 1: -0.0
        default: Float.random(in: -1...1, using: &rng)
        }
    }
}

/// Random ±1 values as Int8, the reference's view of a binary tensor.
func randomSigns(_ count: Int, _ rng: inout SeededGenerator) -> [Int8] {
    var result = [Int8](repeating: 1, count: count)
    var bits: UInt64 = 0
    for i in 0..<count {
        if i % 64 == 0 { bits = rng.next() }
        if (bits >> UInt64(i % 64)) & 1 == 1 { result[i] = -1 }
        // A stream of 64 independent bits per draw; no bias from a modulo.
    }
    return result
}

/// The test's own bit-packing, written from the header's convention (bit 1 = −1, bit j of word w is
/// element 64·w + j, leftover bits zero), so kernel inputs do not depend on the library's packer.
func packRows(_ signs: [Int8], rows: Int, columns: Int) -> [UInt64] {
    let words = (columns + 63) / 64
    var out = [UInt64](repeating: 0, count: rows * words)
    for r in 0..<rows {
        for c in 0..<columns where signs[r * columns + c] < 0 {
            out[r * words + c / 64] |= UInt64(1) << UInt64(c % 64)
        }
    }
    return out
}

/// PackedBits built with the test's own packing.
func packedBits(_ signs: [Int8], rows: Int, columns: Int) throws -> PackedBits {
    try PackedBits(words: packRows(signs, rows: rows, columns: columns), rows: rows, columns: columns)
}

/// Runs `body(i)` for i in 0..<count on both cores; for the slow naive references of large shapes.
/// `body` must write disjoint memory for different i.
func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
        // The workers only touch memory the caller set aside for them, so sharing the closure is safe.
        let shared = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: count) { shared.value($0) }
    }
}

/// A value handed to `parallelFor`'s workers, which use it without data races by construction.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// One kernel configuration: a path this CPU supports and a thread count.
struct KernelConfiguration: CustomStringConvertible {
    let path: KernelPath
    let threads: Int
    var description: String { "path \(path.name), \(threads) thread\(threads == 1 ? "" : "s")" }
}

/// Every supported path with 1 and 2 threads.
let everyConfiguration: [KernelConfiguration] = Kernels.supportedPaths.flatMap { path in
    [1, 2].map { KernelConfiguration(path: path, threads: $0) }
}

/// Runs `body` once per configuration with that path forced and that thread count set, then restores the
/// previous path (the best one unless BNN_ISA chose another) and thread count. The settings are global to
/// the process: `Kernels.withSettings` keeps other tests that hold it (training runs compared bit for bit)
/// from seeing them change.
func forEachConfiguration(_ body: (KernelConfiguration) throws -> Void) throws {
    for configuration in everyConfiguration {
        try Kernels.withSettings(path: configuration.path, threads: configuration.threads) {
            #expect(Kernels.isa == configuration.path)
            #expect(Kernels.threads == configuration.threads)
            try body(configuration)
        }
    }
}

/// Records one short issue when `got` differs from `expected` (how many elements differ, and the first
/// one, located by `locate`), instead of printing both arrays. Returns whether they are equal.
@discardableResult
func expectEqualElements<T: Equatable>(
    _ got: [T]?, _ expected: [T], _ context: @autoclosure () -> String,
    locate: (Int) -> String = { "index \($0)" }, sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    guard let got else {
        Issue.record("\(context()): no output", sourceLocation: sourceLocation)
        return false
    }
    guard got.count == expected.count else {
        Issue.record(
            "\(context()): \(got.count) elements, expected \(expected.count)", sourceLocation: sourceLocation)
        return false
    }
    guard let first = firstMismatch(got, expected) else { return true }
    Issue.record(
        """
        \(context()): \(mismatchCount(got, expected)) of \(expected.count) elements differ; first at \
        \(locate(first.index)): got \(first.got), expected \(first.expected)
        """, sourceLocation: sourceLocation)
    return false
}

/// Index and values of the first difference between two equal-length arrays, or nil.
func firstMismatch<T: Equatable>(_ got: [T], _ expected: [T]) -> (index: Int, got: T, expected: T)? {
    guard got.count == expected.count else { return nil }
    for i in got.indices where got[i] != expected[i] { return (i, got[i], expected[i]) }
    return nil
}

/// Number of differing elements (for failure messages).
func mismatchCount<T: Equatable>(_ got: [T], _ expected: [T]) -> Int {
    zip(got, expected).reduce(0) { $0 + ($1.0 == $1.1 ? 0 : 1) }
}

/// The kernels whose results depend on the process-wide path and thread settings run in this suite, one
/// test at a time, so that each configuration is really the one in force while it runs.
@Suite(.serialized) struct EveryPath {}
