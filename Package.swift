// swift-tools-version:6.0
import PackageDescription

// CKernels is C11 with OpenMP. The Swift toolchain's clang understands -fopenmp but ships no OpenMP
// runtime: Debian's libomp-dev provides libomp.so.5 in the default library path, linked here by file name.
// The kernels declare the few omp_* functions they call, so no omp.h is needed. OpenBLAS is not linked at
// all: CKernels/blas.c loads it at run time (see there why).
let openMP: [CSetting] = [.unsafeFlags(["-fopenmp", "-O3", "-std=c11", "-ffp-contract=off"])]
let openMPRuntime: [LinkerSetting] = [.linkedLibrary(":libomp.so.5"), .linkedLibrary("dl"), .linkedLibrary("m")]

let package = Package(
    name: "swift-bnn",
    products: [
        // MARK: Public API
        .library(name: "BNN", targets: ["BNN"]),
        .library(name: "CKernels", type: .static, targets: ["CKernels"]),
        .executable(name: "bnn", targets: ["bnn"]),
        // The C inference API (Sources/BNNInference/include/bnn_inference.h) as a shared library for C programs.
        .library(name: "BNNInference", type: .dynamic, targets: ["BNNInference"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: Implementation
        .target(
            name: "CKernels",
            path: "CKernels",
            publicHeadersPath: "include",
            cSettings: openMP,
            linkerSettings: openMPRuntime
        ),
        .target(
            name: "BNN",
            dependencies: ["CKernels"],
            path: "Sources/BNN"
        ),
        // Swift (@_cdecl) behind a C header: the header is for C callers, so it is not part of the Swift target.
        .target(
            name: "BNNInference",
            dependencies: ["BNN"],
            path: "Sources/BNNInference",
            exclude: ["include"]
        ),
        .executableTarget(
            name: "bnn",
            dependencies: [
                "BNN",
                "BNNBenchmarks",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/bnn"
        ),

        // MARK: Benchmarks
        // The benchmark code is a library so that `bnn bench kernels` and the standalone `bnn-bench` run the
        // same measurements. It calls the C API directly: what it times is the kernels, not a wrapper.
        .target(
            name: "BNNBenchmarks",
            dependencies: [
                "CKernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/BNNBenchmarks"
        ),
        .executableTarget(
            name: "bnn-bench",
            dependencies: ["BNNBenchmarks"],
            path: "Benchmarks/bnn-bench"
        ),

        // MARK: Tests
        .testTarget(name: "CKernelsTests", dependencies: ["CKernels", "BNN"], path: "Tests/CKernelsTests"),
        // Fixtures/: reference results read by the tests at run time (see scripts/reference/crosscheck.py).
        .testTarget(name: "BNNTests", dependencies: ["BNN"], path: "Tests/BNNTests", exclude: ["Fixtures"]),
        .testTarget(name: "BNNInferenceTests", dependencies: ["BNNInference", "BNN"], path: "Tests/BNNInferenceTests"),
    ]
)
