@testable import BNN
import Foundation
import Testing

/// A stand-in for a second rank that holds exactly this rank's data: every sum doubles.
private final class MirrorCollective: Collective, @unchecked Sendable {
    let rank = 0
    let size = 2
    var sums = 0

    func sum(_ values: UnsafeMutableBufferPointer<Double>, what: String) throws {
        sums += 1
        for i in values.indices { values[i] *= 2 }
    }

    private var started: [Int: UnsafeMutableBufferPointer<Float>] = [:]

    func startSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> CollectiveTicket {
        sums += 1
        started[started.count] = values
        return CollectiveTicket(id: started.count - 1)
    }

    func isComplete(_ ticket: CollectiveTicket) throws -> Bool { false }

    func wait(_ ticket: CollectiveTicket, what: String) throws {
        let values = started[ticket.id]!
        for i in values.indices { values[i] *= 2 }
    }

    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int, what: String) throws {}
    func setPlace(_ place: String) {}
}

/// Ranks as threads of one process: each collective waits until every rank has contributed, then gives all of
/// them the sum, added in rank order.
final class ThreadCollectiveGroup: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var contributions: [[Double]?]
    private var result: [Double] = []
    private var generation = 0
    private var arrived = 0
    private var departed = 0

    init(size: Int) {
        self.size = size
        contributions = Array(repeating: nil, count: size)
    }

    func member(_ rank: Int) -> Member { Member(group: self, rank: rank) }

    /// Every rank's values summed in rank order.
    func exchange(_ values: [Double], rank: Int) -> [Double] {
        condition.lock()
        defer { condition.unlock() }
        let mine = generation
        contributions[rank] = values
        arrived += 1
        if arrived == size {
            var total = [Double](repeating: 0, count: values.count)
            for contribution in contributions { for i in total.indices { total[i] += contribution![i] } }
            result = total
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == mine { condition.wait() }
        }
        return result
    }

    final class Member: Collective, @unchecked Sendable {
        let group: ThreadCollectiveGroup
        let rank: Int
        var size: Int { group.size }

        init(group: ThreadCollectiveGroup, rank: Int) {
            self.group = group
            self.rank = rank
        }

        func sum(_ values: UnsafeMutableBufferPointer<Double>, what: String) throws {
            let total = group.exchange(Array(values), rank: rank)
            for i in values.indices { values[i] = total[i] }
        }

        func startSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> CollectiveTicket {
            // Two floats added in double and rounded once are their float sum, as MPI would add them.
            let total = group.exchange(values.map { Double($0) }, rank: rank)
            for i in values.indices { values[i] = Float(total[i]) }
            return CollectiveTicket(id: 0)
        }

        func isComplete(_ ticket: CollectiveTicket) throws -> Bool { true }
        func wait(_ ticket: CollectiveTicket, what: String) throws {}
        func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int, what: String) throws {
            let total = group.exchange(rank == root ? bytes.map { Double($0) } : Array(repeating: 0, count: bytes.count), rank: rank)
            for i in bytes.indices { bytes[i] = UInt8(total[i]) }
        }

        func setPlace(_ place: String) {}
    }
}

private func values(_ count: Int, seed: UInt64) -> [Float] {
    var generator = Xoshiro256StarStar(seed: seed)
    return (0..<count).map { _ in Float(Double(generator.next() >> 11) / Double(1 << 53) * 4 - 2) }
}

private func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

@Suite("Data parallelism")
struct DataParallelTests {
    /// Two ranks (threads) with different halves of a batch give, synchronised, what batch norm over the whole
    /// batch gives.
    @Test func synchronisedBatchNormOfTwoHalves() throws {
        let shape = [3, 5, 4, 6]
        let count = shape.reduce(1, *)
        let halves = [values(count, seed: 11).map { $0 + 0.7 }, values(count, seed: 12)]
        let grads = [values(count, seed: 13), values(count, seed: 14).map { $0 * 0.3 - 0.2 }]
        let gamma = values(6, seed: 3), beta = values(6, seed: 4)
        let group = ThreadCollectiveGroup(size: 2)
        nonisolated(unsafe) var outputs: [[Float]] = [[], []]
        nonisolated(unsafe) var inputGrads: [[Float]] = [[], []]
        DispatchQueue.concurrentPerform(iterations: 2) { rank in
            let x = try! Tensor(shape: shape, data: halves[rank], requiresGrad: true)
            let w = try! Tensor(shape: [6], data: gamma, requiresGrad: true)
            let b = try! Tensor(shape: [6], data: beta, requiresGrad: true)
            try! BatchNormSynchronization.$current.withValue(.init(collective: group.member(rank), share: 0.5)) {
                let y = try batchNorm2d(x, weight: w, bias: b, statistics: nil, training: true)
                try y.backward(gradient: Tensor(shape: shape, data: grads[rank]))
                outputs[rank] = y.scalars
            }
            inputGrads[rank] = x.grad!.scalars
        }
        let both = try Tensor(shape: [6, 5, 4, 6], data: halves[0] + halves[1], requiresGrad: true)
        let w2 = try Tensor(shape: [6], data: gamma, requiresGrad: true)
        let b2 = try Tensor(shape: [6], data: beta, requiresGrad: true)
        let y2 = try batchNorm2d(both, weight: w2, bias: b2, statistics: nil, training: true)
        try y2.backward(gradient: Tensor(shape: [6, 5, 4, 6], data: (grads[0] + grads[1]).map { $0 * 0.5 }))
        #expect(maxDifference(outputs[0] + outputs[1], y2.scalars) < 1e-5)
        #expect(maxDifference((inputGrads[0] + inputGrads[1]).map { $0 * 0.5 }, both.grad!.scalars) < 1e-5)
    }

    /// Batch norm synchronised with a rank holding the same images equals batch norm over both copies at once:
    /// the output, the input gradient (in this rank's gradient scale) and γ's and β's local gradients.
    /// A small network's input gradient, two ranks of half a batch each against one process with the whole batch:
    /// batch norm 2d → ReLU → global average → batch norm 1d → linear → cross-entropy.
    @Test func synchronisedChainOfTwoHalves() throws {
        let shape = [4, 3, 3, 6]
        let count = shape.reduce(1, *)
        let halves = [values(count, seed: 21).map { $0 + 0.3 }, values(count, seed: 22)]
        let labels = [[1, 0, 2, 1], [2, 2, 0, 1]]
        let linearWeights = values(18, seed: 23)
        @Sendable func network(_ x: Tensor) throws -> Tensor {
            let a = try relu(batchNorm2d(x, weight: nil, bias: nil, statistics: nil, training: true))
            let pooled = try globalAvgPool(a)
            let b = try batchNorm1d(pooled, weight: nil, bias: nil, statistics: nil, training: true)
            return try linear(b, weight: Tensor(shape: [3, 6], data: linearWeights))
        }
        let group = ThreadCollectiveGroup(size: 2)
        nonisolated(unsafe) var inputGrads: [[Float]] = [[], []]
        DispatchQueue.concurrentPerform(iterations: 2) { rank in
            let x = try! Tensor(shape: shape, data: halves[rank], requiresGrad: true)
            try! BatchNormSynchronization.$current.withValue(.init(collective: group.member(rank), share: 0.5)) {
                try crossEntropy(network(x), labels: labels[rank]).backward()
            }
            inputGrads[rank] = x.grad!.scalars
        }
        let both = try Tensor(shape: [8, 3, 3, 6], data: halves[0] + halves[1], requiresGrad: true)
        try crossEntropy(network(both), labels: labels[0] + labels[1]).backward()
        #expect(maxDifference((inputGrads[0] + inputGrads[1]).map { $0 * 0.5 }, both.grad!.scalars) < 1e-6)
    }

    /// One training step of a network on two ranks (threads), each with half the batch, synchronised batch norm and
    /// averaged gradients, against one step on the whole batch: the same weights afterwards.
    @Test(arguments: [NetworkVariant.fullPrecision, .binaryWeights, .binary])
    func stepOfTwoRanksEqualsOneProcess(variant: NetworkVariant) throws {
        // Both runs with the same kernel path and threads (other tests change them).
        try Kernels.withSettings { try stepOfTwoRanks(variant: variant) }
    }

    private func stepOfTwoRanks(variant: NetworkVariant) throws {
        let definition = try NetworkRegistry.named("resnet20")
        let options = NetworkOptions(variant: variant, classes: 10, seed: 3, inputShape: [32, 32, 3])
        let imageSize = 32 * 32 * 3
        let images = values(16 * imageSize, seed: 31)
        let labels = (0..<16).map { $0 % 10 }
        @Sendable func batch(_ range: Range<Int>) -> ImageBatch {
            ImageBatch(images: Array(images[(range.lowerBound * imageSize)..<(range.upperBound * imageSize)]),
                       labels: Array(labels[range]), indices: Array(range), height: 32, width: 32, channels: 3)
        }
        @Sendable func makeStep(_ model: Module) -> TrainingStep {
            let optimizer = SGD(parameters: model.namedParameters(), learningRate: 0.1)
            return TrainingStep(model: model, optimizer: optimizer, indicatorWeights: [], indicatorPower: 3)
        }
        let whole = try definition(options)
        whole.train()
        _ = try makeStep(whole).run(batch(0..<16)) { _ in }

        let group = ThreadCollectiveGroup(size: 2)
        nonisolated(unsafe) let replicas = [try definition(options), try definition(options)]
        DispatchQueue.concurrentPerform(iterations: 2) { rank in
            let model = replicas[rank]
            model.train()
            let member = group.member(rank)
            let averager = GradientAverager(
                parameters: model.namedParameters().map(\.tensor), collective: member, bucketBytes: 1 << 12)
            let replica = TrainingStep.Replica(averager: averager, batchImages: 16, synchronizeBatchNorm: true)
            _ = try! makeStep(model).run(batch(rank == 0 ? 0..<8 : 8..<16), replica: replica) { _ in }
        }
        for ((name, expected), (_, actual)) in zip(whole.namedParameters(), replicas[0].namedParameters()) {
            let difference = maxDifference(expected.scalars, actual.scalars)
            #expect(difference < 1e-6, "\(name): \(difference)")
        }
    }

    /// Two trainers (threads) on one CIFAR-10 split, each taking its half of every batch, against one trainer:
    /// the same weights after the step.
    @Test func trainersOfTwoRanksEqualOneTrainer() throws {
        try Kernels.withSettings { try trainersOfTwoRanks() }
    }

    private func trainersOfTwoRanks() throws {
        var generator = Xoshiro256StarStar(seed: 5)
        let images = (0..<(16 * 3072)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let labels = (0..<16).map { UInt8($0 % 10) }
        let split = CIFAR10Split(images: images, labels: labels)!
        var configuration = TrainingConfiguration(epochs: 1)
        configuration.variant = .fullPrecision
        configuration.batchSize = 16
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("dp-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let single = try Trainer(
            configuration: configuration, training: split, validation: nil, runDirectory: root.appendingPathComponent("one"))
        _ = try single.run()

        let group = ThreadCollectiveGroup(size: 2)
        let recipe = configuration
        nonisolated(unsafe) var trainers: [Trainer?] = [nil, nil]
        DispatchQueue.concurrentPerform(iterations: 2) { rank in
            let trainer = try! Trainer(
                configuration: recipe, training: split, validation: nil,
                runDirectory: root.appendingPathComponent("two"),
                dataParallel: DataParallel(collective: group.member(rank), synchronizeBatchNorm: true))
            _ = try! trainer.run()
            trainers[rank] = trainer
        }
        for ((name, expected), (_, actual)) in zip(single.model.namedParameters(), trainers[1]!.model.namedParameters()) {
            let difference = maxDifference(expected.scalars, actual.scalars)
            #expect(difference < 1e-6, "\(name): \(difference)")
        }
    }

    /// Shards are consecutive, differ in size by at most one image and together make the batch, for every split of
    /// every batch size up to 40 over up to 9 ranks.
    @Test func shardsCoverTheBatch() {
        for size in 0...40 {
            for shards in 1...9 {
                let parts = (0..<shards).map { BatchShards.positions(batchSize: size, shard: $0, of: shards) }
                #expect(parts.first?.lowerBound == 0 && parts.last?.upperBound == size)
                #expect(zip(parts, parts.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                let counts = parts.map(\.count)
                #expect(counts.max()! - counts.min()! <= 1)
            }
        }
        // The last, partial batch of an epoch.
        #expect(BatchShards.positions(batch: 2, batchSize: 8, imageCount: 21, shard: 1, of: 2) == 18..<21)
    }

    /// A rank's part of a CIFAR-10 batch is the same positions of the whole batch: images, labels, augmentation.
    @Test func shardOfABatchIsPartOfTheBatch() throws {
        var generator = Xoshiro256StarStar(seed: 9)
        let images = (0..<(21 * 3072)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let split = CIFAR10Split(images: images, labels: (0..<21).map { UInt8($0 % 10) })!
        let batches = try CIFAR10Batches.training(split, batchSize: 8, seed: 4).batches(epoch: 1)
        for index in 0..<batches.count {
            let whole = batches.batch(at: index)
            for shards in [2, 3] {
                var joined: [Float] = [], labels: [Int] = []
                for shard in 0..<shards {
                    let part = batches.batch(at: index, shard: shard, of: shards)
                    joined += part.images
                    labels += part.labels
                }
                #expect(joined == whole.images && labels == whole.labels)
            }
        }
    }

    /// The backward pass reports each leaf once, after the last rule that adds to its gradient: here a weight read by
    /// two ops, whose gradient at the report must already be the sum of both.
    @Test func leavesAreReportedWhenTheirGradientIsFinal() throws {
        let w = try Tensor(shape: [1, 3], data: [1, 2, 3], requiresGrad: true)
        let b = try Tensor(shape: [1, 3], data: [0.5, -0.5, 0.25], requiresGrad: true)
        let logits = try add(add(multiply(w, by: 2), b), multiply(w, by: -3))
        let loss = try crossEntropy(logits, labels: [1])
        nonisolated(unsafe) var reported: [(Tensor, [Float])] = []
        try loss.backward(gradient: nil, hooks: BackwardHooks(
            leafReady: { leaf in reported.append((leaf, leaf.grad!.scalars)) }, afterRule: {}))
        #expect(reported.count == 2)
        #expect(reported.contains { $0.0 === w && $0.1 == w.grad!.scalars })
        #expect(reported.contains { $0.0 === b && $0.1 == b.grad!.scalars })
    }

    @Test func synchronisedBatchNormEqualsTheWholeBatch() throws {
        let shape = [3, 5, 4, 6]
        let count = shape.reduce(1, *)
        let xs = values(count, seed: 1), gs = values(count, seed: 2)
        let gamma = values(6, seed: 3), beta = values(6, seed: 4)

        let x = try Tensor(shape: shape, data: xs, requiresGrad: true)
        let w = try Tensor(shape: [6], data: gamma, requiresGrad: true)
        let b = try Tensor(shape: [6], data: beta, requiresGrad: true)
        let statistics = try BatchNormStatistics(channels: 6)
        let mirror = MirrorCollective()
        let y = try BatchNormSynchronization.$current.withValue(.init(collective: mirror, share: 0.5)) {
            let y = try batchNorm2d(x, weight: w, bias: b, statistics: statistics, training: true)
            try y.backward(gradient: Tensor(shape: shape, data: gs))
            return y
        }
        #expect(mirror.sums == 3)   // the means, the variances, the gradient sums

        let both = try Tensor(shape: [6, 5, 4, 6], data: xs + xs, requiresGrad: true)
        let w2 = try Tensor(shape: [6], data: gamma, requiresGrad: true)
        let b2 = try Tensor(shape: [6], data: beta, requiresGrad: true)
        let statistics2 = try BatchNormStatistics(channels: 6)
        let y2 = try batchNorm2d(both, weight: w2, bias: b2, statistics: statistics2, training: true)
        // The whole batch's loss is the mean of both ranks': each half's gradient is half of a rank's.
        try y2.backward(gradient: Tensor(shape: [6, 5, 4, 6], data: (gs + gs).map { $0 * 0.5 }))

        #expect(maxDifference(y.scalars, Array(y2.scalars[0..<count])) < 1e-5)
        #expect(maxDifference(x.grad!.scalars, Array(both.grad!.scalars[0..<count]).map { $0 * 2 }) < 1e-5)
        #expect(maxDifference(w.grad!.scalars, w2.grad!.scalars) < 1e-4)
        #expect(maxDifference(b.grad!.scalars, b2.grad!.scalars) < 1e-4)
        #expect(maxDifference(statistics.runningMean.scalars, statistics2.runningMean.scalars) < 1e-6)
        #expect(maxDifference(statistics.runningVar.scalars, statistics2.runningVar.scalars) < 1e-6)
    }
}
