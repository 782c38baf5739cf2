// swift-tools-version:6.1
import PackageDescription

// The `TobyTCP` library product depends on nothing but the Swift toolchain and
// libc. The other packages below serve only the `toby` tool and the
// `benchmarks` executable; SwiftPM never links them into a service that
// depends on the library.
let package = Package(
    name: "TobyTCP",
    products: [
        .library(name: "TobyTCP", targets: ["TobyTCP"]),
        .executable(name: "toby", targets: ["toby"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // C11 mechanism: framing, ring buffer, readv/writev batching, sockets.
        .target(name: "CTobyFrame"),
        // Swift API: messenger, receiver, listener, configuration, errors.
        .target(name: "TobyTCP", dependencies: ["CTobyFrame"]),
        // Command-line tool built on the public API only.
        .executableTarget(
            name: "toby",
            dependencies: [
                "TobyTCP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // `swift run -c release benchmarks`: TobyTCP vs pure Swift vs SwiftNIO.
        .executableTarget(
            name: "benchmarks",
            dependencies: [
                "TobyTCP",
                // The raw-bytes echo ceiling and the echo clients use its epoll shim.
                "CTobyFrame",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks"
        ),
        .testTarget(name: "CTobyFrameTests", dependencies: ["CTobyFrame"]),
        .testTarget(name: "TobyTCPTests", dependencies: ["TobyTCP", "CTobyFrame"]),
        // Runs the built `toby` binary as a subprocess (found next to the test bundle).
        .testTarget(name: "TobyToolTests", path: "Tests/TobyToolTests"),
    ]
)
