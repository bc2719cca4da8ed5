/// SplitMix64: a tiny generator used to expand one 64-bit seed into well-mixed state words and to derive
/// independent seeds from (seed, epoch, position) tuples.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    /// The counter advanced by each draw.
    public private(set) var state: UInt64

    /// Starts the sequence at `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next value of the sequence.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// The SplitMix64 finaliser: a bijective avalanche of one word.
    @inlinable
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A seed derived from `seed` and a list of integers (epoch, stream, position...), so that every
    /// combination gets its own independent-looking stream and nothing depends on call order.
    public static func derive(_ seed: UInt64, _ parts: UInt64...) -> UInt64 {
        var h = mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        for part in parts {
            h = mix(h ^ mix(part &+ 0xD1B5_4A32_D192_ED03))
        }
        return h
    }
}

/// Xoshiro256**: the seeded generator of the data pipeline (shuffling and augmentation draws).
/// Its output is fully specified here, unlike the standard library's generator, so a run can be
/// reproduced on any machine and any Swift version.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable, Equatable {
    /// The four state words.
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    /// Seeds the four state words from SplitMix64(`seed`), as the algorithm's authors recommend;
    /// this never yields the forbidden all-zero state in practice.
    public init(seed: UInt64) {
        var expander = SplitMix64(seed: seed)
        state = (expander.next(), expander.next(), expander.next(), expander.next())
        if state == (0, 0, 0, 0) { state.0 = 1 }
    }

    /// The next value of the sequence.
    public mutating func next() -> UInt64 {
        let result = rotateLeft(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotateLeft(state.3, 45)
        return result
    }

    /// A uniform integer in 0..<`bound` (bound > 0), by Lemire's multiply-and-reject method. Written out
    /// here rather than using `Int.random(in:using:)` so the mapping from raw bits to draws is pinned.
    public mutating func next(below bound: UInt64) -> UInt64 {
        precondition(bound > 0, "next(below:) needs a positive bound")
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold {
                product = next().multipliedFullWidth(by: bound)
            }
        }
        return product.high
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.state == rhs.state }

    @inline(__always)
    private func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 &- k)) }
}
