/// Why training, a checkpoint or a run's files could not go on, with the place (file, epoch, step, tensor)
/// and what a user can do about it.
public enum TrainingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// The loss of a step is NaN or infinite; nothing after the last good checkpoint was saved.
    case nonFiniteLoss(epoch: Int, step: Int, loss: Float, checkpoint: String?)
    /// A parameter holds NaN or infinity at the end of an epoch; the checkpoint was not overwritten.
    case nonFiniteParameter(epoch: Int, name: String, checkpoint: String?)
    /// The validation loss is NaN or infinite; the checkpoint was not overwritten.
    case nonFiniteValidation(epoch: Int, loss: Double, checkpoint: String?)
    /// A checkpoint file lacks something the trainer needs, or holds something it cannot use.
    case badCheckpoint(path: String, reason: String)
    /// A checkpoint was written by a run with a different configuration.
    case checkpointMismatch(path: String, key: String, checkpoint: String, requested: String)
    /// A weights file does not fit the model (missing, unexpected or mismatched keys are named).
    case badWeights(path: String, reason: String)
    /// A line of `log.jsonl` could not be read.
    case malformedLog(place: String, reason: String)
    /// A file of the run could not be read or written.
    case io(path: String, reason: String)
    /// Another trainer (in this or another process) holds the run directory's lock; `pid` is the PID it recorded
    /// in the lock file, nil if none could be read.
    case runDirectoryInUse(path: String, pid: Int32?)

    public var description: String {
        switch self {
        case .invalidConfiguration(let message):
            return message
        case .nonFiniteLoss(let epoch, let step, let loss, let checkpoint):
            return "training stopped: the loss is \(loss.isNaN ? "NaN" : "\(loss)") at epoch \(epoch), step \(step) (a diverging run: "
                + "try a smaller learning rate or a warm-up). " + Self.kept(checkpoint)
        case .nonFiniteParameter(let epoch, let name, let checkpoint):
            return "training stopped: parameter \"\(name)\" holds NaN or infinity at the end of epoch \(epoch). "
                + Self.kept(checkpoint)
        case .nonFiniteValidation(let epoch, let loss, let checkpoint):
            return "training stopped: the validation loss is \(loss) after epoch \(epoch). " + Self.kept(checkpoint)
        case .badCheckpoint(let path, let reason):
            return "checkpoint \(path): \(reason)"
        case .checkpointMismatch(let path, let key, let checkpoint, let requested):
            return "checkpoint \(path) was written with \(key) = \(checkpoint), but this run asks for \(requested); "
                + "resume with the same \(key), or start a new run in another directory"
        case .badWeights(let path, let reason):
            return "weights file \(path): \(reason)"
        case .malformedLog(let place, let reason):
            return "training log \(place): \(reason)"
        case .io(let path, let reason):
            return "\(path): \(reason)"
        case .runDirectoryInUse(let path, let pid):
            let holder = pid.map { "process \($0)" } ?? "another process"
            return "run directory \(path) is in use: \(holder) is training into it (it holds \(path)/\(RunDirectoryLock.fileName)). "
                + "Two runs in one directory would mix their logs and checkpoints: wait for it to finish or stop it, "
                + "or choose another output directory"
        }
    }

    private static func kept(_ checkpoint: String?) -> String {
        guard let checkpoint else { return "No checkpoint was written (no epoch completed)." }
        return "The last good checkpoint is kept unchanged: \(checkpoint)"
    }
}
