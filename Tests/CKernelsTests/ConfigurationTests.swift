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
        try Kernels.withSettings {
            let previous = ck_isa_active()
            for path in supported {
                try Kernels.withSettings(path: path) {
                    #expect(Kernels.isa == path)
                    #expect(ck_isa_active() == path.cValue)
                }
                #expect(ck_isa_active() == previous, "withSettings restores the previous path")
            }
        }
    }

    @Test("threads: set and read back")
    func threads() throws {
        try Kernels.withSettings {
            let previous = Kernels.threads
            #expect(previous >= 1)
            for n in [1, 3, 2] {
                try Kernels.withSettings(threads: n) {
                    #expect(Kernels.threads == n)
                    #expect(ck_get_num_threads() == Int32(n))
                }
                #expect(Kernels.threads == previous, "withSettings restores the previous count")
            }
        }
    }

    @Test("popcount and multiply-add peaks are positive finite rates on every path")
    func popcountPeak() throws {
        for path in Kernels.supportedPaths {
            try Kernels.withSettings(path: path) {
                for threads in [1, 2] {
                    let rate = try Kernels.popcountPeak(threads: threads, seconds: 0.02)
                    #expect(rate.isFinite && rate > 0, "\(path.name), \(threads) threads: \(rate)")
                    let fma = try Kernels.fmaPeak(threads: threads, seconds: 0.02)
                    #expect(fma.isFinite && fma > 0, "FMA, \(path.name), \(threads) threads: \(fma)")
                }
            }
        }
    }

    @Test("the CPU name is read once: non-empty, the same on every call, with family and model on Linux x86")
    func cpuName() {
        let first = String(cString: ck_cpu_name())
        #expect(!first.isEmpty && first == Kernels.cpuDescription)
        #expect(ck_cpu_name() == ck_cpu_name(), "one string for the process")
        #if os(Linux) && arch(x86_64)
        #expect(first.contains("(family ") && first.contains(", model "), "\(first)")
        #endif
    }

    @Test("popcount peak with far more threads than processors is a positive finite rate")
    func popcountPeakOversubscribed() throws {
        // Each thread's share is scaled by processors / threads (ck_popcount_peak), so that 1,024 threads on two
        // processors run about as long as asked instead of taking turns for seconds; how long it takes is for the
        // benchmark to show, not for a test to assert.
        let rate = try Kernels.popcountPeak(threads: 1024, seconds: 0.02)
        #expect(rate.isFinite && rate > 0)
    }
}
