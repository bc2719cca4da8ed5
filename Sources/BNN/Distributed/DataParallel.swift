import Foundation

/// A trainer's part in data-parallel training: one rank of several, each with a replica of the network.
///
/// Each rank takes its part of every batch (`BatchShards`) of the epoch's seeded order, so the ranks together see
/// the batches a single process would; `TrainingConfiguration.batchSize` is the whole batch. The gradients are
/// averaged over the ranks while the backward pass runs, every rank applies the same update, and rank 0 alone
/// writes the log, the curves and the checkpoints. With `synchronizeBatchNorm`, batch norm normalises over the
/// whole batch (`BatchNormSynchronization`), and N ranks train as one process with the whole batch would, up to
/// the order of float additions.
public struct DataParallel: Sendable {
    /// The ranks.
    public var collective: any Collective
    /// Batch-norm statistics over the whole batch rather than each rank's part.
    public var synchronizeBatchNorm: Bool
    /// Gradients are summed in buckets of about this many bytes, each started as soon as its gradients are final.
    public var bucketBytes: Int

    public init(collective: any Collective, synchronizeBatchNorm: Bool = false, bucketBytes: Int = 1 << 19) {
        self.collective = collective
        self.synchronizeBatchNorm = synchronizeBatchNorm
        self.bucketBytes = bucketBytes
    }
}

/// Why a rank other than 0 stopped without doing anything: rank 0 could not start the run and said why itself.
public struct RankZeroFailed: Error, CustomStringConvertible {
    public var description: String { "rank 0 could not start the run (its message says why)" }
}

/// What rank 0 tells the other ranks before training: whether the run starts, its settings (which every rank must
/// have been given too), and the checkpoint to resume from.
struct StartAgreement {
    var configuration: String
    var classes: Int
    var inputShape: [Int]
    /// Training and validation images.
    var images: [Int]
    var checkpoint: Data?
    var failed: Bool

    init(configuration: TrainingConfiguration, classes: Int, inputShape: [Int], images: [Int], checkpoint: Data?, failed: Bool) {
        self.configuration = configuration.json
        self.classes = classes
        self.inputShape = inputShape
        self.images = images
        self.checkpoint = checkpoint
        self.failed = failed
    }

    private init(configuration: String, classes: Int, inputShape: [Int], images: [Int], checkpoint: Data?, failed: Bool) {
        self.configuration = configuration
        self.classes = classes
        self.inputShape = inputShape
        self.images = images
        self.checkpoint = checkpoint
        self.failed = failed
    }

    /// Rank 0's side.
    func send(_ collective: any Collective) throws {
        let header = JSONValue.object([
            ("failed", .bool(failed)), ("configuration", .string(configuration)), ("classes", .integer(classes)),
            ("input_shape", .array(inputShape.map { .integer($0) })), ("images", .array(images.map { .integer($0) })),
            ("checkpoint_bytes", .integer(checkpoint?.count ?? -1)),
        ]).serialized(spaced: false)
        _ = try collective.broadcast(Array(header.utf8), what: "the run's settings from rank 0")
        if let checkpoint {
            _ = try collective.broadcast([UInt8](checkpoint), what: "the checkpoint from rank 0")
        }
    }

    /// Every other rank's side.
    static func receive(_ collective: any Collective) throws -> StartAgreement {
        let header = try collective.broadcast([], what: "the run's settings from rank 0")
        struct Header: Decodable {
            var failed: Bool
            var configuration: String
            var classes: Int
            var input_shape: [Int]
            var images: [Int]
            var checkpoint_bytes: Int
        }
        let decoded = try JSONDecoder().decode(Header.self, from: Data(header))
        if decoded.failed { throw RankZeroFailed() }
        var checkpoint: Data?
        if decoded.checkpoint_bytes >= 0 {
            checkpoint = Data(try collective.broadcast([], what: "the checkpoint from rank 0"))
        }
        return StartAgreement(
            configuration: decoded.configuration, classes: decoded.classes, inputShape: decoded.input_shape,
            images: decoded.images, checkpoint: checkpoint, failed: false)
    }

    /// Throws naming the first setting in which this rank differs from rank 0.
    func requireSame(configuration: TrainingConfiguration, classes: Int, inputShape: [Int], images: [Int], rank: Int) throws {
        let theirs = try TrainingConfiguration(json: self.configuration, place: "rank 0's settings")
        if let difference = theirs.firstDifference(from: configuration) {
            throw TrainingError.invalidConfiguration(
                "this rank (\(rank)) was started with \(difference.key) \(difference.other), rank 0 with \(difference.mine): "
                    + "every rank must be given the same settings")
        }
        if classes != self.classes || inputShape != self.inputShape || images != self.images {
            throw TrainingError.invalidConfiguration(
                "this rank (\(rank)) reads \(images[0]) training and \(images[1]) validation images of \(classes) classes, "
                    + "\(inputShape); rank 0 \(self.images[0]) and \(self.images[1]) of \(self.classes) classes, \(self.inputShape): "
                    + "every rank must read the same data")
        }
    }
}
