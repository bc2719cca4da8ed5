import CKernels
import Foundation

/// Held by `Kernels.withSettings`: one caller at a time changes the process-wide settings.
private let settingsLock = NSRecursiveLock()

/// An instruction-set path of the binary kernels (`ck_isa`).
public enum KernelPath: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// Portable C.
    case scalar = 0
    /// AVX2, popcount by nibble lookup.
    case avx2 = 1
    /// AVX-512F with VPOPCNTDQ.
    case avx512 = 2

    /// The C value of this path.
    public var cValue: ck_isa {
        switch self {
        case .scalar: CK_ISA_SCALAR
        case .avx2: CK_ISA_AVX2
        case .avx512: CK_ISA_AVX512
        }
    }

    /// The path for a C value; nil for a value CKernels does not define.
    public init?(_ isa: ck_isa) {
        self.init(rawValue: Int(isa.rawValue))
    }

    /// Lower-case name, as accepted by the BNN_ISA environment variable ("scalar", "avx2", "avx512").
    public var name: String { String(cString: ck_isa_name(cValue)) }

    /// Whether this CPU and build can run the path.
    public var isSupported: Bool { ck_isa_supported(cValue) != 0 }

    public var description: String { name }
}

/// Process-wide settings of CKernels (kernel path, threads, OpenBLAS) and the Swift entry points of its
/// kernels. The settings are global to the process: changing them affects every later kernel call.
public enum Kernels {
    /// The path kernels use now: forced by `force(_:)`, else named by BNN_ISA, else the best supported.
    public static var isa: KernelPath {
        // ck_isa_active only returns values it defines.
        KernelPath(ck_isa_active()) ?? .scalar
    }

    /// The fastest path this CPU supports.
    public static var bestPath: KernelPath { KernelPath(ck_isa_best()) ?? .scalar }

    /// Every path this CPU supports, slowest first.
    public static var supportedPaths: [KernelPath] { KernelPath.allCases.filter(\.isSupported) }

    /// Makes later kernel calls in this process use `path`; throws if this CPU cannot run it.
    public static func force(_ path: KernelPath) throws {
        let status = ck_isa_force(path.cValue)
        if status == CK_ERR_UNSUPPORTED {
            throw KernelError.argument(
                "path", of: "Kernels.force",
                "is \(path.name), which this CPU does not support (supported: "
                    + supportedPaths.map(\.name).joined(separator: ", ") + ")",
                status: status)
        }
        try check(status, "Kernels.force(\(path.name))")
    }

    /// OpenMP threads the kernels use: the last `setThreads(_:)`, else OpenMP's default (OMP_NUM_THREADS).
    public static var threads: Int { Int(ck_get_num_threads()) }

    /// Sets the number of threads the kernels use (at least 1).
    public static func setThreads(_ count: Int) throws {
        guard let n = Int32(exactly: count), ck_set_num_threads(n) == CK_OK else {
            throw KernelError.argument(
                "count", of: "Kernels.setThreads", "must be between 1 and 4096, got \(count)",
                status: CK_ERR_INVALID_SIZE)
        }
    }

    /// Runs `body` with the kernel path and thread count given (nil: as they are), then restores the previous
    /// ones. Callers on different threads run one at a time, so a caller never sees another caller's settings
    /// in the middle of `body`; code that needs stable settings (a comparison of two runs, say) can call it
    /// with no arguments. `force(_:)` and `setThreads(_:)` called directly are not serialized.
    public static func withSettings<R>(path: KernelPath? = nil, threads: Int? = nil, _ body: () throws -> R) throws -> R {
        settingsLock.lock()
        defer { settingsLock.unlock() }
        let previousPath = ck_isa_active()
        let previousThreads = ck_get_num_threads()
        defer {
            _ = ck_isa_force(previousPath)
            _ = ck_set_num_threads(previousThreads)
        }
        if let path { try force(path) }
        if let threads { try setThreads(threads) }
        return try body()
    }

    /// The kernel family ("core") OpenBLAS runs, e.g. "SkylakeX"; "unavailable" if it cannot be loaded.
    public static var blasCore: String { String(cString: ck_blas_core()) }

    /// Loads OpenBLAS now (it is otherwise loaded by the first `sgemm`); throws if it cannot be found.
    public static func loadBLAS() throws {
        try check(ck_blas_load(), "Kernels.loadBLAS")
    }

    /// Sets OpenBLAS's own thread count (at least 1); throws if OpenBLAS cannot be loaded.
    public static func setBLASThreads(_ count: Int) throws {
        guard let n = Int32(exactly: count), (1...4096).contains(n) else {
            throw KernelError.argument(
                "count", of: "Kernels.setBLASThreads", "must be between 1 and 4096, got \(count)",
                status: CK_ERR_INVALID_SIZE)
        }
        try check(ck_blas_set_num_threads(n), "Kernels.setBLASThreads(\(count))")
    }

    /// Measures the in-register XNOR + popcount + add throughput of the active path with `threads` threads
    /// for about `seconds` (three runs, best kept), in binary multiply-accumulates per second.
    public static func popcountPeak(threads: Int, seconds: Double) throws -> Double {
        try measurePeak("Kernels.popcountPeak", threads: threads, seconds: seconds, ck_popcount_peak)
    }

    /// Measures the in-register float multiply-add throughput of the active path (the fused multiply-adds of the
    /// float convolution kernels) with `threads` threads for about `seconds` (three runs, best kept), in
    /// multiply-adds per second.
    public static func fmaPeak(threads: Int, seconds: Double) throws -> Double {
        try measurePeak("Kernels.fmaPeak", threads: threads, seconds: seconds, ck_fma_peak)
    }

    private static func measurePeak(
        _ operation: String, threads: Int, seconds: Double,
        _ measure: (Int32, Double, UnsafeMutablePointer<Double>) -> ck_status
    ) throws -> Double {
        guard let n = Int32(exactly: threads), (1...4096).contains(n) else {
            throw KernelError.argument(
                "threads", of: operation, "must be between 1 and 4096, got \(threads)", status: CK_ERR_INVALID_SIZE)
        }
        guard seconds > 0, seconds <= 3600 else {
            throw KernelError.argument(
                "seconds", of: operation, "must be in (0, 3600], got \(seconds)", status: CK_ERR_INVALID_SIZE)
        }
        var rate = 0.0
        try check(measure(n, seconds, &rate), "\(operation)(threads: \(threads), seconds: \(seconds))")
        return rate
    }
}

extension Kernels {
    /// The processor this process runs on, as benchmarks print it beside their figures (`ck_cpu_name`): the model
    /// name with its family and model numbers, e.g. "AMD EPYC (family 25, model 17)".
    public static var cpuDescription: String { String(cString: ck_cpu_name()) }
}
