import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whether a batch size fits in this machine's memory, decided before the first allocation.
///
/// A batch size within the options' limit can still ask for more memory than the machine has: a training step
/// keeps every activation of the forward pass for the backward pass, about 5 MB per 32×32 image for ResNet-20, so a
/// batch of 65,536 would need some 350 GB. Swift cannot recover from a failed allocation (the process aborts) and
/// Linux may instead let the allocation succeed and kill the process later, so the check comes first: the traced
/// graph gives the activation sizes per image, and a batch whose estimate exceeds the machine's memory is refused
/// with the estimate, the memory and the largest batch that would fit.
///
/// The training estimate (each node's output and its gradient, as float32) came within 10 % of the measured growth
/// of the peak resident memory per image of `bnn bench train` for every registered network (ResNet-20: 5.33 MB
/// estimated, 5.5 MB measured; ResNet-18: 16.3 against 18.0; VGG-small: 11.6 against 13.1; ResNet-20 Bi-Real:
/// 6.0 against 5.7). A batch is refused only when the estimate exceeds the whole memory of the machine, which it then
/// could not get; an accepted batch may still be too large for a machine whose memory is in use by others.
public enum MemoryEstimate {
    /// Bytes of the activations one image needs through a training step of the traced graph: each node's output
    /// kept for the backward pass and its gradient, as float32.
    public static func trainingBytesPerImage(_ graph: NetworkGraph) -> Int {
        2 * 4 * graph.nodes.reduce(0) { $0 + $1.shape.reduce(1, *) }
    }

    /// Bytes one image needs through an evaluation-mode forward pass (no gradients): the two largest activations,
    /// an operation's input and output, which are alive at the same time.
    public static func evaluationBytesPerImage(_ graph: NetworkGraph) -> Int {
        let sizes = graph.nodes.map { $0.shape.reduce(1, *) }.sorted(by: >)
        return 4 * sizes.prefix(2).reduce(0, +)
    }

    /// This machine's memory for the process: the physical memory, or the control group's limit when it is lower;
    /// nil when neither can be read.
    public static var availableBytes: Int? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        var result: Int? = pages > 0 && pageSize > 0 ? pages.multipliedReportingOverflow(by: pageSize).partialValue : nil
        for file in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            // A control group without a limit says "max" (v2) or a huge number (v1); either leaves the result alone.
            guard let data = try? FileAccess.readRegularFile(file, limit: 64),
                  let limit = Int(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
                  limit > 0
            else { continue }
            result = min(result ?? limit, limit)
        }
        return result
    }

    /// Throws `TrainingError.invalidConfiguration` when `batchSize` images at `bytesPerImage` each exceed
    /// `available` bytes (this machine's memory by default), naming the need, the memory and the largest batch
    /// that fits; `what` says what runs ("resnet20 1W1A training").
    public static func requireFits(
        batchSize: Int, bytesPerImage: Int, what: String, available: Int? = MemoryEstimate.availableBytes
    ) throws(TrainingError) {
        guard let available, bytesPerImage > 0 else { return }
        let (need, overflow) = batchSize.multipliedReportingOverflow(by: bytesPerImage)
        guard overflow || need > available else { return }
        let largest = max(1, available / bytesPerImage)
        throw .invalidConfiguration(
            "batch size \(batchSize) is too large for this machine: \(what) would need about "
                + "\(overflow ? "more than \(gigabytes(Int.max))" : gigabytes(need)) of memory (\(megabytes(bytesPerImage)) per image, "
                + "estimated from the network's activations), and the machine has \(gigabytes(available)); the largest batch "
                + "that could fit is about \(largest)")
    }

    /// Traces `model` on one `inputShape` image and checks `batchSize` images of a training step (`training`) or
    /// of an evaluation against the machine's memory. A model that cannot be traced is not checked (its size is
    /// unknown, and the trace's own error belongs to whatever uses the graph).
    public static func requireFits(
        _ model: Module, inputShape: [Int], batchSize: Int, training: Bool, what: String,
        available: Int? = MemoryEstimate.availableBytes
    ) throws(TrainingError) {
        guard let graph = try? NetworkGraph.trace(model, inputShape: inputShape) else { return }
        let perImage = training ? trainingBytesPerImage(graph) : evaluationBytesPerImage(graph)
        try requireFits(batchSize: batchSize, bytesPerImage: perImage, what: what, available: available)
    }

    private static func gigabytes(_ bytes: Int) -> String { String(format: "%.1f GB", Double(bytes) / 1e9) }
    private static func megabytes(_ bytes: Int) -> String { String(format: "%.2f MB", Double(bytes) / 1e6) }
}
