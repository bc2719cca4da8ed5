import Foundation

/// Prepares the next batches on a background thread while the caller trains on the current one.
///
/// One producer thread builds batches strictly in index order into a bounded queue (`prefetch` batches),
/// so the sequence of batches is exactly `CIFAR10Batches.batches(epoch:)`, whatever the timing.
/// `for batch in loader.epoch(e) { ... }` blocks only when the next batch is not ready yet; leaving the
/// loop early stops the producer.
public struct BatchLoader: Sendable {
    /// The pipeline whose batches are prepared.
    public let batches: CIFAR10Batches
    /// How many finished batches may wait in the queue (at least 1).
    public let prefetch: Int

    /// A loader over `batches`; `prefetch` below 1 is raised to 1.
    public init(_ batches: CIFAR10Batches, prefetch: Int = 2) {
        self.batches = batches
        self.prefetch = Swift.max(1, prefetch)
    }

    /// The batches of `epoch`, prepared ahead on a background thread.
    public func epoch(_ epoch: Int) -> PrefetchingSequence<CIFAR10EpochBatches> {
        PrefetchingSequence(batches.batches(epoch: epoch), prefetch: prefetch)
    }
}

/// Any `IndexedBatchSource` iterated with its batches built ahead on a background thread.
public struct PrefetchingSequence<Source: IndexedBatchSource>: Sequence, Sendable {
    /// The batches, in order.
    public let source: Source
    /// Queue capacity (at least 1).
    public let prefetch: Int

    /// Wraps `source`; the producer thread starts when iteration starts.
    public init(_ source: Source, prefetch: Int = 2) {
        self.source = source
        self.prefetch = Swift.max(1, prefetch)
    }

    /// Starts the producer thread for this iteration.
    public func makeIterator() -> PrefetchingIterator<Source> {
        PrefetchingIterator(source: source, prefetch: prefetch)
    }

    public var underestimatedCount: Int { source.count }
}

/// The consumer side of a `PrefetchingSequence`: `next()` waits for the producer's next batch.
/// Dropping the iterator cancels the producer.
public final class PrefetchingIterator<Source: IndexedBatchSource>: IteratorProtocol {
    private let queue: PrefetchQueue<Source.Batch>

    init(source: Source, prefetch: Int) {
        let queue = PrefetchQueue<Source.Batch>(capacity: prefetch)
        self.queue = queue
        let thread = Thread {
            for index in 0..<source.count {
                if queue.isCancelled { return }
                guard queue.put(source.batch(at: index)) else { return }
            }
            queue.finish()
        }
        thread.name = "BNN batch prefetch"
        thread.start()
    }

    deinit { queue.cancel() }

    /// The next batch, waiting for the producer if needed; nil after the last one.
    public func next() -> Source.Batch? { queue.take() }
}

/// A bounded first-in first-out handoff between one producer and one consumer thread. All state is
/// guarded by `condition`, which is what makes the unchecked Sendable conformance sound.
final class PrefetchQueue<Element: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Element] = []
    private var finished = false
    private var cancelled = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// Waits for room, then appends; false if the consumer has gone away.
    func put(_ item: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count >= capacity && !cancelled { condition.wait() }
        if cancelled { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// Waits for an item; nil once the producer has finished and the queue is drained.
    func take() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !finished && !cancelled { condition.wait() }
        if items.isEmpty { return nil }
        let item = items.removeFirst()
        condition.broadcast()
        return item
    }

    func finish() {
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    func cancel() {
        condition.lock()
        cancelled = true
        items.removeAll()
        condition.broadcast()
        condition.unlock()
    }
}
