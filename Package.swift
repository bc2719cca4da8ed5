// swift-tools-version:6.0
import PackageDescription

// CKernels is C11 with OpenMP. The Swift toolchain's clang understands -fopenmp but ships no OpenMP
// runtime: Debian's libomp-dev provides libomp.so.5 in the default library path, linked here by file name.
// The kernels declare the few omp_* functions they call, so no omp.h is needed. OpenBLAS is not linked at
// all: CKernels/blas.c loads it at run time (see there why).
let openMP: [CSetting] = [.unsafeFlags(["-fopenmp", "-O3", "-std=c11", "-ffp-contract=off"])]
let openMPRuntime: [LinkerSetting] = [.linkedLibrary(":libomp.so.5"), .linkedLibrary("dl"), .linkedLibrary("m")]
// libjpeg-turbo (Debian's libjpeg62-turbo-dev) and libpng (libpng-dev), for the image-folder data source.
let imageLibraries: [LinkerSetting] = [.linkedLibrary("jpeg"), .linkedLibrary("png")]

let package = Package(
    name: "swift-bnn",
    products: [
        // MARK: Public API
        .library(name: "BNN", targets: ["BNN"]),
        .library(name: "CKernels", type: .static, targets: ["CKernels"]),
        .executable(name: "bnn", targets: ["bnn"]),
        // The C inference API (Sources/BNNRuntime/include/bnn_inference.h) as a static C library for C programs:
        // libBNNInference.a holds the reader, the runtime and the kernels; it needs OpenMP and libc, no Swift.
        .library(name: "BNNInference", type: .static, targets: ["BNNRuntime"]),
        // Data-parallel training over Open MPI (mpirun -np N bnn train). MPI is loaded at run time, only by a process
        // that mpirun started: BNN never needs it, and neither does a single-process `bnn train`.
        .library(name: "BNNDistributed", targets: ["BNNDistributed"]),
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
        // C11: the safetensors and packed-model (.bnn) reader with its validation, the kernel program built from a
        // model, and bnn_inference.h. The Swift module reads files through it (one parser, one validation).
        .target(
            name: "BNNRuntime",
            dependencies: ["CKernels"],
            path: "Sources/BNNRuntime",
            publicHeadersPath: "include",
            cSettings: [.unsafeFlags(["-std=c11", "-O2", "-Wall", "-Wextra"])]
        ),
        // C11: JPEG (libjpeg-turbo, DCT-domain scaling) and PNG (libpng) decoding to RGB for the image-folder data
        // source; errors come back as a status and a message (the libraries' handlers longjmp, never exit).
        .target(
            name: "CImage",
            path: "Sources/CImage",
            publicHeadersPath: "include",
            cSettings: [.unsafeFlags(["-std=c11", "-O2", "-Wall", "-Wextra"])],
            linkerSettings: imageLibraries
        ),
        .target(
            name: "BNN",
            dependencies: ["CKernels", "BNNRuntime", "CImage"],
            path: "Sources/BNN"
        ),
        // C11: Open MPI's libmpi.so.40 through dlopen (Sources/CMPI/bnn_mpi.c says why and which ABI).
        .target(
            name: "CMPI",
            path: "Sources/CMPI",
            publicHeadersPath: "include",
            cSettings: [.unsafeFlags(["-std=c11", "-O2", "-Wall", "-Wextra"])],
            linkerSettings: [.linkedLibrary("dl")]
        ),
        .target(
            name: "BNNDistributed",
            dependencies: ["BNN", "CMPI"],
            path: "Sources/BNNDistributed"
        ),
        .executableTarget(
            name: "bnn",
            dependencies: [
                "BNN",
                "BNNDistributed",
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
        // Encoders of the image-folder tests' JPEG and PNG files.
        .target(
            name: "CImageTestSupport",
            path: "Tests/CImageTestSupport",
            publicHeadersPath: "include",
            cSettings: [.unsafeFlags(["-std=c11", "-O2", "-Wall", "-Wextra"])],
            linkerSettings: imageLibraries
        ),
        .testTarget(
            name: "BNNTests", dependencies: ["BNN", "CImageTestSupport"], path: "Tests/BNNTests", exclude: ["Fixtures"]),
        .testTarget(name: "BNNInferenceTests", dependencies: ["BNNRuntime", "BNN"], path: "Tests/BNNInferenceTests"),
        // Runs `mpirun -np 2 bnn train` (the bnn built beside the tests) against single-process runs.
        .testTarget(name: "BNNDistributedTests", dependencies: ["BNN", "BNNDistributed"], path: "Tests/BNNDistributedTests"),
    ]
)
