// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "gsockd",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "GSock", targets: ["GSock"]),
        .executable(name: "gsockd", targets: ["gsockd"]),
        .executable(name: "gsock-embed-example", targets: ["EmbedExample"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLua", path: "Sources/CLua", pkgConfig: "lua5.4",
            providers: [.apt(["liblua5.4-dev"])]),
        .systemLibrary(
            name: "CLibev", path: "Sources/CLibev",
            providers: [.apt(["libev-dev"])]),
        // OpenSSL 3 for TLS (SPEC §10), and the C side of TLS: OpenSSL's macros as functions
        // and the callbacks OpenSSL runs, none of which calls Lua.
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),
        .target(
            name: "CTLS", dependencies: ["COpenSSL"], path: "Sources/CTLS",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .target(
            name: "CShims", dependencies: ["CLua", "CLibev", "CHTTP"], path: "Sources/CShims",
            cSettings: [.unsafeFlags(["-I/usr/include/lua5.4"])],
            linkerSettings: [.linkedLibrary("ev"), .linkedLibrary("lua5.4")]),
        // The HTTP/1.1 request parser (SPEC §11): plain C, no Lua, no libev.
        .target(name: "CHTTP", path: "Sources/CHTTP"),
        .target(
            name: "GSock",
            dependencies: [
                "CLua", "CLibev", "CShims", "CHTTP", "COpenSSL", "CTLS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            path: "Sources/GSock",
            resources: [
                .embedInCode("Lua/gsock.lua"), .embedInCode("Lua/testing.lua"),
                .embedInCode("Lua/assertions.lua"), .embedInCode("Lua/junit.lua"),
                .embedInCode("Lua/socket.lua"), .embedInCode("Lua/server.lua"),
                .embedInCode("Lua/serve.lua"), .embedInCode("Lua/ssl.lua"),
                .embedInCode("Lua/ssl/https.lua"), .embedInCode("Lua/http.lua"),
                .embedInCode("Lua/supervisor_admin.lua"),
                // The modules gsock.lua composes `gsock` from (EmbeddedLua.gsockModules).
                .embedInCode("Lua/gsock/errors.lua"), .embedInCode("Lua/gsock/timeouts.lua"),
                .embedInCode("Lua/gsock/fibers.lua"), .embedInCode("Lua/gsock/sync.lua"),
                .embedInCode("Lua/gsock/waits.lua"), .embedInCode("Lua/gsock/stats.lua"),
                .embedInCode("Lua/gsock/log.lua"), .embedInCode("Lua/gsock/coroutines.lua"),
                .embedInCode("Lua/gsock/metrics.lua"),
            ]),
        .executableTarget(
            name: "gsockd",
            dependencies: [
                "GSock",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/gsockd"),
        .executableTarget(
            name: "EmbedExample", dependencies: ["GSock"], path: "examples/embed"),
        .testTarget(name: "GSockTests", dependencies: ["GSock", "CLua"], path: "Tests/GSockTests"),
        .testTarget(name: "HTTPParserTests", dependencies: ["CHTTP"], path: "Tests/HTTPParserTests"),
    ]
)
