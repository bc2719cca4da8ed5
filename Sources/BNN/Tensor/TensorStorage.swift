import Glibc
import Synchronization

/// The contiguous float memory behind one tensor, or several when a reshape shares it.
final class TensorStorage: @unchecked Sendable {
    /// First element; 64-byte aligned so C loops can use aligned vector loads.
    let pointer: UnsafeMutablePointer<Float>
    /// Elements the tensor may use.
    let count: Int
    private let bytes: Int

    /// Memory for `count` floats, contents undefined.
    init(uninitializedCount count: Int) {
        self.count = count
        (pointer, bytes) = BufferCache.shared.take(floats: count)
    }

    deinit { BufferCache.shared.give(pointer, bytes: bytes) }
}

/// A process-wide cache of freed tensor buffers, keyed by size.
///
/// Training allocates the same shapes every step, and most of them are far above the size where glibc's malloc
/// switches to mmap: without a cache each step would map fresh pages and take a page fault per 4 KiB.
/// The cache keeps buffers up to a byte limit and hands them back to the next request of the same rounded size.
final class BufferCache: Sendable {
    static let shared = BufferCache()

    private struct State {
        /// Free buffers by rounded byte size, as addresses (plain integers are Sendable; pointers are not).
        var free: [Int: [UInt]] = [:]
        var cachedBytes = 0
        var limit: Int
        var hits = 0
        var misses = 0
    }

    private let state: Mutex<State>

    private init() {
        // A quarter of physical memory: room for a training step's activations without starving the rest.
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        let physical = pages > 0 && pageSize > 0 ? pages * pageSize : 4 << 30
        state = Mutex(State(limit: physical / 4))
    }

    /// Rounds to 64 bytes for small buffers and to whole pages above, so near sizes share a bucket.
    private static func roundedBytes(floats: Int) -> Int {
        let bytes = max(floats, 1) * MemoryLayout<Float>.stride
        return bytes < 1 << 16 ? (bytes + 63) & ~63 : (bytes + 4095) & ~4095
    }

    func take(floats: Int) -> (UnsafeMutablePointer<Float>, Int) {
        let bytes = Self.roundedBytes(floats: floats)
        let reused: UInt? = state.withLock { state in
            guard let address = state.free[bytes]?.popLast() else {
                state.misses += 1
                return nil
            }
            state.cachedBytes -= bytes
            state.hits += 1
            return address
        }
        let raw =
            reused.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
            ?? UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        return (raw.bindMemory(to: Float.self, capacity: bytes / MemoryLayout<Float>.stride), bytes)
    }

    func give(_ pointer: UnsafeMutablePointer<Float>, bytes: Int) {
        let raw = UnsafeMutableRawPointer(pointer)
        let address = UInt(bitPattern: raw)
        let kept = state.withLock { state in
            guard state.cachedBytes + bytes <= state.limit else { return false }
            state.free[bytes, default: []].append(address)
            state.cachedBytes += bytes
            return true
        }
        if !kept { raw.deallocate() }
    }

    /// Sets the most bytes kept for reuse and frees what exceeds it.
    func setLimit(_ bytes: Int) {
        let released: [UInt] = state.withLock { state in
            state.limit = max(0, bytes)
            var released: [UInt] = []
            for size in state.free.keys.sorted(by: >) where state.cachedBytes > state.limit {
                while state.cachedBytes > state.limit, let address = state.free[size]?.popLast() {
                    state.cachedBytes -= size
                    released.append(address)
                }
            }
            return released
        }
        for address in released { UnsafeMutableRawPointer(bitPattern: address)?.deallocate() }
    }

    /// Bytes cached now, the limit, and how many requests were served from the cache or not.
    var statistics: (cachedBytes: Int, limit: Int, hits: Int, misses: Int) {
        state.withLock { ($0.cachedBytes, $0.limit, $0.hits, $0.misses) }
    }
}

extension Tensor {
    /// Sets the most memory (bytes) kept for reuse after tensors are freed (default: a quarter of physical
    /// memory); 0 returns every freed buffer to the system at once.
    public static func setMemoryCacheLimit(bytes: Int) { BufferCache.shared.setLimit(bytes) }

    /// Bytes held for reuse, the limit, and how many allocations the cache served (hits) or not (misses).
    public static var memoryCacheStatistics: (cachedBytes: Int, limit: Int, hits: Int, misses: Int) {
        BufferCache.shared.statistics
    }
}
