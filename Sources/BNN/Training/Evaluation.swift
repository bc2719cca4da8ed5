import Foundation

/// Loss and top-1 / top-5 accuracy of a model over a data split, in evaluation mode.
public struct EvaluationResult: Sendable, Equatable {
    /// Mean cross-entropy over the images.
    public var loss: Double
    /// Images whose label has the highest logit.
    public var top1Correct: Int
    /// Images whose label is among the five highest logits.
    public var top5Correct: Int
    /// Images evaluated.
    public var images: Int

    /// Fraction of images right at top-1.
    public var top1: Double { images > 0 ? Double(top1Correct) / Double(images) : 0 }
    /// Fraction of images right at top-5.
    public var top5: Double { images > 0 ? Double(top5Correct) / Double(images) : 0 }
}

/// Evaluation of a classifier on the images of a split (CIFAR-10 or an image folder).
public enum Evaluation {
    /// The paper's test batch size. In evaluation mode batch norm uses its running statistics, so the batch size
    /// changes speed and memory, not the results.
    public static let defaultBatchSize = 128

    /// Runs `model` in evaluation mode without recording gradients over every image of `split` (the split's order,
    /// evaluation transform, batches prepared in the background), then restores the model's mode. Images of a
    /// folder skipped as unreadable are not counted.
    ///
    /// With `shards` > 1 only part `shard` of each batch is evaluated (`BatchShards`): data-parallel ranks each take
    /// their part and add up their results (`EvaluationResult.summed(over:)`).
    public static func evaluate(
        _ model: Module, on split: any ImageSplit, batchSize: Int = defaultBatchSize, shard: Int = 0, of shards: Int = 1
    ) throws -> EvaluationResult {
        let wasTraining = model.isTraining
        model.eval()
        defer { if wasTraining { model.train() } }
        // A batch larger than the split holds no more images than the split, and the results do not depend on the
        // batch size: clamping keeps a huge request from being refused (or allocated) for nothing.
        let plan = try split.batchPlan(batchSize: min(batchSize, max(split.count, 1)), seed: 0, training: false)
        var result = EvaluationResult(loss: 0, top1Correct: 0, top5Correct: 0, images: 0)
        var lossSum = 0.0
        try withNoGrad {
            for prepared in PrefetchingSequence(ThrowingEpochSlice(plan.epochBatches(0), shard: shard, of: shards), prefetch: 2) {
                let batch = try prepared.get()
                if batch.count == 0 { continue }
                let logits = try model(batch.tensor())
                let loss = try crossEntropy(logits, labels: batch.labels).item()
                lossSum += Double(loss) * Double(batch.count)
                result.top1Correct += try topKCorrect(logits, labels: batch.labels, k: 1)
                result.top5Correct += try topKCorrect(logits, labels: batch.labels, k: min(5, logits.shape[1]))
                result.images += batch.count
            }
        }
        result.loss = result.images > 0 ? lossSum / Double(result.images) : 0
        return result
    }
}

extension ImageBatch {
    /// The images as an NHWC tensor `[N, H, W, C]` (no gradient).
    public func tensor() throws -> Tensor {
        try Tensor(shape: [count, height, width, channels], data: images)
    }
}

extension EvaluationResult {
    /// The results of all ranks' parts added up (every rank gets the total).
    public func summed(over collective: any Collective) throws -> EvaluationResult {
        let sums = try collective.sum(
            [loss * Double(images), Double(top1Correct), Double(top5Correct), Double(images)], what: "the evaluation's results")
        let images = Int(sums[3])
        return EvaluationResult(
            loss: images > 0 ? sums[0] / Double(images) : 0, top1Correct: Int(sums[1]), top5Correct: Int(sums[2]),
            images: images)
    }

    /// `{"top1": …, "top5": …, "images": …}` (accuracies as fractions), plus the mean loss.
    public var json: String {
        JSONValue.object([("top1", .real(top1)), ("top5", .real(top5)), ("images", .integer(images)), ("loss", .real(loss))])
            .serialized(spaced: true)
    }
}

/// Model weights from a safetensors file: a training checkpoint of this library or any file with the PyTorch
/// state-dict names of the model (e.g. saved from the paper's PyTorch code with `safetensors.torch.save_file`).
public enum ModelWeights {
    /// Loads `url` into `model`. Entries under "optimizer." are ignored; a "module." prefix on every key (left
    /// by `torch.nn.DataParallel`) is removed. Every key of the model must be present with its shape, and no
    /// other key may be: the error names the file and each missing, unexpected or mismatched key.
    public static func load(_ url: URL, into model: Module) throws(TrainingError) {
        let file: SafeTensorsFile
        do {
            file = try SafeTensors.read(url)
        } catch {
            throw .badWeights(path: url.path, reason: "\(error)")
        }
        do {
            try model.loadStateDict(tensors(of: file))
        } catch {
            throw .badWeights(path: url.path, reason: "\(error)")
        }
    }

    /// The model's entries of a weights file: "optimizer." entries dropped, a "module." prefix on every key
    /// removed.
    public static func tensors(of file: SafeTensorsFile) -> [String: SafeTensors.TensorData] {
        var tensors = Checkpoint.splitOptimizer(file.tensors).model
        let prefix = "module."
        if !tensors.isEmpty && tensors.keys.allSatisfy({ $0.hasPrefix(prefix) }) {
            tensors = Dictionary(uniqueKeysWithValues: tensors.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
        }
        return tensors
    }
}
