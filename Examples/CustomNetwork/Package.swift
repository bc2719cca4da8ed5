// swift-tools-version:6.0
import PackageDescription

// A network of your own, defined outside the library: trained, evaluated, packed and run by the packed engine.
// It depends on swift-bnn by path (its unsafeFlags rule out a versioned dependency), as Examples/SwiftConsumer does.
let package = Package(
    name: "CustomNetwork",
    dependencies: [
        .package(name: "swift-bnn", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "CustomNetwork",
            dependencies: [
                .product(name: "BNN", package: "swift-bnn"),
            ]
        ),
    ]
)
