// The test runner as a library API: discovery and `Runtime.runTests` on the fixture
// suite. The command's output is checked by tests/runner/runner_test.lua, which runs
// the gsockd binary.
import GSock
import XCTest

final class TestRunnerTests: XCTestCase {
    /// The package root, found from this file's path.
    private let root: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/GSockTests/TestRunnerTests.swift
        return parts.joined(separator: "/")
    }()

    private var fixtures: String { root + "/tests/fixtures/runner" }

    func testDiscoverySkipsFixtureDirectoriesUnlessGiven() throws {
        let all = try TestDiscovery.files(in: [root + "/tests"])
        XCTAssertTrue(all.contains(root + "/tests/runner/runner_test.lua"))
        XCTAssertFalse(all.contains { $0.contains("/fixtures/") })

        let given = try TestDiscovery.files(in: [fixtures + "/"])
        XCTAssertEqual(given.map { $0.split(separator: "/").last! }, [
            "basic_spec.lua", "hang_spec.lua", "hooks_spec.lua", "leak_spec.lua",
            "syntax_error_spec.lua", "top_error_spec.lua",
        ])
    }

    func testDiscoveryTakesFilesAsGivenWithoutDuplicates() throws {
        let file = fixtures + "/basic_spec.lua"
        XCTAssertEqual(try TestDiscovery.files(in: [file, fixtures]).first, file)
        XCTAssertEqual(try TestDiscovery.files(in: [file, fixtures]).count, 6)
    }

    func testMissingPathIsAUsageError() {
        XCTAssertThrowsError(try TestDiscovery.files(in: [root + "/no/such/dir"])) { error in
            guard case TestRunnerError.usage(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("No such file or directory"), message)
        }
    }

    func testRunOnFixturesCountsEveryOutcome() throws {
        var options = TestOptions()
        options.paths = [fixtures]
        options.timeout = 0.3
        let runtime = try Runtime()
        let summary = try runtime.runTests(options)
        XCTAssertEqual(summary, TestSummary(passed: 9, failed: 11, skipped: 3))
    }

    func testFilterSelectsByFullName() throws {
        var options = TestOptions()
        options.paths = [fixtures + "/basic_spec.lua"]
        options.filter = "^basic fails a"
        let summary = try Runtime().runTests(options)
        XCTAssertEqual(summary, TestSummary(passed: 0, failed: 3, skipped: 0))
    }

    func testMalformedFilterIsAUsageError() throws {
        var options = TestOptions()
        options.paths = [fixtures + "/basic_spec.lua"]
        options.filter = "basic%"
        XCTAssertThrowsError(try Runtime().runTests(options)) { error in
            guard case TestRunnerError.usage(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("bad --filter pattern"), message)
        }
    }
}
