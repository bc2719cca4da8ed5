import CKernels

/// Averages the parameters' gradients over the ranks during the backward pass.
///
/// The parameters are grouped into buckets of about `bucketBytes`, in reverse order of registration, which is
/// roughly the order in which the backward pass completes their gradients. When the last gradient of a bucket is
/// final, the bucket is copied into one contiguous buffer (each gradient scaled by this rank's share of the batch)
/// and its sum over the ranks starts; the backward pass goes on meanwhile, and `finish()` waits for the sums and
/// writes them back. Ranks with equal shares get the mean of their gradients, and in general
/// Σ_r (n_r / N)·g_r: the gradient of the mean loss over the whole batch of N images.
final class GradientAverager {
    /// A run of consecutive parameters reduced together.
    private final class Bucket {
        let parameters: [Tensor]
        let offsets: [Int]
        /// The bucket's gradients side by side, summed in place; owned here so its address never changes while a
        /// sum is in flight.
        let buffer: UnsafeMutableBufferPointer<Float>
        var pending: Int
        var ticket: CollectiveTicket?

        init(parameters: [Tensor]) {
            self.parameters = parameters
            var offsets: [Int] = []
            var total = 0
            for parameter in parameters {
                offsets.append(total)
                total += parameter.count
            }
            self.offsets = offsets
            buffer = .allocate(capacity: total)
            buffer.initialize(repeating: 0)
            pending = parameters.count
        }

        deinit { buffer.deallocate() }
    }

    let collective: any Collective
    private let buckets: [Bucket]
    /// Where each parameter lives: (bucket, index in it).
    private let place: [ObjectIdentifier: (bucket: Int, index: Int)]
    /// This rank's share of the step's images, n_r / N.
    private var scale: Float = 1
    /// Buckets started, in order; every rank starts them in the same order.
    private var started: [Int] = []

    /// Bytes summed per step (all buckets).
    let bytesPerStep: Int
    /// Seconds spent in `finish()` waiting for sums the backward pass did not hide (and for slower ranks), summed
    /// over steps.
    private(set) var exposedSeconds = 0.0
    /// Bytes whose sum had completed when the backward pass ended, summed over steps.
    private(set) var bytesSummedDuringBackward = 0

    init(parameters: [Tensor], collective: any Collective, bucketBytes: Int = 1 << 19) {
        self.collective = collective
        var buckets: [Bucket] = []
        var current: [Tensor] = []
        var bytes = 0
        for parameter in parameters.reversed() {
            current.append(parameter)
            bytes += parameter.count * MemoryLayout<Float>.stride
            if bytes >= bucketBytes {
                buckets.append(Bucket(parameters: current))
                current = []
                bytes = 0
            }
        }
        if !current.isEmpty { buckets.append(Bucket(parameters: current)) }
        self.buckets = buckets
        var place: [ObjectIdentifier: (bucket: Int, index: Int)] = [:]
        for (b, bucket) in buckets.enumerated() {
            for (i, parameter) in bucket.parameters.enumerated() { place[ObjectIdentifier(parameter)] = (b, i) }
        }
        self.place = place
        bytesPerStep = buckets.reduce(0) { $0 + $1.buffer.count * MemoryLayout<Float>.stride }
    }

    /// The number of buckets.
    var bucketCount: Int { buckets.count }

    /// Prepares a step in which this rank holds `share` (n_r / N) of the batch.
    func begin(share: Float) {
        scale = share
        started.removeAll(keepingCapacity: true)
        for bucket in buckets {
            bucket.pending = bucket.parameters.count
            bucket.ticket = nil
        }
    }

    /// Called by the backward pass when `tensor`'s gradient is final; starts its bucket's sum when it completes it.
    func gradientReady(_ tensor: Tensor) throws {
        guard let (b, _) = place[ObjectIdentifier(tensor)] else { return }
        let bucket = buckets[b]
        bucket.pending -= 1
        if bucket.pending == 0 { try start(b) }
    }

    /// Lets started sums advance (called between the backward pass's ops).
    func progress() throws {
        for b in started {
            if let ticket = buckets[b].ticket, try !collective.isComplete(ticket) { return }
        }
    }

    /// Starts the buckets no gradient completed (parameters the step did not reach contribute zeros), waits for
    /// every sum and writes the averaged gradients back.
    func finish() throws {
        // What the backward pass hid: the buckets whose sums are already done when it ends.
        for b in started {
            if let ticket = buckets[b].ticket, try collective.isComplete(ticket) {
                bytesSummedDuringBackward += buckets[b].buffer.count * MemoryLayout<Float>.stride
            }
        }
        for b in buckets.indices where buckets[b].ticket == nil && !started.contains(b) { try start(b) }
        let clock = TrainingProgress.monotonicSeconds()
        for b in started {
            let bucket = buckets[b]
            if let ticket = bucket.ticket {
                try collective.wait(ticket, what: "the gradient sum of bucket \(b + 1) of \(buckets.count)")
            }
        }
        exposedSeconds += TrainingProgress.monotonicSeconds() - clock
        for bucket in buckets {
            for (parameter, offset) in zip(bucket.parameters, bucket.offsets) where parameter.count > 0 {
                if parameter.grad == nil { parameter.grad = Tensor(uninitializedShape: parameter.shape) }
                parameter.grad!.storage.pointer.update(from: bucket.buffer.baseAddress! + offset, count: parameter.count)
            }
        }
    }

    private func start(_ b: Int) throws {
        let bucket = buckets[b]
        do {
            for (parameter, offset) in zip(bucket.parameters, bucket.offsets) where parameter.count > 0 {
                let destination = bucket.buffer.baseAddress! + offset
                if let grad = parameter.grad {
                    // beta 0: the destination is only written. Scaling by a power of two (n_r / N with equal
                    // shares of a power-of-two batch) is exact.
                    _ = ck_axpby_f32(Int64(parameter.count), scale, grad.storage.pointer, 0, destination)
                } else {
                    destination.initialize(repeating: 0, count: parameter.count)
                }
            }
        }
        bucket.ticket = try collective.startSum(bucket.buffer)
        started.append(b)
    }
}
