import XCTest

@testable import TobyTCP

final class TobyConfigurationTests: XCTestCase {
    func testDefaults() {
        let config = TobyConfiguration.default
        XCTAssertEqual(config.byteOrder, .littleEndian)
        XCTAssertEqual(config.maxFrameLength, 64 << 20)
        XCTAssertEqual(config.ringCapacity, 64 << 10)
        XCTAssertEqual(try TobyConfiguration(), config)
    }

    func testRejectsContradictions() {
        assertInvalid(try TobyConfiguration(maxFrameLength: -1))
        assertInvalid(try TobyConfiguration(ringCapacity: 1000))
        assertInvalid(try TobyConfiguration(ringCapacity: 8))
        assertInvalid(try TobyConfiguration(ringCapacity: 1 << 31))
        assertInvalid(try TobyConfiguration(maxQueuedSendBytes: 0))
        assertInvalid(try TobyConfiguration(readTimeout: .zero))
        assertInvalid(try TobyConfiguration(readTimeout: .seconds(-1)))
        XCTAssertNoThrow(try TobyConfiguration(ringCapacity: 16))
        XCTAssertNoThrow(try TobyConfiguration(maxFrameLength: 0))
    }

    private func assertInvalid(
        _ make: @autoclosure () throws -> TobyConfiguration, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try make(), file: file, line: line) { error in
            guard case TobyError.invalidConfiguration(let why) = error else {
                return XCTFail("unexpected \(error)", file: file, line: line)
            }
            XCTAssertFalse(why.isEmpty, file: file, line: line)
        }
    }
}
