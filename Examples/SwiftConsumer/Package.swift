// swift-tools-version:6.0
import PackageDescription

// A package that uses swift-bnn the way another project would: as a dependency by path.
// Building it in CI keeps the libraries linkable from outside the package itself.
let package = Package(
    name: "SwiftConsumer",
    dependencies: [
        .package(name: "swift-bnn", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "SwiftConsumer",
            dependencies: [
                .product(name: "BNN", package: "swift-bnn"),
            ]
        ),
    ]
)
