/// A split of labelled images that training and evaluation read in batches: CIFAR-10's binary files
/// (`CIFAR10Split`) or a folder of JPEG and PNG files (`ImageFolderSplit`).
public protocol ImageSplit: Sendable {
    /// The number of images.
    var count: Int { get }
    /// `[height, width, channels]` of every image of the batches (after the transforms).
    var imageShape: [Int] { get }
    /// The number of classes; labels are 0 ..< classCount.
    var classCount: Int { get }
    /// The batches of the split: for training shuffled and augmented per epoch from `seed`, otherwise in the split's
    /// order with the evaluation transform (and `seed` unused). `batchSize` must be in 1...`Limits.batchSize`.
    func batchPlan(batchSize: Int, seed: UInt64, training: Bool) throws -> any BatchPlan
}

/// How a split is cut into batches epoch by epoch. Batch `index` of `epoch` is a function of the split, the seed,
/// the epoch and the index only (not of timing or thread count), so a resumed run sees the batches of an
/// uninterrupted one.
public protocol BatchPlan: Sendable {
    /// The images of the split.
    var imageCount: Int { get }
    /// Batches per epoch; the last one may be smaller.
    var batchesPerEpoch: Int { get }
    /// The batches of `epoch` (0-based), built when asked for.
    func epochBatches(_ epoch: Int) -> any EpochBatches
}

/// One epoch of batches, any of which can be built on its own from any thread.
public protocol EpochBatches: Sendable {
    /// The number of batches.
    var count: Int { get }
    /// Batch `index` (0 ..< count). Throws when an image cannot be read (image folders).
    func batch(at index: Int) throws -> ImageBatch
    /// Part `shard` of `shards` of batch `index`: the positions `BatchShards.positions` gives, for one rank of
    /// data-parallel training; the images, labels and augmentation draws are those of the same positions of the
    /// whole batch.
    func batch(at index: Int, shard: Int, of shards: Int) throws -> ImageBatch
}

extension EpochBatches {
    /// Builds the whole batch and keeps the shard's images (sources that can build a part directly do so).
    public func batch(at index: Int, shard: Int, of shards: Int) throws -> ImageBatch {
        let whole = try batch(at: index)
        let part = BatchShards.positions(batchSize: whole.count, shard: shard, of: shards)
        let imageSize = whole.height * whole.width * whole.channels
        return ImageBatch(
            images: Array(whole.images[(part.lowerBound * imageSize)..<(part.upperBound * imageSize)]),
            labels: Array(whole.labels[part]), indices: Array(whole.indices[part]),
            height: whole.height, width: whole.width, channels: whole.channels)
    }
}

/// How data-parallel ranks divide a batch: rank r of R takes the consecutive positions
/// ⌊n·r/R⌋ ..< ⌊n·(r+1)/R⌋ of its n images, so shares differ by at most one image and together are the batch.
public enum BatchShards {
    /// The positions within a batch of `batchSize` images that shard `shard` of `shards` holds.
    public static func positions(batchSize: Int, shard: Int, of shards: Int) -> Range<Int> {
        precondition(shards >= 1 && shard >= 0 && shard < shards, "shard \(shard) of \(shards)")
        return (batchSize * shard / shards)..<(batchSize * (shard + 1) / shards)
    }

    /// The positions in the epoch's order of shard `shard` of batch `index` (batches of `batchSize`, the last one
    /// holding what is left of `imageCount`).
    public static func positions(batch index: Int, batchSize: Int, imageCount: Int, shard: Int, of shards: Int) -> Range<Int> {
        let start = index * batchSize
        let end = min(start + batchSize, imageCount)
        let part = positions(batchSize: end - start, shard: shard, of: shards)
        return (start + part.lowerBound)..<(start + part.upperBound)
    }
}

extension CIFAR10Split: ImageSplit {
    public var imageShape: [Int] { [CIFAR10.height, CIFAR10.width, CIFAR10.channels] }
    public var classCount: Int { CIFAR10.classCount }

    /// `CIFAR10Batches.training` or `.evaluation`.
    public func batchPlan(batchSize: Int, seed: UInt64, training: Bool) throws -> any BatchPlan {
        training ? try CIFAR10Batches.training(self, batchSize: batchSize, seed: seed)
            : try CIFAR10Batches.evaluation(self, batchSize: batchSize)
    }
}

extension CIFAR10Batches: BatchPlan {
    public var imageCount: Int { split.count }
    public func epochBatches(_ epoch: Int) -> any EpochBatches { batches(epoch: epoch) }
}

extension CIFAR10EpochBatches: EpochBatches {}

/// The batches of an epoch from `start` on, as results, for `PrefetchingSequence`: an error reading a batch is
/// handed to the consumer, which rethrows it.
/// With `shards` > 1, each batch is this rank's part of it.
struct ThrowingEpochSlice: IndexedBatchSource {
    let batches: any EpochBatches
    let start: Int
    let shard: Int
    let shards: Int

    init(_ batches: any EpochBatches, from start: Int = 0, shard: Int = 0, of shards: Int = 1) {
        self.batches = batches
        self.start = start
        self.shard = shard
        self.shards = shards
    }

    var count: Int { max(0, batches.count - start) }

    func batch(at index: Int) -> Result<ImageBatch, any Error> {
        Result {
            shards == 1 ? try batches.batch(at: start + index) : try batches.batch(at: start + index, shard: shard, of: shards)
        }
    }
}
