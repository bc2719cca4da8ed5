import Foundation
import Testing
@testable import BNN

/// A source whose batch i is i itself, for checking order and completeness of the prefetching machinery.
private struct CountingSource: IndexedBatchSource {
    let count: Int
    func batch(at index: Int) -> Int { index }
}

@Suite("Data: background batch loader")
struct DataBatchLoaderTests {
    @Test("the parallel loader yields exactly the sequential batches", arguments: [1, 2])
    func sameAsSequential(prefetch: Int) throws {
        let data = try CIFAR10(directory: DataFixtures.cifar10SampleDirectory)
        let batches = try CIFAR10Batches.training(data.train, batchSize: 256, seed: 2024)
        let loader = BatchLoader(batches, prefetch: prefetch)
        for epoch in [0, 5] {
            let epochBatches = batches.batches(epoch: epoch)
            var received = 0
            for (index, batch) in loader.epoch(epoch).enumerated() {
                #expect(DataFixtures.batchDifference(batch, epochBatches.batch(at: index)) == nil, "epoch \(epoch) batch \(index)")
                received += 1
            }
            #expect(received == 8)   // 7 × 256 + 208: the partial batch is kept
        }
    }

    @Test("evaluation through the loader equals the plain evaluation batches")
    func evaluationThroughLoader() throws {
        let data = try CIFAR10(directory: DataFixtures.cifar10SampleDirectory)
        let batches = try CIFAR10Batches.evaluation(data.test, batchSize: 128)
        let loaded = Array(BatchLoader(batches, prefetch: 2).epoch(0))
        let plain = Array(batches.batches(epoch: 0))
        #expect(loaded.count == plain.count)
        #expect(zip(loaded, plain).allSatisfy { DataFixtures.batchDifference($0, $1) == nil })
        #expect(loaded.map(\.count) == [128, 128, 128, 116])
        #expect(loaded.flatMap(\.labels) == data.test.labels.map(Int.init))
    }

    @Test("order and completeness over many small batches; empty source; early exit")
    func prefetchingMachinery() {
        for prefetch in [1, 2, 5] {
            #expect(Array(PrefetchingSequence(CountingSource(count: 1000), prefetch: prefetch)) == Array(0..<1000))
        }
        #expect(Array(PrefetchingSequence(CountingSource(count: 0))).isEmpty)
        // Leaving the loop early must stop the producer; starting again works and starts from the beginning.
        for _ in 0..<20 {
            var seen: [Int] = []
            for value in PrefetchingSequence(CountingSource(count: 100_000), prefetch: 1) {
                seen.append(value)
                if value == 3 { break }
            }
            #expect(seen == [0, 1, 2, 3])
        }
        // A slow consumer (doing work between batches) still sees every batch once, in order.
        var total = 0
        var previous = -1
        for value in PrefetchingSequence(CountingSource(count: 50), prefetch: 2) {
            #expect(value == previous + 1)
            previous = value
            total += (0..<2000).reduce(0) { $0 &+ $1 &* value }
        }
        #expect(previous == 49)
        #expect(total != 0)
    }
}
