import BNN
import CKernels
import Testing

extension EveryPath {
    @Test("paths: scalar is always supported, the best path is the fastest supported, force switches paths")
    func paths() throws {
        let supported = Kernels.supportedPaths
        #expect(supported.first == .scalar)
        #expect(supported.last == Kernels.bestPath)
        #expect(KernelPath(ck_isa_best()) == Kernels.bestPath)
        for path in KernelPath.allCases {
            #expect(path.isSupported == (ck_isa_supported(path.cValue) != 0))
            #expect(path.name == ["scalar", "avx2", "avx512"][path.rawValue])
            #expect(KernelPath(path.cValue) == path)
        }
        let previous = ck_isa_active()
        defer { _ = ck_isa_force(previous) }
        for path in supported {
            try Kernels.force(path)
            #expect(Kernels.isa == path)
            #expect(ck_isa_active() == path.cValue)
        }
    }

    @Test("threads: set and read back")
    func threads() throws {
        let previous = Kernels.threads
        #expect(previous >= 1)
        defer { _ = ck_set_num_threads(Int32(previous)) }
        for n in [1, 3, 2] {
            try Kernels.setThreads(n)
            #expect(Kernels.threads == n)
            #expect(ck_get_num_threads() == Int32(n))
        }
    }

    @Test("popcount peak is a positive finite rate on every path")
    func popcountPeak() throws {
        let previous = ck_isa_active()
        defer { _ = ck_isa_force(previous) }
        for path in Kernels.supportedPaths {
            try Kernels.force(path)
            for threads in [1, 2] {
                let rate = try Kernels.popcountPeak(threads: threads, seconds: 0.02)
                #expect(rate.isFinite && rate > 0, "\(path.name), \(threads) threads: \(rate)")
            }
        }
    }

    @Test("popcount peak with far more threads than processors lasts about as long as asked")
    func popcountPeakOversubscribed() throws {
        // Each thread's share used to be sized for a processor of its own, so 1,024 threads on 2 processors took turns
        // far longer than asked: 6.6 s measured here for three repetitions of 0.02 s, 0.2 s with the shares scaled
        // (and minutes before the first line of `bnn bench kernels --threads 1000`).
        let clock = ContinuousClock()
        let start = clock.now
        let rate = try Kernels.popcountPeak(threads: 1024, seconds: 0.02)
        let elapsed = start.duration(to: clock.now)
        #expect(rate.isFinite && rate > 0)
        #expect(elapsed < .seconds(3), "\(elapsed)")
    }
}
