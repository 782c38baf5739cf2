import Foundation
import XCTest

/// The README's quick start: the `QuickStart` example is the README's code
/// block, and it runs and prints the echoed message.
final class QuickStartTests: XCTestCase {
    private static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testQuickStartRunsAndPrintsTheEcho() throws {
        let path = try BuiltExecutable.require("QuickStart", environmentVariable: "QUICKSTART_BINARY")
        let process = try ToolProcess([], executable: path)
        defer { process.kill() }
        let stdout = try process.stdout.readToEnd()
        let stderr = try process.stderr.readToEnd()
        let (reason, status) = try process.waitForExit()
        XCTAssertEqual(reason, .exit)
        XCTAssertEqual(status, 0, "stderr: \(stderr)")
        XCTAssertEqual(stdout, "toby is a good dog\n")
        XCTAssertEqual(stderr, "")
    }

    /// The README's block is the example's code after its two header lines.
    func testReadmeQuickStartIsTheExample() throws {
        let readme = try String(contentsOf: Self.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let example = try String(
            contentsOf: Self.packageRoot.appendingPathComponent("Examples/QuickStart/main.swift"), encoding: .utf8)
        let heading = "## Quick start"
        guard let section = readme.range(of: heading),
            let open = readme.range(of: "```swift\n", range: section.upperBound..<readme.endIndex),
            let close = readme.range(of: "```\n", range: open.upperBound..<readme.endIndex)
        else { return XCTFail("README.md has no Swift block under '\(heading)'") }
        let block = String(readme[open.upperBound..<close.lowerBound])
        let code = example.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2)
            .joined(separator: "\n")
        XCTAssertEqual(block, code)
    }
}
