import CKernels
import Foundation

/// Everything one run of the kernel benchmark measured; encodes to the JSON that `--json` prints.
public struct KernelBenchmarkReport: Encodable, Sendable {
    /// The instruction-set path the binary kernels ran on.
    public var isa: String
    /// Threads of the binary kernels and of OpenBLAS.
    public var threads: Int
    /// The kernel family OpenBLAS ran for the float baseline.
    public var openBLASCore: String
    /// In-register XNOR + popcount + add throughput of this machine: the ceiling for the binary kernels.
    public var peakBinaryMACsPerSecond: Double
    /// How the times were taken, in words.
    public var timing: String
    /// Binary GEMM on pre-packed operands against OpenBLAS sgemm of the same size.
    public var bgemm: [Entry]
    /// Binary convolution from packed input against float im2col + sgemm of the same layer.
    public var bconv: [Entry]

    /// The two groups of measurements.
    public enum Section: Sendable {
        case bgemm, bconv

        /// What the section compares, for the table.
        public var title: String {
            switch self {
            case .bgemm:
                return "bgemm: packed weights and input prepared beforehand, int32 output; vs OpenBLAS sgemm"
            case .bconv:
                return "bconv 3x3 stride 1 pad 1, batch 1: packed NHWC input, float output with per-channel"
                    + " scale and bias; vs float im2col + OpenBLAS sgemm"
            }
        }
    }

    /// One kernel on one shape, binary and float, timed in the same run.
    public struct Entry: Encodable, Sendable {
        /// The shape or layer, e.g. "layer1 56x56x64->64".
        public var name: String
        /// GEMM rows (output pixels for a convolution), columns (output channels) and reduction length.
        public var m: Int
        public var n: Int
        public var k: Int
        /// Median seconds per call of the binary and of the float kernel.
        public var binarySeconds: Double
        public var floatSeconds: Double

        /// Multiply-accumulates of one call: m·n·k.
        public var macs: Double { Double(m) * Double(n) * Double(k) }
        public var binaryMACsPerSecond: Double { macs / binarySeconds }
        public var floatMACsPerSecond: Double { macs / floatSeconds }
        /// How many times faster the binary kernel ran than the float one.
        public var speedupVsFloat: Double { floatSeconds / binarySeconds }
        /// Binary MAC/s as a fraction of the machine's popcount peak.
        public var peakFraction: Double

        enum CodingKeys: String, CodingKey {
            case name, m, n, k
            case binarySeconds = "binary_seconds"
            case floatSeconds = "float_seconds"
            case binaryMACsPerSecond = "binary_macs_per_s"
            case floatMACsPerSecond = "float_macs_per_s"
            case peakFraction = "peak_fraction"
            case speedupVsFloat = "speedup_vs_float"
        }

        public init(name: String, m: Int, n: Int, k: Int, binarySeconds: Double, floatSeconds: Double,
                    peakBinaryMACsPerSecond: Double)
        {
            self.name = name
            self.m = m
            self.n = n
            self.k = k
            self.binarySeconds = binarySeconds
            self.floatSeconds = floatSeconds
            peakFraction = Double(m) * Double(n) * Double(k) / binarySeconds / peakBinaryMACsPerSecond
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(m, forKey: .m)
            try container.encode(n, forKey: .n)
            try container.encode(k, forKey: .k)
            try container.encode(binarySeconds, forKey: .binarySeconds)
            try container.encode(floatSeconds, forKey: .floatSeconds)
            try container.encode(binaryMACsPerSecond, forKey: .binaryMACsPerSecond)
            try container.encode(floatMACsPerSecond, forKey: .floatMACsPerSecond)
            try container.encode(peakFraction, forKey: .peakFraction)
            try container.encode(speedupVsFloat, forKey: .speedupVsFloat)
        }
    }

    enum CodingKeys: String, CodingKey {
        case isa, threads, timing, bgemm, bconv
        case openBLASCore = "openblas_core"
        case peakBinaryMACsPerSecond = "peak_binary_macs_per_s"
    }

    /// The report as one JSON object, keys sorted so that runs diff cleanly.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// The human-readable form of a report: a header, then one aligned table row per entry, printable as the
/// entries are measured.
public enum KernelBenchmarkTable {
    static let nameWidth = 30

    /// Lines describing the machine and the method.
    public static func header(isa: String, threads: Int, openBLASCore: String, peak: Double, timing: String)
        -> String
    {
        """
        CPU            \(String(cString: ck_cpu_name()))
        ISA path       \(isa)
        threads        \(threads) (binary kernels and OpenBLAS)
        OpenBLAS core  \(openBLASCore)
        popcount peak  \(rate(peak)) binary MAC/s (in-register XNOR + popcount + add, \(threads) thread\(threads == 1 ? "" : "s"))
        timing         \(timing)
        """
    }

    /// Title and column names of a section.
    public static func sectionHeader(_ section: KernelBenchmarkReport.Section) -> String {
        let columns = pad("", nameWidth) + pad("M", 7, right: true) + pad("N", 6, right: true)
            + pad("K", 7, right: true) + pad("binary MAC/s", 15, right: true) + pad("of peak", 9, right: true)
            + pad("float MAC/s", 14, right: true) + pad("speedup", 10, right: true)
        return "\n\(section.title)\n\(columns)"
    }

    /// One aligned row.
    public static func row(_ entry: KernelBenchmarkReport.Entry) -> String {
        pad(entry.name, nameWidth) + pad(String(entry.m), 7, right: true) + pad(String(entry.n), 6, right: true)
            + pad(String(entry.k), 7, right: true) + pad(rate(entry.binaryMACsPerSecond), 15, right: true)
            + pad(String(format: "%.1f %%", entry.peakFraction * 100), 9, right: true)
            + pad(rate(entry.floatMACsPerSecond), 14, right: true)
            + pad(String(format: "%.1f×", entry.speedupVsFloat), 10, right: true)
    }

    /// A rate with an SI prefix: "1.85 T", "65.3 G".
    static func rate(_ value: Double) -> String {
        if value >= 1e12 { return String(format: "%.2f T", value / 1e12) }
        if value >= 1e9 { return String(format: "%.1f G", value / 1e9) }
        return String(format: "%.1f M", value / 1e6)
    }

    private static func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - text.count))
        return right ? fill + text : text + fill
    }
}
