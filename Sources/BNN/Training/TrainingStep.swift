import Synchronization

/// One optimizer step on one batch, shared by the trainer and the training benchmark so that the benchmark
/// measures exactly what `bnn train` runs: forward, cross-entropy, backward, optimizer update, indicators.
struct TrainingStep {
    /// What a step produced.
    struct Result {
        /// The batch's mean loss.
        var loss: Float
        /// Images of the batch classified correctly (top-1, training mode).
        var correct: Int
        /// Images in the batch.
        var images: Int
        /// The indicators after the update; nil without binary convolutions.
        var estimatingError: Double?
        var gradientStability: Double?
    }

    let model: Module
    let optimizer: any Optimizer
    /// Latent weights of the binary convolutions (what the indicators measure).
    let indicatorWeights: [Tensor]
    /// The power at which the estimating error is evaluated (the authors use o_end).
    let indicatorPower: Float

    /// This rank's part in a data-parallel step.
    struct Replica {
        /// Averages the gradients over the ranks during the backward pass.
        let averager: GradientAverager
        /// Images in the whole batch, over all ranks.
        let batchImages: Int
        /// Batch norm normalises over the whole batch (`BatchNormSynchronization`).
        let synchronizeBatchNorm: Bool
    }

    /// Runs the step. `checkLoss` sees the loss before anything is updated and may throw to stop the run with
    /// the model and optimizer untouched. `timing`, when given, receives the seconds of each phase.
    ///
    /// With `replica`, the batch is this rank's part: the loss and accuracy reported (and checked) are the whole
    /// batch's, summed over the ranks, and the gradients are averaged over the ranks before the update, so every
    /// rank applies the same update to the same weights.
    func run(
        _ batch: ImageBatch, timing: StepPhaseTimes? = nil, replica: Replica? = nil, checkLoss: (Float) throws -> Void
    ) throws -> Result {
        guard let replica, replica.synchronizeBatchNorm else {
            return try step(batch, timing: timing, replica: replica, checkLoss: checkLoss)
        }
        let synchronization = BatchNormSynchronization(
            collective: replica.averager.collective, share: Double(batch.count) / Double(replica.batchImages))
        return try BatchNormSynchronization.$current.withValue(synchronization) {
            try step(batch, timing: timing, replica: replica, checkLoss: checkLoss)
        }
    }

    private func step(
        _ batch: ImageBatch, timing: StepPhaseTimes?, replica: Replica?, checkLoss: (Float) throws -> Void
    ) throws -> Result {
        var clock = PhaseClock(timing)
        let input = try batch.tensor()
        clock.lap(\.data)

        let logits = try model(input)
        let loss = try crossEntropy(logits, labels: batch.labels)
        var lossValue = try loss.item()
        var correct = try topKCorrect(logits, labels: batch.labels, k: 1)
        var images = batch.count
        if let replica {
            let sums = try replica.averager.collective.sum(
                [Double(lossValue) * Double(batch.count), Double(correct)], what: "the step's loss")
            images = replica.batchImages
            lossValue = Float(sums[0] / Double(images))
            correct = Int(sums[1])
        }
        clock.lap(\.forward)
        try checkLoss(lossValue)

        optimizer.zeroGrad()
        if let replica {
            let averager = replica.averager
            averager.begin(share: Float(Double(batch.count) / Double(replica.batchImages)))
            try loss.backward(
                gradient: nil,
                hooks: BackwardHooks(leafReady: { try averager.gradientReady($0) }, afterRule: { try averager.progress() }))
            try averager.finish()
        } else {
            try loss.backward()
        }
        clock.lap(\.backward)

        try optimizer.step()
        clock.lap(\.optimizer)

        var result = Result(loss: lossValue, correct: correct, images: images)
        if !indicatorWeights.isEmpty {
            result.estimatingError = Indicators.estimatingError(weights: indicatorWeights, o: indicatorPower)
            result.gradientStability = Indicators.gradientStability(weights: indicatorWeights)
        }
        clock.lap(\.indicators)
        return result
    }
}

/// Seconds spent in each phase of training steps, summed over the steps measured.
public final class StepPhaseTimes: @unchecked Sendable {
    /// Waiting for the next batch and wrapping it in a tensor.
    public var data = 0.0
    /// Forward pass, loss and accuracy.
    public var forward = 0.0
    /// `loss.backward()` as a whole (estimator and GEMMs included).
    public var backward = 0.0
    /// `zeroGrad` and the optimizer's update.
    public var optimizer = 0.0
    /// The paper's two indicators.
    public var indicators = 0.0
    /// Time inside the estimators' backward (part of `backward`), measured by `TimedEstimator`.
    public let estimator = EstimatorClock()

    /// All zero.
    public init() {}

    /// The sum of the phases measured directly (the estimator is inside `backward`).
    public var total: Double { data + forward + backward + optimizer + indicators }
}

/// Accumulates nanoseconds from any thread (an estimator is a `Sendable` value that may run anywhere).
public final class EstimatorClock: Sendable {
    private let nanoseconds = Atomic<Int>(0)

    /// A clock at zero.
    public init() {}

    /// Seconds accumulated.
    public var seconds: Double { Double(nanoseconds.load(ordering: .relaxed)) * 1e-9 }

    func add(seconds: Double) {
        nanoseconds.wrappingAdd(Int((seconds * 1e9).rounded()), ordering: .relaxed)
    }
}

/// An estimator that times its wrapped estimator's backward pass (for `bnn bench train`).
public struct TimedEstimator: SignEstimator {
    /// The estimator doing the work.
    public var base: any SignEstimator
    /// Where the time goes.
    public let clock: EstimatorClock

    /// Wraps `base`.
    public init(_ base: any SignEstimator, clock: EstimatorClock) {
        self.base = base
        self.clock = clock
    }

    public var name: String { base.name }

    public mutating func setEpoch(_ epoch: Int, of epochs: Int) { base.setEpoch(epoch, of: epochs) }

    public func backward(
        input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
        count: Int, accumulate: Bool
    ) {
        let start = TrainingProgress.monotonicSeconds()
        base.backward(input: input, gradOutput: gradOutput, gradInput: gradInput, count: count, accumulate: accumulate)
        clock.add(seconds: TrainingProgress.monotonicSeconds() - start)
    }
}

/// Adds the time since the previous lap to a phase, when timing is on.
private struct PhaseClock {
    let times: StepPhaseTimes?
    var last: Double

    init(_ times: StepPhaseTimes?) {
        self.times = times
        last = times == nil ? 0 : TrainingProgress.monotonicSeconds()
    }

    mutating func lap(_ phase: ReferenceWritableKeyPath<StepPhaseTimes, Double>) {
        guard let times else { return }
        let now = TrainingProgress.monotonicSeconds()
        times[keyPath: phase] += now - last
        last = now
    }
}
