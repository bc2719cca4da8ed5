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
        try Kernels.withSettings {
            for path in supported {
                try Kernels.force(path)
                #expect(Kernels.isa == path)
                #expect(ck_isa_active() == path.cValue)
            }
        }
        #expect(ck_isa_active() == previous)
    }

    @Test("threads: set and read back")
    func threads() throws {
        let previous = Kernels.threads
        #expect(previous >= 1)
        try Kernels.withSettings {
            for n in [1, 3, 2] {
                try Kernels.setThreads(n)
                #expect(Kernels.threads == n)
                #expect(ck_get_num_threads() == Int32(n))
            }
        }
        #expect(Kernels.threads == previous)
    }

    @Test("popcount peak is a positive finite rate on every path")
    func popcountPeak() throws {
        for path in Kernels.supportedPaths {
            try Kernels.withSettings(path: path) {
                for threads in [1, 2] {
                    let rate = try Kernels.popcountPeak(threads: threads, seconds: 0.02)
                    #expect(rate.isFinite && rate > 0, "\(path.name), \(threads) threads: \(rate)")
                }
            }
        }
    }
}
