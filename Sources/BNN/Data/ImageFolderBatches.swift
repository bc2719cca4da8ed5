import Foundation

/// How an image folder's split is cut into batches, epoch by epoch, with the order and every random draw pure
/// functions of (seed, epoch, position), as for `CIFAR10Batches` (the same shuffle and the same seed derivation).
/// A batch is decoded and transformed by up to `options.threads` threads, each image into its own slot, so its
/// content does not depend on the thread count or on timing. With `skipBadImages`, an unreadable file is left out
/// of its batch (which then holds fewer images) and reported once; otherwise building the batch throws naming it.
public struct ImageFolderBatches: BatchPlan {
    /// The files and transforms.
    public let split: ImageFolderSplit
    /// Images per batch (the last batch may hold fewer).
    public let batchSize: Int
    /// The run's seed.
    public let seed: UInt64
    /// Training: shuffled each epoch, random transforms; otherwise split order, evaluation transform.
    public let training: Bool

    /// Describes the batches; `batchSize` must be in 1...`Limits.batchSize`.
    public init(split: ImageFolderSplit, batchSize: Int, seed: UInt64, training: Bool) throws(ImageFolderError) {
        guard batchSize >= 1 && batchSize <= Limits.batchSize else {
            throw .invalidArgument("batch size must be in 1...\(Limits.batchSize), found \(batchSize)")
        }
        self.split = split
        self.batchSize = batchSize
        self.seed = seed
        self.training = training
    }

    public var imageCount: Int { split.count }

    public var batchesPerEpoch: Int { split.count / batchSize + (split.count % batchSize == 0 ? 0 : 1) }

    /// The files visited in `epoch`: a seeded Fisher–Yates permutation in training, the split's order otherwise.
    public func order(epoch: Int) -> [Int] {
        var order = Array(0..<split.count)
        guard training, order.count > 1 else { return order }
        var generator = Xoshiro256StarStar(seed: SplitMix64.derive(seed, UInt64(bitPattern: Int64(epoch)), 0))
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(generator.next(below: UInt64(i + 1))))
        }
        return order
    }

    public func epochBatches(_ epoch: Int) -> any EpochBatches { batches(epoch: epoch) }

    /// The batches of `epoch`.
    public func batches(epoch: Int) -> ImageFolderEpochBatches {
        ImageFolderEpochBatches(plan: self, epoch: epoch, order: order(epoch: epoch))
    }
}

/// One epoch of an image folder's batches.
public struct ImageFolderEpochBatches: EpochBatches {
    public let plan: ImageFolderBatches
    public let epoch: Int
    /// The file visited at each position.
    public let order: [Int]

    public var count: Int { plan.batchesPerEpoch }

    /// Batch `index`: positions index·batchSize ..< min((index+1)·batchSize, count) of the order, decoded in
    /// parallel. Throws the error of the first unreadable file (in batch order) unless bad images are skipped.
    public func batch(at index: Int) throws -> ImageBatch { try batch(at: index, shard: 0, of: 1) }

    /// Part `shard` of `shards` of batch `index` (`BatchShards`); only its files are decoded.
    public func batch(at index: Int, shard: Int, of shards: Int) throws -> ImageBatch {
        precondition(index >= 0 && index < count, "batch \(index) out of 0..<\(count)")
        let split = plan.split
        let positions = BatchShards.positions(
            batch: index, batchSize: plan.batchSize, imageCount: order.count, shard: shard, of: shards)
        let start = positions.lowerBound
        let end = positions.upperBound
        let slots = end - start
        let imageSize = split.imageShape.reduce(1, *)
        var images = [Float](repeating: 0, count: slots * imageSize)
        var failures = [ImageFolderError?](repeating: nil, count: slots)
        let skip = split.options.skipBadImages
        images.withUnsafeMutableBufferPointer { output in
            failures.withUnsafeMutableBufferPointer { failures in
                let output = SendableBuffer(output), failureSlots = SendableBuffer(failures)
                parallelFor(slots, threads: split.options.threads) { slot in
                    let record = order[start + slot]
                    if skip && split.badImages.contains(split.files[record]) {
                        failureSlots.base[slot] = .badImage(path: split.files[record], reason: "skipped before")
                        return
                    }
                    do throws(ImageFolderError) {
                        try split.prepare(
                            record: record, seed: plan.seed, epoch: epoch, position: start + slot, training: plan.training,
                            into: UnsafeMutableBufferPointer(rebasing: output.base[(slot * imageSize)..<((slot + 1) * imageSize)]))
                    } catch {
                        failureSlots.base[slot] = error
                    }
                }
            }
        }
        var kept = Array(0..<slots)
        if let first = failures.firstIndex(where: { $0 != nil }) {
            guard skip else { throw failures[first]! }
            for (slot, failure) in failures.enumerated() {
                if let failure { split.badImages.report(failure, path: split.files[order[start + slot]]) }
            }
            kept = kept.filter { failures[$0] == nil }
            var compacted = [Float]()
            compacted.reserveCapacity(kept.count * imageSize)
            for slot in kept { compacted.append(contentsOf: images[(slot * imageSize)..<((slot + 1) * imageSize)]) }
            images = compacted
        }
        let indices = kept.map { order[start + $0] }
        let shape = split.imageShape
        return ImageBatch(images: images, labels: indices.map { Int(split.labels[$0]) }, indices: indices,
                          height: shape[0], width: shape[1], channels: shape[2])
    }
}

/// An unsafe buffer handed to the workers of `parallelFor`, each of which writes its own elements only.
struct SendableBuffer<Element>: @unchecked Sendable {
    let base: UnsafeMutableBufferPointer<Element>
    init(_ base: UnsafeMutableBufferPointer<Element>) { self.base = base }
}

/// Runs `body(i)` for i in 0..<count on up to `threads` threads (the caller's among them), handing out indices
/// one at a time; returns when all are done.
func parallelFor(_ count: Int, threads: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let workers = Swift.min(threads, count)
    if workers <= 1 {
        for index in 0..<count { body(index) }
        return
    }
    let counter = IndexCounter()
    DispatchQueue.concurrentPerform(iterations: workers) { _ in
        while let index = counter.next(below: count) { body(index) }
    }
}

/// Hands out 0, 1, 2, ... to concurrent workers. All state is guarded by `lock`.
final class IndexCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func next(below bound: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < bound else { return nil }
        defer { value += 1 }
        return value
    }
}
