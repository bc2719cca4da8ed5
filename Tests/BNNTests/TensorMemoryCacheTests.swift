import BNN
import Testing

@Suite("Tensor memory cache", .serialized)
struct TensorMemoryCacheTests {
    @Test("the limit reads back; limit 0 keeps nothing; every allocation is counted as a hit or a miss")
    func limitAndStatistics() throws {
        let before = Tensor.memoryCacheStatistics
        defer { Tensor.setMemoryCacheLimit(bytes: before.limit) }
        #expect(before.limit > 0, "a default limit (a quarter of physical memory)")

        Tensor.setMemoryCacheLimit(bytes: 0)
        _ = try Tensor.zeros(shape: [4096])
        let empty = Tensor.memoryCacheStatistics
        #expect(empty.limit == 0)
        #expect(empty.cachedBytes == 0, "with limit 0 every freed buffer goes back to the system")
        #expect(empty.hits + empty.misses >= before.hits + before.misses + 1)

        Tensor.setMemoryCacheLimit(bytes: 1 << 20)
        let limited = Tensor.memoryCacheStatistics
        #expect(limited.limit == 1 << 20)
        #expect(limited.cachedBytes <= 1 << 20)
        Tensor.setMemoryCacheLimit(bytes: -5)
        #expect(Tensor.memoryCacheStatistics.limit == 0, "a negative limit counts as 0")
    }
}
