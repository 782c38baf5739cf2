import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Every ```swift block of the README and of the DocC catalog type-checks
/// against the built `TobyTCP` module, so documented usage cannot stop
/// compiling unnoticed (issue 15, defect 4).
///
/// Each block is checked on its own, as the `main.swift` of a program (what
/// a reader pastes), by `swiftc -typecheck -swift-version 6`; `import TobyTCP`
/// is added when the block does not import it. A block that is a fragment
/// gets the declarations it assumes from an HTML comment right before it,
/// invisible on GitHub and in DocC:
///
///     <!-- snippet-context: let group = try TobyEventLoopGroup() -->
///
/// A context may span lines, up to `-->`. A line `#snippet` in it places the
/// block inside the context (for instance as arguments of a call); without
/// one the context comes first. A context that imports `PackageDescription`
/// is checked as a package manifest, with the tools version of this
/// package's `Package.swift`. A failure names the block's file and line; the
/// compiler's diagnostics point at lines of the Markdown file.
final class SnippetTests: XCTestCase {
    private static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The Markdown files whose Swift blocks must compile.
    private static func documents() throws -> [String] {
        let catalog = "Sources/TobyTCP/TobyTCP.docc"
        let articles = try FileManager.default.contentsOfDirectory(
            atPath: packageRoot.appendingPathComponent(catalog).path
        )
        .filter { $0.hasSuffix(".md") }.sorted().map { "\(catalog)/\($0)" }
        return ["README.md"] + articles
    }

    func testEveryReadmeAndDocCSwiftBlockTypeChecks() throws {
        var snippets: [Snippet] = []
        for document in try Self.documents() {
            let text = try String(contentsOf: Self.packageRoot.appendingPathComponent(document), encoding: .utf8)
            snippets += try Snippet.extract(from: text, file: document)
        }
        XCTAssertGreaterThanOrEqual(snippets.filter { $0.file == "README.md" }.count, 5, "the README's blocks were found")
        XCTAssertGreaterThanOrEqual(snippets.count, 12, "the DocC articles' blocks were found")
        let checker = try SnippetChecker(packageRoot: Self.packageRoot)
        for failure in try checker.check(snippets) {
            XCTFail(failure)
        }
    }

    /// The checker fails a block that does not compile, naming its file and
    /// line and quoting the compiler, and places a context correctly.
    func testABrokenBlockFailsWithItsFileLineAndTheCompilersMessage() throws {
        let markdown = """
            # Title

            <!-- snippet-context: let group = try TobyEventLoopGroup() -->
            ```swift
            group.shutdown()
            let count: Int = "three"
            ```

            ```swift
            let configuration = try TobyConfiguration(byteOrder: .bigEndian)
            _ = configuration
            ```

            """
        let snippets = try Snippet.extract(from: markdown, file: "Broken.md")
        XCTAssertEqual(snippets.map(\.line), [5, 10])
        let failures = try SnippetChecker(packageRoot: Self.packageRoot).check(snippets)
        XCTAssertEqual(failures.count, 1, "\(failures)")
        let failure = failures.first ?? ""
        XCTAssertTrue(failure.hasPrefix("Broken.md:5: "), failure)
        XCTAssertTrue(failure.contains("Broken.md:6:"), "the diagnostic points at the Markdown line: \(failure)")
        XCTAssertTrue(failure.contains("cannot convert value of type 'String'"), failure)
        XCTAssertFalse(failure.contains("cannot find 'group'"), "the context declares `group`: \(failure)")
    }

    func testExtractionOfContextsFencesAndIndentation() throws {
        let markdown = """
            <!-- snippet-context:
            import PackageDescription
            let package = Package(
                name: "X",
            #snippet
            )
            -->
            ```swift
            dependencies: []
            ```

            ```sh
            ```swift
            not a block: inside a shell block
            ```

            - A list item:

              ```Swift
              let indented = 1
                  let deeper = 2
              ```
            """
        let snippets = try Snippet.extract(from: markdown, file: "T.md")
        XCTAssertEqual(snippets.count, 2)
        XCTAssertEqual(snippets.first?.code, "dependencies: []")
        XCTAssertEqual(snippets.first?.line, 9)
        XCTAssertEqual(snippets.first?.context?.before, "import PackageDescription\nlet package = Package(\n    name: \"X\",")
        XCTAssertEqual(snippets.first?.context?.after, ")")
        XCTAssertEqual(snippets.first?.context?.line, 2)
        XCTAssertEqual(snippets.last?.code, "let indented = 1\n    let deeper = 2")
        XCTAssertEqual(snippets.last?.line, 20)
        XCTAssertNil(snippets.last?.context)

        let source = try XCTUnwrap(snippets.first).source
        XCTAssertFalse(source.contains("import TobyTCP"), "a manifest is not given TobyTCP")
        XCTAssertTrue(snippets[1].source.hasPrefix("import TobyTCP\n"), snippets[1].source)

        XCTAssertThrowsError(try Snippet.extract(from: "<!-- snippet-context: let a = 1 -->\n\nText.\n", file: "T.md"))
        XCTAssertThrowsError(try Snippet.extract(from: "```swift\nlet a = 1\n", file: "T.md"))
    }
}

/// A ```swift block of a Markdown file, with the context it assumes.
struct Snippet {
    /// The Markdown file, relative to the package root.
    let file: String
    /// The line of the block's first line of code, from 1.
    let line: Int
    let code: String
    let context: Context?

    /// Declarations a fragment assumes, from `<!-- snippet-context: … -->`.
    struct Context {
        /// The comment's first line of code.
        let line: Int
        /// Code before the block, and after it (when `#snippet` placed it).
        let before: String
        let after: String?
    }

    struct ExtractionError: Error, CustomStringConvertible {
        let description: String
    }

    /// The Swift blocks of `text`, in order.
    static func extract(from text: String, file: String) throws -> [Snippet] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var snippets: [Snippet] = []
        var pending: Context?
        var index = 0
        func trimmed(_ line: String) -> Substring { line.drop { $0 == " " } }
        while index < lines.count {
            let line = lines[index]
            let stripped = trimmed(line)
            if stripped.hasPrefix("<!-- snippet-context:") {
                if let pending {
                    throw ExtractionError(description: "\(file):\(pending.line): a snippet context followed by no ```swift block")
                }
                // The comment's text, from after the marker to `-->`.
                var body = [String(stripped.dropFirst("<!-- snippet-context:".count))]
                let opening = index
                while !body[body.count - 1].contains("-->") {
                    index += 1
                    guard index < lines.count else {
                        throw ExtractionError(description: "\(file):\(opening + 1): a snippet context without its closing -->")
                    }
                    body.append(lines[index])
                }
                let last = body[body.count - 1]
                body[body.count - 1] = String(last[..<last.range(of: "-->")!.lowerBound])
                var firstLine = opening + 1
                if body[0].trimmingCharacters(in: .whitespaces).isEmpty {
                    body.removeFirst()
                    firstLine += 1
                } else {
                    body[0] = String(body[0].drop { $0 == " " })
                }
                while let last = body.last, last.trimmingCharacters(in: .whitespaces).isEmpty { body.removeLast() }
                let placeholder = body.firstIndex { $0.trimmingCharacters(in: .whitespaces) == "#snippet" }
                let before = body[..<(placeholder ?? body.count)].joined(separator: "\n")
                let after = placeholder.map { body[($0 + 1)...].joined(separator: "\n") }
                pending = Context(line: firstLine, before: before, after: after)
                index += 1
                continue
            }
            if stripped.hasPrefix("```") || stripped.hasPrefix("~~~") {
                let fence = String(stripped.prefix { $0 == stripped.first })
                let info = stripped.dropFirst(fence.count).split(separator: " ").first.map { $0.lowercased() } ?? ""
                let indent = line.count - stripped.count
                var body: [String] = []
                var closed = false
                index += 1
                let firstLine = index + 1
                while index < lines.count {
                    let inner = lines[index]
                    let innerStripped = trimmed(inner)
                    if innerStripped.hasPrefix(fence), innerStripped.allSatisfy({ $0 == fence.first }) {
                        closed = true
                        break
                    }
                    // Drop the fence's indentation (a block in a list item).
                    let removable = min(indent, inner.count - innerStripped.count)
                    body.append(String(inner.dropFirst(removable)))
                    index += 1
                }
                guard closed else {
                    throw ExtractionError(description: "\(file):\(firstLine - 1): a code block without its closing fence")
                }
                index += 1
                guard info == "swift" else {
                    if let pending {
                        throw ExtractionError(
                            description:
                                "\(file):\(pending.line): a snippet context before a \(info.isEmpty ? "plain" : info) block")
                    }
                    continue
                }
                snippets.append(Snippet(file: file, line: firstLine, code: body.joined(separator: "\n"), context: pending))
                pending = nil
                continue
            }
            if let context = pending, !stripped.isEmpty {
                throw ExtractionError(description: "\(file):\(context.line): a snippet context not right before a ```swift block")
            }
            index += 1
        }
        if let pending {
            throw ExtractionError(description: "\(file):\(pending.line): a snippet context followed by no ```swift block")
        }
        return snippets
    }

    /// Whether this is (part of) a package manifest.
    var isManifest: Bool {
        "\(context?.before ?? "")\n\(code)".range(of: #"(?m)^\s*import\s+PackageDescription\b"#, options: .regularExpression)
            != nil
    }

    /// The `main.swift` that checks the block. `#sourceLocation` maps every
    /// line to the Markdown file: the block's lines exactly; a context's
    /// lines to its comment, or, when the block sits inside it, to the lines
    /// just before the block.
    var source: String {
        let whole = "\(context?.before ?? "")\n\(code)\n\(context?.after ?? "")"
        var lines: [String] = []
        let importsTobyTCP = whole.range(of: #"(?m)^\s*import\s+TobyTCP\b"#, options: .regularExpression) != nil
        if !importsTobyTCP && !isManifest { lines.append("import TobyTCP") }
        func location(_ line: Int) -> String { "#sourceLocation(file: \"\(file)\", line: \(max(line, 1)))" }
        if let context {
            if let after = context.after {
                let beforeCount =
                    context.before.isEmpty ? 0 : context.before.split(separator: "\n", omittingEmptySubsequences: false).count
                lines.append(location(line - beforeCount))
                if !context.before.isEmpty { lines.append(context.before) }
                lines.append(code)
                lines.append(after)
            } else {
                lines.append(location(context.line))
                lines.append(context.before)
                lines.append(location(line))
                lines.append(code)
            }
        } else {
            lines.append(location(line))
            lines.append(code)
        }
        lines.append("#sourceLocation()")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Type-checks snippets with `swiftc` against the built modules, several
/// compilers at once.
struct SnippetChecker {
    let swiftc: String
    let arguments: [String]
    let manifestArguments: [String]

    init(packageRoot: URL) throws {
        swiftc = try Self.findSwiftc()
        // The modules of this build are next to the `toby` binary.
        let products = URL(fileURLWithPath: try TobyBinary.require()).deletingLastPathComponent()
        let modules = [products.appendingPathComponent("Modules"), products].first {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("TobyTCP.swiftmodule").path)
        }
        guard let modules else {
            throw ToolTestError("no TobyTCP.swiftmodule in \(products.path) or its Modules directory; run 'swift build' first")
        }
        let include = packageRoot.appendingPathComponent("Sources/CTobyFrame/include")
        arguments = [
            "-typecheck", "-swift-version", "6", "-I", modules.path,
            "-Xcc", "-fmodule-map-file=\(include.appendingPathComponent("module.modulemap").path)",
            "-Xcc", "-I", "-Xcc", include.path,
        ]
        // A manifest is checked with the tools version this package declares.
        let manifest = try String(contentsOf: packageRoot.appendingPathComponent("Package.swift"), encoding: .utf8)
        guard let header = manifest.split(separator: "\n").first, let colon = header.firstIndex(of: ":") else {
            throw ToolTestError("Package.swift has no swift-tools-version line")
        }
        let toolsVersion = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        let manifestAPI = URL(fileURLWithPath: swiftc).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("lib/swift/pm/ManifestAPI")
        manifestArguments = ["-I", manifestAPI.path, "-package-description-version", toolsVersion]
    }

    /// `SWIFTC`, or `swiftc` on the `PATH`.
    private static func findSwiftc() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["SWIFTC"] { return explicit }
        for directory in (environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/swiftc"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ToolTestError("swiftc is not on the PATH; set SWIFTC to the compiler")
    }

    /// One message per block that does not type-check, starting with
    /// `FILE:LINE: ` of the block and holding the compiler's output.
    func check(_ snippets: [Snippet]) throws -> [String] {
        var template = Array("/tmp/toby-snippets-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ToolTestError("mkdtemp: errno \(errno)") }
        let directory = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let results = Results(count: snippets.count)
        let swiftc = self.swiftc
        let jobs = try snippets.enumerated().map { index, snippet in
            let folder = "\(directory)/\(index)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
            try snippet.source.write(toFile: "\(folder)/main.swift", atomically: false, encoding: .utf8)
            return arguments + (snippet.isManifest ? manifestArguments : [])
                + ["-module-cache-path", "\(directory)/ModuleCache", "\(folder)/main.swift"]
        }
        DispatchQueue.concurrentPerform(iterations: snippets.count) { index in
            results.set(index, Self.run(swiftc, jobs[index]))
        }
        var failures: [String] = []
        for (index, snippet) in snippets.enumerated() {
            let (status, output) = results[index]
            if status != 0 {
                failures.append(
                    "\(snippet.file):\(snippet.line): this Swift block does not compile (swiftc exit \(status)):\n\(output)")
            }
        }
        return failures
    }

    /// Runs the compiler; its exit status and everything it printed.
    private static func run(_ executable: String, _ arguments: [String]) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return (-1, "cannot run \(executable): \(error)")
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    /// Results written by concurrent compiler runs.
    private final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [(Int32, String)]

        init(count: Int) { values = Array(repeating: (-1, "not run"), count: count) }

        func set(_ index: Int, _ value: (Int32, String)) { lock.withLock { values[index] = value } }
        subscript(index: Int) -> (Int32, String) { lock.withLock { values[index] } }
    }
}
