// swift-tools-version:6.1
import PackageDescription

// Supported platforms: Linux with glibc only (epoll, eventfd, `import Glibc`);
// tested on x86_64 with Swift 6.3.1. macOS, musl and Windows are not
// supported. (`platforms:` names only Apple platforms, so there is nothing to
// declare there.) The `RawSpan` receive needs a Swift 6.2 compiler or newer.
//
// The `TobyTCP` library product depends on nothing but the Swift toolchain and
// libc. The other packages below serve only the `toby` tool, the `benchmarks`
// executable, the tests and the separate `TobyTCPServiceLifecycle`, `TobyTCPLogging` and
// `TobyTCPMetrics` products; SwiftPM never
// links them into a service that depends on the `TobyTCP` library alone.
let package = Package(
    name: "TobyTCP",
    products: [
        .library(name: "TobyTCP", targets: ["TobyTCP"]),
        // A swift-service-lifecycle `Service` for TobyServer; a product of its
        // own so that the `TobyTCP` library still depends on nothing.
        .library(name: "TobyTCPServiceLifecycle", targets: ["TobyTCPServiceLifecycle"]),
        // Connection-level logging with swift-log (TobyServerObserver); its
        // own product for the same reason.
        .library(name: "TobyTCPLogging", targets: ["TobyTCPLogging"]),
        // Server statistics as swift-metrics counters and gauges; its own
        // product too.
        .library(name: "TobyTCPMetrics", targets: ["TobyTCPMetrics"]),
        .executable(name: "toby", targets: ["toby"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        // Only TobyTCPMetricsTests (the exposition test) uses it.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // `swift package generate-documentation --target TobyTCP` (a command
        // plugin: nothing of it is linked into anything).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // C11 mechanism: framing, ring buffer, readv/writev batching, sockets.
        .target(name: "CTobyFrame"),
        // Swift API: messenger, receiver, listener, configuration, errors.
        .target(name: "TobyTCP", dependencies: ["CTobyFrame"]),
        // TobyServer as a swift-service-lifecycle Service (graceful shutdown).
        .target(
            name: "TobyTCPServiceLifecycle",
            dependencies: ["TobyTCP", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]
        ),
        // TobyServerObserver that logs with swift-log.
        .target(name: "TobyTCPLogging", dependencies: ["TobyTCP", .product(name: "Logging", package: "swift-log")]),
        // TobyServer statistics reported through swift-metrics.
        .target(name: "TobyTCPMetrics", dependencies: ["TobyTCP", .product(name: "CoreMetrics", package: "swift-metrics")]),
        // Command-line tool built on the public API (plus the package's thread spawner).
        .executableTarget(
            name: "toby",
            dependencies: [
                "TobyTCP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // `toby bench`'s latency percentiles.
                .product(name: "Histogram", package: "hdrhistogram-swift"),
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
                // The observability rows: what logging and metrics cost a server.
                "TobyTCPLogging", "TobyTCPMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            path: "Benchmarks"
        ),
        // The README's quick start, run by TobyToolTests so it cannot rot.
        .executableTarget(name: "QuickStart", dependencies: ["TobyTCP"], path: "Examples/QuickStart"),
        // TobyTCPMetrics exported through swift-prometheus, run by TobyToolTests.
        .executableTarget(
            name: "PrometheusMetrics",
            dependencies: [
                "TobyTCP", "TobyTCPMetrics",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Examples/PrometheusMetrics"
        ),
        .testTarget(name: "CTobyFrameTests", dependencies: ["CTobyFrame"]),
        // Clients shared by the test targets (the shutdown probe).
        .target(name: "TobyTestSupport", dependencies: ["TobyTCP"], path: "Tests/TobyTestSupport"),
        .testTarget(name: "TobyTCPTests", dependencies: ["TobyTCP", "CTobyFrame", "TobyTestSupport"]),
        .testTarget(
            name: "TobyTCPServiceLifecycleTests",
            dependencies: [
                "TobyTCPServiceLifecycle", "TobyTCP", "TobyTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "TobyTCPLoggingTests",
            dependencies: ["TobyTCPLogging", "TobyTCP", "CTobyFrame", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "TobyTCPMetricsTests",
            dependencies: [
                "TobyTCPMetrics", "TobyTCP", "CTobyFrame",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // Runs the built `toby` and `QuickStart` binaries as subprocesses
        // (found next to the test bundle); unit-tests the tool's argument
        // parsing (`@testable import toby`).
        .testTarget(name: "TobyToolTests", dependencies: ["toby"], path: "Tests/TobyToolTests"),
    ]
)
