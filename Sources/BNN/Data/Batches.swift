/// Something that can build batch `i` of an epoch on its own, from any thread: the contract that lets
/// `BatchLoader` prepare batches ahead without changing what they contain.
public protocol IndexedBatchSource: Sendable {
    associatedtype Batch: Sendable
    /// The number of batches.
    var count: Int { get }
    /// Batch `index` (0 ..< count); a pure function of the source and the index.
    func batch(at index: Int) -> Batch
}

/// How a CIFAR-10 split is cut into batches, epoch by epoch: shuffling and augmentation draws are pure
/// functions of (seed, epoch, position), so a resumed run sees exactly the batches of an uninterrupted one.
/// The last batch of an epoch is kept even when it is smaller (PyTorch's `drop_last=False`).
public struct CIFAR10Batches: Sendable {
    /// The images and labels.
    public let split: CIFAR10Split
    /// Images per batch (the last batch may hold fewer).
    public let batchSize: Int
    /// The run's seed; together with the epoch it fixes the order and every draw.
    public let seed: UInt64
    /// Visit the images in a new random order each epoch.
    public let shuffle: Bool
    /// Apply random crop and flip; otherwise every image passes through unchanged (then normalised).
    public let augment: Bool

    /// Describes the batches of `split`; `batchSize` must be in 1...`Limits.batchSize`.
    public init(split: CIFAR10Split, batchSize: Int, seed: UInt64, shuffle: Bool, augment: Bool) throws(CIFAR10Error) {
        guard batchSize >= 1 else { throw .invalidArgument("batch size must be at least 1, found \(batchSize)") }
        guard batchSize <= Limits.batchSize else {
            throw .invalidArgument("batch size must be at most \(Limits.batchSize) (the limit), found \(batchSize)")
        }
        self.split = split
        self.batchSize = batchSize
        self.seed = seed
        self.shuffle = shuffle
        self.augment = augment
    }

    /// The training recipe: shuffled and augmented.
    public static func training(_ split: CIFAR10Split, batchSize: Int, seed: UInt64) throws(CIFAR10Error) -> CIFAR10Batches {
        try CIFAR10Batches(split: split, batchSize: batchSize, seed: seed, shuffle: true, augment: true)
    }

    /// Evaluation: file order, no augmentation.
    public static func evaluation(_ split: CIFAR10Split, batchSize: Int) throws(CIFAR10Error) -> CIFAR10Batches {
        try CIFAR10Batches(split: split, batchSize: batchSize, seed: 0, shuffle: false, augment: false)
    }

    /// Batches per epoch, counting a final partial batch.
    public var batchesPerEpoch: Int {
        // Not (count + batchSize − 1) / batchSize: that sum is what overflowed for a batch size near Int.max.
        split.count / batchSize + (split.count % batchSize == 0 ? 0 : 1)
    }

    /// The order in which the records are visited in `epoch` (a permutation of 0..<count).
    public func order(epoch: Int) -> [Int] {
        var order = Array(0..<split.count)
        guard shuffle, order.count > 1 else { return order }
        var generator = Xoshiro256StarStar(seed: SplitMix64.derive(seed, UInt64(bitPattern: Int64(epoch)), 0))
        // Fisher–Yates from the back; bounded draws are the pinned `next(below:)`.
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            let j = Int(generator.next(below: UInt64(i + 1)))
            order.swapAt(i, j)
        }
        return order
    }

    /// The crop/flip of the image at `position` in the epoch's order (identity without augmentation).
    public func draw(epoch: Int, position: Int) -> CIFAR10Transform.Draw {
        guard augment else { return .identity }
        var generator = Xoshiro256StarStar(
            seed: SplitMix64.derive(seed, UInt64(bitPattern: Int64(epoch)), 1, UInt64(bitPattern: Int64(position))))
        return .random(using: &generator)
    }

    /// The batches of `epoch`, computed on demand; iterate it, or ask for any batch by index.
    public func batches(epoch: Int) -> CIFAR10EpochBatches {
        CIFAR10EpochBatches(source: self, epoch: epoch, order: order(epoch: epoch))
    }
}

/// One epoch of CIFAR-10 batches: the order is fixed at creation, each batch is built when asked for.
public struct CIFAR10EpochBatches: IndexedBatchSource, Sequence {
    /// The pipeline this epoch belongs to.
    public let source: CIFAR10Batches
    /// The epoch number (0-based).
    public let epoch: Int
    /// The record visited at each position.
    public let order: [Int]

    public var count: Int { source.batchesPerEpoch }

    /// Batch `index`: positions index·batchSize ..< min((index+1)·batchSize, count) of the order.
    public func batch(at index: Int) -> ImageBatch { batch(at: index, shard: 0, of: 1) }

    /// Part `shard` of `shards` of batch `index` (`BatchShards`), built without the rest of the batch.
    public func batch(at index: Int, shard: Int, of shards: Int) -> ImageBatch {
        precondition(index >= 0 && index < count, "batch \(index) out of 0..<\(count)")
        let positions = BatchShards.positions(
            batch: index, batchSize: source.batchSize, imageCount: order.count, shard: shard, of: shards)
        let start = positions.lowerBound
        let end = positions.upperBound
        let imageSize = CIFAR10.imageSize
        var images = [Float](repeating: 0, count: (end - start) * imageSize)
        var labels = [Int]()
        labels.reserveCapacity(end - start)
        let indices = Array(order[start..<end])
        CIFAR10Transform.normalisationTable.withUnsafeBufferPointer { table in
            source.split.images.withUnsafeBufferPointer { allImages in
                images.withUnsafeMutableBufferPointer { output in
                    for (slot, record) in indices.enumerated() {
                        let draw = source.draw(epoch: epoch, position: start + slot)
                        CIFAR10Transform.apply(
                            draw,
                            image: UnsafeBufferPointer(rebasing: allImages[(record * imageSize)..<((record + 1) * imageSize)]),
                            table: table,
                            into: UnsafeMutableBufferPointer(rebasing: output[(slot * imageSize)..<((slot + 1) * imageSize)]))
                        labels.append(Int(source.split.labels[record]))
                    }
                }
            }
        }
        return ImageBatch(images: images, labels: labels, indices: indices,
                          height: CIFAR10.height, width: CIFAR10.width, channels: CIFAR10.channels)
    }

    /// Iterates the batches in order on the calling thread.
    public func makeIterator() -> Iterator { Iterator(batches: self) }

    /// Sequential iterator over an epoch's batches.
    public struct Iterator: IteratorProtocol {
        let batches: CIFAR10EpochBatches
        var position = 0

        public mutating func next() -> ImageBatch? {
            guard position < batches.count else { return nil }
            defer { position += 1 }
            return batches.batch(at: position)
        }
    }

    public var underestimatedCount: Int { count }
}
