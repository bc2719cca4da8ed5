/// Upper limits on the counts that people and files give the library and the `bnn` commands, in one place.
///
/// Every count from outside goes through a range check before it reaches size arithmetic, so that a value such as
/// 9223372036854775807 is refused with a message instead of overflowing an Int (which traps) or asking the
/// allocator for terabytes (which aborts). The limits are far above any useful value; each says why it is where it
/// is.
public enum Limits {
    /// Images per batch, for training, evaluation and inference: 65,536 (2^16). CIFAR-10's training split holds
    /// 50,000 images, so a larger batch is never a full one; a batch this size is already 805 MB of float32 input
    /// before any layer runs; and positions and byte counts of a batch stay far from Int's range. Whether a batch
    /// also fits in memory is decided separately (`MemoryEstimate`).
    public static let batchSize = 65_536
    /// Kernel and OpenBLAS threads: 4,096, the C kernels' own limit (`ck_set_num_threads`).
    public static let threads = 4_096
    /// Timed or warm-up steps of a training benchmark: 100,000, hours of steps for the smallest network, beyond
    /// which a benchmark is a mistake rather than a measurement.
    public static let benchmarkSteps = 100_000
    /// Timed samples per row of an inference benchmark: 1,000, about 50 s of samples per row.
    public static let benchmarkSamples = 1_000

    /// The message for an integer option outside `range` (which names the limits), or nil when it is inside:
    /// "--batch-size must be ≥ 1, got -1." or "--batch-size must be ≤ 65536 (the limit), got 100000000."
    public static func violation(option: String, value: Int, range: ClosedRange<Int>) -> String? {
        if value < range.lowerBound { return "\(option) must be ≥ \(range.lowerBound), got \(value)." }
        if value > range.upperBound { return "\(option) must be ≤ \(range.upperBound) (the limit), got \(value)." }
        return nil
    }
}
