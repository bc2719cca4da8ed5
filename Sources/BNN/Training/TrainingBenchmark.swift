import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Measures training throughput of a registered network (`bnn bench train`): the trainer's own step (forward,
/// cross-entropy, backward, SGD, indicators) on real batches from the background loader, with the time of each
/// phase. Besides the phases timed around the step, two parts of the backward are measured: the estimators'
/// passes (each wrapped in a timer) and the convolutions' input and weight gradients, replayed alone through the
/// same `ConvolutionPlan` on the step's exact shapes (timing them inside the op would need a hook in the op
/// itself).
public enum TrainingBenchmark {
    /// One measured configuration.
    public struct Row: Sendable {
        /// The network and its variant, e.g. "resnet20-1w1a", "vgg-small-fp".
        public var model: String
        /// The estimator's name; nil for the full-precision twin.
        public var estimator: String?
        /// Images per step.
        public var batch: Int
        /// Threads of the kernels and of OpenBLAS.
        public var threads: Int
        /// Steps timed (after the warm-up steps).
        public var steps: Int
        /// Training images per second over the timed steps.
        public var imagesPerSecond: Double
        /// Wall-clock seconds per step.
        public var secondsPerStep: Double
        /// Seconds per step in each phase, in display order: data, forward, backward, optimizer, indicators.
        public var phases: [(name: String, seconds: Double)]
        /// Seconds per step inside the estimators' separate passes (part of the backward; not the activations'
        /// estimator where a convolution's input-gradient kernel applies it).
        public var estimatorSeconds: Double
        /// Seconds per step of the convolutions' input and weight gradients replayed alone (part of the backward).
        public var backwardConvolutionSeconds: Double
        /// Multiply-adds of those gradients per step.
        public var backwardConvolutionMultiplyAdds: Double
        /// Multiply-adds of the whole step as float GEMM work (`stepMultiplyAdds(of:inputShape:batch:)`).
        public var stepMultiplyAdds: Double = 0
        /// Resident memory of the process (bytes) at the end of each epoch the steps went through, and at the end.
        public var residentBytes: [Int] = []
        /// The most resident memory the process has used so far (bytes).
        public var peakResidentBytes: Int = 0

        /// Seconds per step of a phase by name (0 if unknown).
        public func seconds(_ phase: String) -> Double { phases.first { $0.name == phase }?.seconds ?? 0 }
    }

    /// The name used in reports for a network and variant, e.g. "resnet20-1w1a".
    public static func modelName(_ network: String = "resnet20", _ variant: NetworkVariant) -> String {
        "\(network)-\(variant.shortName)"
    }

    /// Trains `warmupSteps + steps` steps of a fresh registered network `network` (`variant`, `estimator` set to the
    /// middle of a 10-epoch schedule so ReSTE runs its general o > 1 path; built for the split's image shape and
    /// classes) on batches of `batchSize` from `data`, timing the last `steps`; the steps wrap to further epochs of
    /// the split, and the resident memory at the end of each is recorded. The kernels' current thread setting is used
    /// and reported.
    public static func measure(
        network: String = "resnet20", variant: NetworkVariant, estimator estimatorName: String, batchSize: Int,
        steps: Int, warmupSteps: Int = 2, data: any ImageSplit, seed: UInt64 = 1
    ) throws -> Row {
        for (name, value, range) in [
            ("batch size", batchSize, 1...Limits.batchSize), ("steps", steps, 1...Limits.benchmarkSteps),
            ("warm-up steps", warmupSteps, 0...Limits.benchmarkSteps),
        ] {
            if let problem = Limits.violation(option: "bench: \(name)", value: value, range: range) {
                throw TrainingError.invalidConfiguration(problem)
            }
        }
        let clock = EstimatorClock()
        let estimator = TimedEstimator(try makeEstimator(named: estimatorName), clock: clock)
        let definition = try NetworkRegistry.named(network)
        let inputShape = data.imageShape
        let model = try definition(NetworkOptions(
            variant: variant, estimator: estimator, classes: data.classCount, seed: seed, inputShape: inputShape))
        try MemoryEstimate.requireFits(
            model, inputShape: inputShape, batchSize: min(batchSize, data.count), training: true,
            what: "\(modelName(network, variant)) training")
        model.setEstimatorEpoch(5, of: 10)
        model.train()
        let optimizer = SGD(parameters: model.namedParameters(), learningRate: 0.01)
        let step = TrainingStep(
            model: model, optimizer: optimizer, indicatorWeights: model.binaryConvolutions.map(\.weight),
            indicatorPower: 3)
        let plan = try data.batchPlan(batchSize: min(batchSize, data.count), seed: seed, training: true)

        // The replay runs between the timed steps (outside their time), so that both see the same load on a
        // shared machine.
        let replay = try BackwardConvolutionReplay(model: model, inputShape: inputShape, batch: min(batchSize, data.count))
        let times = StepPhaseTimes()
        var epoch = 0
        var iterator = PrefetchingSequence(ThrowingEpochSlice(plan.epochBatches(epoch)), prefetch: 2).makeIterator()
        var residentBytes: [Int] = []
        var elapsed = 0.0
        var estimatorSeconds = 0.0
        var replaySeconds = 0.0
        var images = 0
        for index in 0..<(warmupSteps + steps) {
            let timed = index >= warmupSteps
            let start = TrainingProgress.monotonicSeconds()
            let estimatorStart = clock.seconds
            var next = iterator.next()
            if next == nil {
                residentBytes.append(MemoryUse.residentBytes)
                epoch += 1
                iterator = PrefetchingSequence(ThrowingEpochSlice(plan.epochBatches(epoch)), prefetch: 2).makeIterator()
                next = iterator.next()
            }
            guard let batch = try next?.get() else { throw TrainingError.invalidConfiguration("bench: the data holds no image") }
            if timed { times.data += TrainingProgress.monotonicSeconds() - start }
            _ = try step.run(batch, timing: timed ? times : nil) { loss in
                guard loss.isFinite else {
                    throw TrainingError.nonFiniteLoss(epoch: epoch + 1, step: index + 1, loss: loss, checkpoint: nil)
                }
            }
            if timed {
                elapsed += TrainingProgress.monotonicSeconds() - start
                estimatorSeconds += clock.seconds - estimatorStart
                images += batch.count
                replaySeconds += try replay.run()
            }
        }
        residentBytes.append(MemoryUse.residentBytes)
        let imagesPerStep = min(batchSize, data.count)
        let perStep = 1 / Double(steps)
        let stepMultiplyAdds = try Self.stepMultiplyAdds(of: model, inputShape: inputShape, batch: imagesPerStep)
        return Row(
            model: modelName(network, variant), estimator: variant == .fullPrecision ? nil : estimatorName, batch: imagesPerStep,
            threads: Kernels.threads, steps: steps, imagesPerSecond: Double(images) / elapsed,
            secondsPerStep: elapsed * perStep,
            phases: [
                ("data", times.data * perStep), ("forward", times.forward * perStep),
                ("backward", times.backward * perStep), ("optimizer", times.optimizer * perStep),
                ("indicators", times.indicators * perStep),
            ],
            estimatorSeconds: estimatorSeconds * perStep, backwardConvolutionSeconds: replaySeconds * perStep,
            backwardConvolutionMultiplyAdds: replay.multiplyAdds, stepMultiplyAdds: stepMultiplyAdds,
            residentBytes: residentBytes,
            // The kernel's high-water mark lags its per-thread page counters a little; the figures sampled here count too.
            peakResidentBytes: max(MemoryUse.peakResidentBytes, residentBytes.max() ?? 0))
    }

    /// Multiply-adds of one training step on `batch` images, counted as float GEMM work whatever runs them (a 1W1A
    /// forward's XNOR-popcounts count as float multiply-adds): each convolution's and linear layer's forward, input
    /// gradient and weight gradient, three times its forward's MACs (`NetworkSummary`), or two for a layer that reads
    /// the images, whose input gradient nothing needs and the step skips.
    public static func stepMultiplyAdds(of model: Module, inputShape: [Int], batch: Int) throws -> Double {
        let layers = try NetworkSummary(model: model, inputShape: inputShape).layers
        return Double(batch) * layers.reduce(0.0) { $0 + Double($1.macs) * ($1.inputs == ["input"] ? 2 : 3) }
    }

    /// Synthetic images of any shape (values in [-2, 2), the range of normalised pixels) with random labels among
    /// `classes`: the networks cost the same on them as on real images.
    public static func syntheticImages(count: Int, shape: [Int], classes: Int, seed: UInt64 = 1) throws -> any ImageSplit {
        try SyntheticSplit(count: count, shape: shape, classes: classes, seed: seed)
    }

    /// Synthetic CIFAR-shaped data (random pixels and labels): the pipeline costs the same as on real images.
    public static func syntheticData(images: Int, seed: UInt64 = 1) -> CIFAR10Split {
        var generator = Xoshiro256StarStar(seed: seed)
        var pixels = [UInt8](repeating: 0, count: images * CIFAR10.imageSize)
        for index in pixels.indices { pixels[index] = UInt8(truncatingIfNeeded: generator.next() >> 56) }
        let labels = (0..<images).map { _ in UInt8(generator.next() % 10) }
        // Consistent by construction: 3072 bytes per label, labels below 10.
        return CIFAR10Split(images: pixels, labels: labels)!
    }

    // MARK: Backward convolution replay

    /// One convolution of the network as the backward sees it.
    struct ConvolutionShape {
        var input: [Int]
        var weight: [Int]
        var stride: Int
        var padding: Int
        /// False for the stem, whose input (the images) needs no gradient: only dW is computed there.
        var inputNeedsGradient: Bool
        /// A 1W1A convolution: its weight gradient reads sign(input).
        var binaryInput: Bool
    }

    /// The convolutions of `model` in forward order with their input shapes, read off its traced graph for
    /// images of `inputShape`.
    static func convolutionShapes(of model: Module, inputShape: [Int], batch: Int) throws -> [ConvolutionShape] {
        let graph = try NetworkGraph.trace(model, inputShape: inputShape)
        let weights = Dictionary(model.namedParameters().map { ($0.name, $0.tensor.shape) }, uniquingKeysWith: { a, _ in a })
        return graph.nodes.compactMap { node in
            let window: (stride: Int, padding: Int, binaryInput: Bool)
            switch node.operation {
            case .conv2d(_, let stride, let padding, _): window = (stride, padding, false)
            case .binaryConv2d(_, let stride, let padding, let binarizeInput): window = (stride, padding, binarizeInput)
            default: return nil
            }
            guard let name = node.parameters["weight"], let weight = weights[name] else { return nil }
            return ConvolutionShape(
                input: [batch] + graph.nodes[node.inputs[0]].shape, weight: weight, stride: window.stride,
                padding: window.padding, inputNeedsGradient: node.inputs[0] != 0, binaryInput: window.binaryInput)
        }
    }
}

/// The input and weight gradients of one step's convolutions, computed by `ConvolutionPlan.backward` as the ops
/// compute them (same kernels or GEMMs, chunks and leading dimensions) on buffers of the same sizes, without the
/// estimator and weight-transform work around them.
struct BackwardConvolutionReplay {
    private struct Layer {
        let plan: ConvolutionPlan
        let input: Tensor, gradient: Tensor, weightRows: Tensor, weightGradient: Tensor, inputGradient: Tensor?
        let binaryInput: Bool
    }

    private let layers: [Layer]
    /// Multiply-adds of one replay.
    let multiplyAdds: Double

    init(model: Module, inputShape: [Int], batch: Int) throws {
        var layers: [Layer] = []
        var multiplyAdds = 0.0
        for shape in try TrainingBenchmark.convolutionShapes(of: model, inputShape: inputShape, batch: batch) {
            let geometry = try windowGeometry(
                input: shape.input, kernel: (shape.weight[2], shape.weight[3]), stride: shape.stride,
                padding: shape.padding, operation: "bench")
            let plan = ConvolutionPlan(
                geometry: geometry.geometry, outputHeight: geometry.outputHeight, outputWidth: geometry.outputWidth,
                outChannels: shape.weight[0], context: "bench backward replay")
            // Small non-zero values of both signs: the kernels must neither skip zeros nor meet denormals.
            let inputCount = shape.input.reduce(1, *)
            layers.append(Layer(
                plan: plan,
                input: try Tensor(shape: shape.input, data: (0..<inputCount).map { $0 % 3 == 0 ? -0.02 : 0.02 }),
                gradient: try Tensor(shape: [plan.rows, plan.outChannels], repeating: 0.01),
                weightRows: try Tensor(shape: [plan.outChannels, plan.depth], repeating: 0.03),
                weightGradient: try Tensor(shape: [plan.outChannels, plan.depth], repeating: 0),
                inputGradient: shape.inputNeedsGradient ? try Tensor(shape: shape.input, repeating: 0) : nil,
                binaryInput: shape.binaryInput))
            let product = Double(plan.rows) * Double(plan.depth) * Double(plan.outChannels)
            multiplyAdds += product * (shape.inputNeedsGradient ? 2 : 1)
        }
        self.layers = layers
        self.multiplyAdds = multiplyAdds
    }

    /// Runs the gradients once; returns the seconds taken.
    func run() throws -> Double {
        let start = TrainingProgress.monotonicSeconds()
        for layer in layers {
            try layer.plan.backward(
                input: layer.input.pointer, signInput: layer.binaryInput, weightRows: layer.weightRows.pointer,
                gradient: layer.gradient.pointer, weightGradient: layer.weightGradient.pointer,
                inputGradient: layer.inputGradient?.pointer, accumulateInput: false)
        }
        return TrainingProgress.monotonicSeconds() - start
    }
}

/// The process's memory as the kernel counts it.
enum MemoryUse {
    /// Resident bytes now (/proc/self/statm), 0 where unknown.
    static var residentBytes: Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// The most resident bytes so far (getrusage's maximum resident set size).
    static var peakResidentBytes: Int {
        var usage = rusage()
        guard getrusage(Int32(RUSAGE_SELF.rawValue), &usage) == 0 else { return 0 }
        return usage.ru_maxrss * 1024
    }
}

/// `TrainingBenchmark.syntheticImages`: fixed random images, batches in a shuffled order per epoch, no augmentation.
struct SyntheticSplit: ImageSplit, BatchPlan {
    let count: Int
    let imageShape: [Int]
    let classCount: Int
    let images: [Float]
    let labels: [Int]
    var batchSize = 1

    init(count: Int, shape: [Int], classes: Int, seed: UInt64) throws {
        guard count >= 1, shape.count == 3, shape.allSatisfy({ $0 >= 1 }), classes >= 1 else {
            throw TrainingError.invalidConfiguration(
                "synthetic images: need a count ≥ 1, a shape [H, W, C] of sizes ≥ 1 and classes ≥ 1; got \(count), \(shape), \(classes)")
        }
        var generator = Xoshiro256StarStar(seed: seed)
        self.count = count
        imageShape = shape
        classCount = classes
        images = (0..<(count * shape.reduce(1, *))).map { _ in Float(generator.next(below: 4096)) / 1024 - 2 }
        labels = (0..<count).map { _ in Int(generator.next(below: UInt64(classes))) }
    }

    func batchPlan(batchSize: Int, seed: UInt64, training: Bool) throws -> any BatchPlan {
        var plan = self
        plan.batchSize = min(max(batchSize, 1), count)
        return plan
    }

    var imageCount: Int { count }
    var batchesPerEpoch: Int { (count + batchSize - 1) / batchSize }

    func epochBatches(_ epoch: Int) -> any EpochBatches { SyntheticEpoch(split: self, epoch: epoch) }

    struct SyntheticEpoch: EpochBatches {
        let split: SyntheticSplit
        let epoch: Int
        var count: Int { split.batchesPerEpoch }

        func batch(at index: Int) throws -> ImageBatch {
            let size = split.imageShape.reduce(1, *)
            let first = index * split.batchSize
            let indices = Array(first..<min(first + split.batchSize, split.count))
            // A rotation per epoch: every epoch sees the images in another order, the cost is the same.
            let order = indices.map { (($0 + epoch * 7) % split.count) }
            var images = [Float]()
            images.reserveCapacity(order.count * size)
            for i in order { images.append(contentsOf: split.images[(i * size)..<((i + 1) * size)]) }
            return ImageBatch(
                images: images, labels: order.map { split.labels[$0] }, indices: order, height: split.imageShape[0],
                width: split.imageShape[1], channels: split.imageShape[2])
        }
    }
}

extension TrainingBenchmark {
    /// Data-parallel training speed, as measured by one rank of several.
    public struct DataParallelRow: Sendable {
        /// `resnet20-1w1a` and the like.
        public var model: String
        public var ranks: Int
        public var threadsPerRank: Int
        /// Images per step over all ranks.
        public var batch: Int
        public var steps: Int
        public var imagesPerSecond: Double
        public var secondsPerStep: Double
        /// Gradient bytes summed over the ranks per step, and the buckets they travel in.
        public var bytesPerStep: Int
        public var buckets: Int
        /// Seconds per step the rank waited for gradient sums after its backward pass (what overlap did not hide).
        public var exposedSecondsPerStep: Double
        /// Seconds the same sums take with nothing else running (all buckets started at once, after the steps).
        public var allreduceSecondsPerStep: Double
        /// The share of the gradient bytes whose sums were complete when the backward pass ended: what the
        /// backward pass hid.
        public var overlap: Double

        /// One JSON object (keys as the property names in snake case; seconds and bytes per step).
        public var json: String {
            JSONValue.object([
                ("model", .string(model)), ("ranks", .integer(ranks)), ("threads_per_rank", .integer(threadsPerRank)),
                ("batch", .integer(batch)), ("steps", .integer(steps)), ("images_per_second", .real(imagesPerSecond)),
                ("seconds_per_step", .real(secondsPerStep)), ("gradient_bytes_per_step", .integer(bytesPerStep)),
                ("buckets", .integer(buckets)), ("exposed_seconds_per_step", .real(exposedSecondsPerStep)),
                ("allreduce_seconds_per_step", .real(allreduceSecondsPerStep)), ("summed_during_backward", .real(overlap)),
            ]).serialized(spaced: true)
        }
    }

    /// Synthetic images of `definition`'s own size for benchmarks: CIFAR-10's pipeline for 32×32 networks, plain
    /// tensors otherwise.
    public static func syntheticSplit(for definition: NetworkDefinition, images: Int) throws -> any ImageSplit {
        definition.inputShape == [32, 32, 3]
            ? syntheticData(images: images)
            : try syntheticImages(count: images, shape: definition.inputShape, classes: definition.classes)
    }

    /// Trains `warmupSteps + steps` data-parallel steps of `network` on this rank's part of each batch of `batchSize`
    /// images (the trainer's step: counts agreed, loss summed, gradients averaged in buckets during the backward
    /// pass), timing the last `steps`; then times the same gradient sums alone. Every rank of `collective` must call
    /// it with the same arguments.
    public static func measureDataParallel(
        network: String = "resnet20", variant: NetworkVariant, batchSize: Int, steps: Int, warmupSteps: Int = 2,
        data: any ImageSplit, collective: any Collective, synchronizeBatchNorm: Bool = false, seed: UInt64 = 1
    ) throws -> DataParallelRow {
        let definition = try NetworkRegistry.named(network)
        let model = try definition(NetworkOptions(
            variant: variant, estimator: try makeEstimator(named: "reste"), classes: data.classCount, seed: seed,
            inputShape: data.imageShape))
        model.setEstimatorEpoch(5, of: 10)
        model.train()
        let optimizer = SGD(parameters: model.namedParameters(), learningRate: 0.01)
        let step = TrainingStep(
            model: model, optimizer: optimizer, indicatorWeights: model.binaryConvolutions.map(\.weight), indicatorPower: 3)
        let averager = GradientAverager(
            parameters: model.namedParameters().map(\.tensor).filter(\.requiresGrad), collective: collective)
        let plan = try data.batchPlan(batchSize: min(batchSize, data.count), seed: seed, training: true)
        func batches(_ epoch: Int) -> PrefetchingSequence<ThrowingEpochSlice> {
            PrefetchingSequence(
                ThrowingEpochSlice(plan.epochBatches(epoch), shard: collective.rank, of: collective.size), prefetch: 2)
        }
        var epoch = 0
        var iterator = batches(epoch).makeIterator()
        var elapsed = 0.0, exposed = 0.0, images = 0, hiddenBytes = 0
        for index in 0..<(warmupSteps + steps) {
            if index == warmupSteps { _ = try collective.sum([0], what: "the start of the timed steps") }
            let start = TrainingProgress.monotonicSeconds()
            var next = iterator.next()
            if next == nil {
                epoch += 1
                iterator = batches(epoch).makeIterator()
                next = iterator.next()
            }
            guard let batch = try next?.get() else { throw TrainingError.invalidConfiguration("bench: the data holds no image") }
            let count = Int(try collective.sum([Double(batch.count)], what: "the images of a step")[0])
            let exposedBefore = averager.exposedSeconds
            let hiddenBefore = averager.bytesSummedDuringBackward
            _ = try step.run(
                batch,
                replica: TrainingStep.Replica(averager: averager, batchImages: count, synchronizeBatchNorm: synchronizeBatchNorm)
            ) { _ in }
            if index >= warmupSteps {
                elapsed += TrainingProgress.monotonicSeconds() - start
                exposed += averager.exposedSeconds - exposedBefore
                hiddenBytes += averager.bytesSummedDuringBackward - hiddenBefore
                images += count
            }
        }
        // The same sums with nothing to overlap: every bucket started at once.
        var alone = 0.0
        for _ in 0..<steps {
            _ = try collective.sum([0], what: "the start of a gradient sum alone")
            let start = TrainingProgress.monotonicSeconds()
            averager.begin(share: 1)
            try averager.finish()
            alone += TrainingProgress.monotonicSeconds() - start
        }
        return DataParallelRow(
            model: modelName(network, variant), ranks: collective.size, threadsPerRank: Kernels.threads,
            batch: images / max(steps, 1), steps: steps, imagesPerSecond: Double(images) / elapsed,
            secondsPerStep: elapsed / Double(steps), bytesPerStep: averager.bytesPerStep, buckets: averager.bucketCount,
            exposedSecondsPerStep: exposed / Double(steps), allreduceSecondsPerStep: alone / Double(steps),
            overlap: Double(hiddenBytes) / Double(max(averager.bytesPerStep * steps, 1)))
    }
}
