import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reports the progress of an epoch: on a terminal a bar redrawn in place (images/s, ETA, running loss and
/// accuracy); otherwise, for logs and pipes, a plain line every `lineInterval` seconds and at the end.
public final class TrainingProgress {
    /// How the progress is shown.
    public enum Style: Sendable, Equatable {
        /// One line redrawn with a carriage return.
        case bar
        /// Whole lines, at most one per `lineInterval`.
        case lines
        /// Nothing.
        case silent
    }

    /// Where the text goes and how.
    public let style: Style
    /// Seconds between plain lines.
    public let lineInterval: Double
    private let write: (String) -> Void
    private let clock: () -> Double

    private var epoch = 0
    private var epochs = 0
    private var totalSteps = 0
    private var totalImages = 0
    private var started = 0.0
    private var lastShown = -Double.infinity
    private var lastWasBar = false

    /// A reporter writing through `write`; `clock` gives seconds (monotonic), replaceable for tests.
    public init(style: Style, lineInterval: Double = 30, write: @escaping (String) -> Void,
                clock: @escaping () -> Double = TrainingProgress.monotonicSeconds)
    {
        self.style = style
        self.lineInterval = lineInterval
        self.write = write
        self.clock = clock
    }

    /// Progress on standard error: a bar if it is a terminal (and TERM is not "dumb"), plain lines otherwise;
    /// `quiet` keeps only the messages (one line per epoch).
    public static func standardError(quiet: Bool = false) -> TrainingProgress {
        let terminal = isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
        let style: Style = terminal && !quiet ? .bar : .lines
        return TrainingProgress(style: style, lineInterval: quiet ? .infinity : 30) { text in
            FileHandle.standardError.write(Data(text.utf8))
        }
    }

    /// Seconds from the monotonic clock.
    public static func monotonicSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    /// Starts epoch `epoch` (1-based) of `epochs`, which has `steps` steps and `images` images in all.
    public func beginEpoch(_ epoch: Int, of epochs: Int, steps: Int, images: Int) {
        self.epoch = epoch
        self.epochs = epochs
        totalSteps = steps
        totalImages = images
        started = clock()
        lastShown = -Double.infinity
    }

    /// Reports that `step` steps (covering `images` images) of the epoch are done, with the running means.
    public func update(step: Int, images: Int, loss: Double, accuracy: Double) {
        let now = clock()
        let elapsed = now - started
        let done = step >= totalSteps
        switch style {
        case .silent:
            return
        case .bar:
            // A few redraws per second are enough for a person and cost nothing.
            guard done || now - lastShown >= 0.2 else { return }
            lastShown = now
            write("\r" + barLine(step: step, images: images, elapsed: elapsed, loss: loss, accuracy: accuracy)
                  + "\u{1B}[K")
            lastWasBar = true
        case .lines:
            if lastShown == -Double.infinity { lastShown = now }   // the first line comes after one interval
            guard !done, now - lastShown >= lineInterval else { return }
            lastShown = now
            write(plainLine(step: step, images: images, elapsed: elapsed, loss: loss, accuracy: accuracy) + "\n")
        }
    }

    /// Ends the bar's line (if one is shown) so that the next output starts on a fresh line.
    public func endEpoch() {
        if style == .bar && lastWasBar { write("\n") }
        lastWasBar = false
    }

    /// Prints a message on its own line, clearing a bar in progress first.
    public func message(_ text: String) {
        guard style != .silent else { return }
        if style == .bar && lastWasBar {
            write("\r\u{1B}[K")
            lastWasBar = false
        }
        write(text + "\n")
    }

    // MARK: Text

    func barLine(step: Int, images: Int, elapsed: Double, loss: Double, accuracy: Double) -> String {
        let width = 24
        let fraction = totalSteps > 0 ? min(1, Double(step) / Double(totalSteps)) : 1
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        return "epoch \(epoch)/\(epochs) [\(bar)] \(step)/\(totalSteps) " + figures(
            step: step, images: images, elapsed: elapsed, loss: loss, accuracy: accuracy)
    }

    func plainLine(step: Int, images: Int, elapsed: Double, loss: Double, accuracy: Double) -> String {
        "epoch \(epoch)/\(epochs) step \(step)/\(totalSteps) " + figures(
            step: step, images: images, elapsed: elapsed, loss: loss, accuracy: accuracy)
    }

    private func figures(step: Int, images: Int, elapsed: Double, loss: Double, accuracy: Double) -> String {
        let rate = elapsed > 0 ? Double(images) / elapsed : 0
        let remaining = step > 0 ? elapsed / Double(step) * Double(max(0, totalSteps - step)) : .nan
        return "loss \(String(format: "%.4f", loss)) acc \(String(format: "%.1f", 100 * accuracy))% "
            + "\(String(format: "%.0f", rate)) img/s ETA \(Self.duration(remaining))"
    }

    /// "m:ss" or "h:mm:ss"; "?" when unknown.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let total = Int(seconds.rounded())
        let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60)
        if hours > 0 { return String(format: "%d:%02d:%02d", hours, minutes, secs) }
        return String(format: "%d:%02d", minutes, secs)
    }
}
