/// How long and how often each kernel is timed.
///
/// A batch repeats one call until it lasts at least `minimumBatchSeconds`; the figure is the median time
/// per call over `batches` batches. The median (not the best) because the machine may be shared: it ignores
/// a batch that a neighbour slowed down without crediting the kernel with a lucky one.
public struct TimingPolicy: Sendable {
    /// Batches per kernel; the reported time is their median.
    public var batches: Int
    /// Each batch repeats the call until it has run at least this long.
    public var minimumBatchSeconds: Double

    /// Five batches of at least 0.1 s: about a second per kernel pair.
    public static let standard = TimingPolicy(batches: 5, minimumBatchSeconds: 0.1)
    /// Three batches of at least 0.02 s: a smoke run for CI, figures only indicative.
    public static let quick = TimingPolicy(batches: 3, minimumBatchSeconds: 0.02)

    var summary: String {
        "median time per call over \(batches) batches of at least \(minimumBatchSeconds) s each"
    }
}

/// Seconds since an arbitrary fixed point, from the monotonic clock.
func monotonicSeconds() -> Double {
    let components = origin.duration(to: ContinuousClock.now).components
    return Double(components.seconds) + Double(components.attoseconds) * 1e-18
}

private let origin = ContinuousClock.now

/// Runs `body` `repetitions` times and returns the elapsed seconds.
private func timeBatch(_ repetitions: Int, _ body: () throws -> Void) rethrows -> Double {
    let start = monotonicSeconds()
    for _ in 0..<repetitions { try body() }
    return monotonicSeconds() - start
}

/// After one warm-up call, the number of calls of `body` that lasts at least `seconds`.
private func calibrate(seconds: Double, _ body: () throws -> Void) rethrows -> Int {
    try body()
    var repetitions = 1
    while true {
        let elapsed = try timeBatch(repetitions, body)
        if elapsed >= seconds { return repetitions }
        // Aim 20 % past the target so the next try usually suffices, but at least double.
        let scaled = Double(repetitions) * seconds / max(elapsed, 1e-9) * 1.2
        repetitions = max(repetitions * 2, Int(min(scaled, 1e9)))
    }
}

/// The middle value (mean of the two middle ones for an even count).
private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// Median seconds per call of `binary` and of `float`.
///
/// Their batches alternate, so that when a neighbour loads the machine both sides of the ratio see it.
func measurePair(policy: TimingPolicy, binary: () throws -> Void, float: () throws -> Void) throws
    -> (binary: Double, float: Double)
{
    let binaryRepetitions = try calibrate(seconds: policy.minimumBatchSeconds, binary)
    let floatRepetitions = try calibrate(seconds: policy.minimumBatchSeconds, float)
    var binaryTimes: [Double] = []
    var floatTimes: [Double] = []
    for _ in 0..<policy.batches {
        binaryTimes.append(try timeBatch(binaryRepetitions, binary) / Double(binaryRepetitions))
        floatTimes.append(try timeBatch(floatRepetitions, float) / Double(floatRepetitions))
    }
    return (median(binaryTimes), median(floatTimes))
}
