import ArgumentParser
import CKernels

/// Options of every benchmark: threads, output format, length of the run.
public struct BenchmarkOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads for the binary kernels and OpenBLAS (default: all the kernels would use, \(ck_get_num_threads()) here).")
    public var threads: Int?

    @Flag(help: "Print one JSON object instead of a table.")
    public var json = false

    @Flag(help: "Fewer and shorter repetitions: a smoke run for CI, figures only indicative.")
    public var quick = false

    public init() {}

    public func validate() throws {
        // The wording of the `bnn` commands' checks (BNN's `Limits`, which this target does not import). The value is
        // parsed unconditionally so that "-2" reaches this check instead of reading as a missing value; 4096 is the C
        // kernels' own limit.
        if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1, got \(threads).") }
        if let threads, threads > 4096 { throw ValidationError("--threads must be ≤ 4096 (the limit), got \(threads).") }
    }

    /// The thread count asked for, else the kernels' default.
    public var resolvedThreads: Int { threads ?? Int(ck_get_num_threads()) }
}

/// `kernels`: binary GEMM and convolution against the popcount peak and against float, in one run.
public struct KernelsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Measure the binary kernels against this machine's popcount peak and against float kernels.",
        discussion: """
            Binary GEMM on ResNet-18's 3x3 layer shapes and a 1024x1024x4608 square, and binary convolution of \
            the same layers, each timed against the float computation of the same size in the same run \
            (OpenBLAS sgemm; im2col + sgemm for convolutions). Every binary result is first checked against \
            the float one. Times are medians of batches; figures move from run to run on a shared machine, \
            so compare ratios within one run.
            """
    )

    @OptionGroup public var options: BenchmarkOptions

    public init() {}

    public func run() throws {
        let benchmark = try KernelBenchmark(threads: options.resolvedThreads,
                                            timing: options.quick ? .quick : .standard,
                                            peakSeconds: options.quick ? 0.1 : 0.5)
        if options.json {
            print(try benchmark.run().json())
            return
        }
        let peak = try benchmark.measurePeak()
        print(KernelBenchmarkTable.header(isa: benchmark.isa, threads: benchmark.threads,
                                          openBLASCore: benchmark.openBLASCore, peak: peak,
                                          timing: benchmark.timingDescription))
        var current: KernelBenchmarkReport.Section?
        let report = try benchmark.run(peak: peak) { section, entry in
            if section != current {
                print(KernelBenchmarkTable.sectionHeader(section))
                current = section
            }
            print(KernelBenchmarkTable.row(entry))
        }
        print(String(format: "\npeak re-measured before each row; each row's fraction uses the best so far (final %.2f T)",
                     report.peakBinaryMACsPerSecond / 1e12))
    }
}
