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

    /// The README's block, and the DocC guide's, are the example's code
    /// after its two header lines.
    func testReadmeAndGuideShowTheExample() throws {
        let example = try String(
            contentsOf: Self.packageRoot.appendingPathComponent("Examples/QuickStart/main.swift"), encoding: .utf8)
        let code = example.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2)
            .joined(separator: "\n")
        for (file, heading) in [
            ("README.md", "## Quick start"), ("Sources/TobyTCP/TobyTCP.docc/GettingStarted.md", "## Echo one message"),
        ] {
            let text = try String(contentsOf: Self.packageRoot.appendingPathComponent(file), encoding: .utf8)
            guard let section = text.range(of: heading),
                let open = text.range(of: "```swift\n", range: section.upperBound..<text.endIndex),
                let close = text.range(of: "```\n", range: open.upperBound..<text.endIndex)
            else {
                XCTFail("\(file) has no Swift block under '\(heading)'")
                continue
            }
            XCTAssertEqual(String(text[open.upperBound..<close.lowerBound]), code, file)
        }
    }
}
