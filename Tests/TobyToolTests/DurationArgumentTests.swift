import ArgumentParser
import XCTest

@testable import toby

/// `--read-timeout DURATION`: the forms accepted, exactly, and a clear
/// error for everything else.
final class DurationArgumentTests: XCTestCase {
    func testAcceptedForms() throws {
        XCTAssertEqual(try DurationArgument.parse("500ms"), .milliseconds(500))
        XCTAssertEqual(try DurationArgument.parse("2s"), .seconds(2))
        XCTAssertEqual(try DurationArgument.parse("1.5s"), .milliseconds(1500))
        XCTAssertEqual(try DurationArgument.parse("1m"), .seconds(60))
        XCTAssertEqual(try DurationArgument.parse("1.25m"), .seconds(75))
        XCTAssertEqual(try DurationArgument.parse("2h"), .seconds(7200))
        XCTAssertEqual(try DurationArgument.parse("0.5ms"), .microseconds(500))
        XCTAssertEqual(try DurationArgument.parse("1ms"), .milliseconds(1))
        XCTAssertEqual(try DurationArgument.parse("0.000000001s"), .nanoseconds(1), "9 decimals, exactly")
        XCTAssertEqual(try DurationArgument.parse("1.999999999h"), .nanoseconds(7_199_999_996_400), "no rounding error")
        XCTAssertEqual(try DurationArgument.parse("007s"), .seconds(7))
    }

    func testRejectedFormsSayWhatIsWrong() {
        assertRejected("5", saying: "has no unit: write 5s for seconds or 5ms for milliseconds")
        assertRejected("1.5", saying: "has no unit")
        assertRejected("abc", saying: "is not a duration")
        assertRejected("", saying: "is not a duration")
        assertRejected("s", saying: "is not a duration")
        assertRejected("1.s", saying: "is not a duration")
        assertRejected(".5s", saying: "is not a duration")
        assertRejected("1.2.3s", saying: "is not a duration")
        assertRejected("-1s", saying: "is not a duration")
        assertRejected("+1s", saying: "is not a duration")
        assertRejected("1 s", saying: "is not a duration")
        assertRejected("1S", saying: "is not a duration")
        assertRejected("1d", saying: "is not a duration")
        assertRejected("0s", saying: "is not positive")
        assertRejected("0.0ms", saying: "is not positive")
        assertRejected("1.1234567891s", saying: "more than 9 decimals")
        assertRejected("99999999999999h", saying: "too long")
        assertRejected("99999999999999999999s", saying: "too long")
    }

    private func assertRejected(_ text: String, saying expected: String, line: UInt = #line) {
        XCTAssertThrowsError(try DurationArgument.parse(text), line: line) { error in
            let message = (error as? ValidationError)?.message ?? "\(error)"
            XCTAssertTrue(message.contains(expected), "'\(text)': \(message)", line: line)
            XCTAssertTrue(message.contains("'\(text)'"), "the message quotes the value: \(message)", line: line)
        }
    }
}
