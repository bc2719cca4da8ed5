import Foundation

/// The figures of one training epoch: one line of `log.jsonl`.
///
/// Values that do not apply are nil and written as JSON `null`: `o` for estimators without a power schedule,
/// the indicators for a model without binary convolutions, the validation figures when there is no
/// validation split. Non-finite numbers are also written as `null` (JSON has no NaN).
public struct EpochRecord: Sendable, Equatable {
    /// The epoch, counted from 1 (after epoch `n`, `n` epochs are complete).
    public var epoch: Int
    /// The learning rate used throughout the epoch.
    public var learningRate: Double
    /// ReSTE's power o during the epoch.
    public var o: Double?
    /// Mean training loss over the epoch's steps (each step's mean over its batch).
    public var trainLoss: Double
    /// Fraction of training images classified correctly during the epoch (augmented, training mode).
    public var trainAccuracy: Double
    /// Mean loss over the validation images, in evaluation mode.
    public var validationLoss: Double?
    /// Top-1 accuracy on the validation images.
    public var validationAccuracy: Double?
    /// Estimating error (docs/method.md §3) after the epoch's last step.
    public var estimatingError: Double?
    /// Gradient stability (docs/method.md §3) after the epoch's last step.
    public var gradientStability: Double?
    /// Estimating error averaged over the epoch's steps.
    public var estimatingErrorMean: Double?
    /// Gradient stability averaged over the epoch's steps.
    public var gradientStabilityMean: Double?
    /// Wall-clock seconds of the epoch's training steps (evaluation excluded).
    public var seconds: Double
    /// Training images per second over the epoch's steps.
    public var imagesPerSecond: Double
    /// Optimizer steps in the epoch.
    public var steps: Int
    /// Training images in the epoch.
    public var images: Int

    /// A record with every figure given.
    public init(
        epoch: Int, learningRate: Double, o: Double?, trainLoss: Double, trainAccuracy: Double,
        validationLoss: Double?, validationAccuracy: Double?, estimatingError: Double?, gradientStability: Double?,
        estimatingErrorMean: Double?, gradientStabilityMean: Double?, seconds: Double, imagesPerSecond: Double,
        steps: Int, images: Int
    ) {
        self.epoch = epoch
        self.learningRate = learningRate
        self.o = o
        self.trainLoss = trainLoss
        self.trainAccuracy = trainAccuracy
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
        self.estimatingError = estimatingError
        self.gradientStability = gradientStability
        self.estimatingErrorMean = estimatingErrorMean
        self.gradientStabilityMean = gradientStabilityMean
        self.seconds = seconds
        self.imagesPerSecond = imagesPerSecond
        self.steps = steps
        self.images = images
    }

    /// The record as one line of JSON (no newline), keys in a fixed order. Numbers are written in their
    /// shortest form that reads back to the same `Double`, so a log compares bit for bit after a round trip.
    public var jsonLine: String {
        JSONValue.object([
            ("epoch", .integer(epoch)),
            ("lr", .real(learningRate)),
            ("o", .real(o)),
            ("train_loss", .real(trainLoss)),
            ("train_acc", .real(trainAccuracy)),
            ("val_loss", .real(validationLoss)),
            ("val_acc", .real(validationAccuracy)),
            ("estimating_error", .real(estimatingError)),
            ("gradient_stability", .real(gradientStability)),
            ("estimating_error_mean", .real(estimatingErrorMean)),
            ("gradient_stability_mean", .real(gradientStabilityMean)),
            ("seconds", .real(seconds)),
            ("images_per_second", .real(imagesPerSecond)),
            ("steps", .integer(steps)),
            ("images", .integer(images)),
        ]).serialized(spaced: true)
    }

    /// Parses one line written by `jsonLine` (extra keys are ignored; `line` names the place in errors).
    public init(jsonLine text: String, place: String) throws(TrainingError) {
        let decoded: DecodedLine
        do {
            decoded = try JSONDecoder().decode(DecodedLine.self, from: Data(text.utf8))
        } catch {
            throw .malformedLog(place: place, reason: Self.describe(error))
        }
        self.init(
            epoch: decoded.epoch, learningRate: decoded.lr ?? .nan, o: decoded.o,
            trainLoss: decoded.train_loss ?? .nan, trainAccuracy: decoded.train_acc ?? .nan,
            validationLoss: decoded.val_loss, validationAccuracy: decoded.val_acc,
            estimatingError: decoded.estimating_error, gradientStability: decoded.gradient_stability,
            estimatingErrorMean: decoded.estimating_error_mean, gradientStabilityMean: decoded.gradient_stability_mean,
            seconds: decoded.seconds ?? .nan, imagesPerSecond: decoded.images_per_second ?? .nan,
            steps: decoded.steps ?? 0, images: decoded.images ?? 0)
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing key \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "key \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\": \(context.debugDescription)"
        case DecodingError.dataCorrupted(let context): return "not valid JSON (\(context.debugDescription))"
        default: return "\(error)"
        }
    }

    // The names are the file's keys.
    private struct DecodedLine: Decodable {
        var epoch: Int
        var lr: Double?
        var o: Double?
        var train_loss: Double?
        var train_acc: Double?
        var val_loss: Double?
        var val_acc: Double?
        var estimating_error: Double?
        var gradient_stability: Double?
        var estimating_error_mean: Double?
        var gradient_stability_mean: Double?
        var seconds: Double?
        var images_per_second: Double?
        var steps: Int?
        var images: Int?
    }
}

/// `RUN_DIR/log.jsonl`: one `EpochRecord` per line, appended as epochs finish.
public final class TrainingLog {
    /// The file.
    public let url: URL
    /// The records in the file, in order.
    public private(set) var records: [EpochRecord]

    /// Opens the log of a run that has completed `completedEpochs` epochs: keeps the lines of epochs up to
    /// that one and drops later lines (written before an interruption the checkpoint does not cover), so the
    /// file again describes exactly the run being continued. A missing file starts empty. The file is
    /// rewritten atomically when lines are dropped.
    public init(url: URL, completedEpochs: Int) throws(TrainingError) {
        self.url = url
        let existing = try TrainingLog.read(url: url, missingIsEmpty: true)
        records = existing.filter { $0.epoch <= completedEpochs }
        if records.count != existing.count || !FileManager.default.fileExists(atPath: url.path) {
            try rewrite()
        }
    }

    /// Appends one line and flushes it to the file.
    public func append(_ record: EpochRecord) throws(TrainingError) {
        do {
            try FileAccess.append(Array((record.jsonLine + "\n").utf8), to: url.path)
        } catch {
            throw .io(path: url.path, reason: "cannot append to the log: \(error.reason)")
        }
        records.append(record)
    }

    /// Every record of a log file; `missingIsEmpty` treats an absent file as an empty log.
    public static func read(url: URL, missingIsEmpty: Bool = false) throws(TrainingError) -> [EpochRecord] {
        let data: Data
        do {
            data = try FileAccess.readRegularFile(url.path)
        } catch {
            if missingIsEmpty && !FileManager.default.fileExists(atPath: url.path) { return [] }
            throw .io(path: url.path, reason: "cannot read the log: \(error.reason)")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw .malformedLog(place: url.path, reason: "not valid UTF-8 text")
        }
        var records: [EpochRecord] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            records.append(try EpochRecord(jsonLine: String(line), place: "\(url.path), line \(index + 1)"))
        }
        return records
    }

    private func rewrite() throws(TrainingError) {
        let text = records.map { $0.jsonLine + "\n" }.joined()
        do {
            try FileAccess.writeAtomically([Array(text.utf8)], to: url.path)
        } catch {
            throw .io(path: url.path, reason: "cannot write the log: \(error.reason)")
        }
    }
}
