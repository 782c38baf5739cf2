import XCTest

@testable import TobyTCP
import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

final class TobyConfigurationTests: XCTestCase {
    func testDefaults() {
        let config = TobyConfiguration.default
        XCTAssertEqual(config.byteOrder, .littleEndian)
        XCTAssertEqual(config.maxFrameLength, 64 << 20)
        XCTAssertEqual(config.ringCapacity, 64 << 10)
        XCTAssertEqual(config.maxQueuedSendBytes, 4 << 20)
        XCTAssertNil(config.readTimeout)
        XCTAssertNil(config.writeTimeout)
        XCTAssertEqual(TobyConfiguration(), config)
        XCTAssertNoThrow(try config.validate())
    }

    func testIsAValue() throws {
        var config = TobyConfiguration()
        config.readTimeout = .seconds(2)
        config.byteOrder = .bigEndian
        config.maxFrameLength = 1 << 20
        XCTAssertEqual(config, try TobyConfiguration(byteOrder: .bigEndian, maxFrameLength: 1 << 20, readTimeout: .seconds(2)))
        XCTAssertNotEqual(config, .default)
        XCTAssertEqual(TobyConfiguration.default.readTimeout, nil, "changing a copy leaves the default alone")
    }

    func testThrowingInitRejectsOutOfRange() {
        assertInvalid(try TobyConfiguration(maxFrameLength: -1), naming: "maxFrameLength")
        assertInvalid(try TobyConfiguration(maxFrameLength: 0), naming: "maxFrameLength")
        assertInvalid(try TobyConfiguration(ringCapacity: 1000), naming: "ringCapacity")
        assertInvalid(try TobyConfiguration(ringCapacity: 8), naming: "ringCapacity")
        assertInvalid(try TobyConfiguration(ringCapacity: 1 << 31), naming: "ringCapacity")
        assertInvalid(try TobyConfiguration(maxQueuedSendBytes: 0), naming: "maxQueuedSendBytes")
        assertInvalid(try TobyConfiguration(readTimeout: .zero), naming: "readTimeout")
        assertInvalid(try TobyConfiguration(readTimeout: .seconds(-1)), naming: "readTimeout")
        assertInvalid(try TobyConfiguration(writeTimeout: .zero), naming: "writeTimeout")
        assertInvalid(try TobyConfiguration(writeTimeout: .milliseconds(-5)), naming: "writeTimeout")
        XCTAssertNoThrow(try TobyConfiguration(ringCapacity: 16))
        XCTAssertNoThrow(try TobyConfiguration(ringCapacity: 1 << 30))
        XCTAssertNoThrow(try TobyConfiguration(maxFrameLength: 1))
        XCTAssertNoThrow(try TobyConfiguration(maxQueuedSendBytes: 1))
    }

    /// The throwing initialiser takes every setting, the write timeout too.
    func testThrowingInitTakesTheWriteTimeout() throws {
        let config = try TobyConfiguration(readTimeout: .seconds(2), writeTimeout: .milliseconds(300))
        XCTAssertEqual(config.writeTimeout, .milliseconds(300))
        XCTAssertEqual(config.readTimeout, .seconds(2))
        var expected = TobyConfiguration()
        expected.readTimeout = .seconds(2)
        expected.writeTimeout = .milliseconds(300)
        XCTAssertEqual(config, expected)
        XCTAssertNil(try TobyConfiguration(readTimeout: .seconds(2)).writeTimeout, "nil by default")
        XCTAssertThrowsError(try TobyConfiguration(writeTimeout: .zero)) { error in
            XCTAssertEqual(error as? TobyError, .invalidConfiguration("writeTimeout must be positive (got 0.0 seconds)"))
        }
    }

    func testValidateNamesTheSettingAndValue() {
        var config = TobyConfiguration()
        config.maxFrameLength = 0
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertEqual(error as? TobyError, .invalidConfiguration("maxFrameLength must be at least 1 (got 0)"))
            XCTAssertEqual("\(error)", "invalid configuration: maxFrameLength must be at least 1 (got 0)")
        }
    }

    /// An out-of-range value set through a property is refused where the
    /// configuration is used, before a connection is made.
    func testConnectRefusesInvalidConfiguration() throws {
        let listener = try TobyListener(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        var config = TobyConfiguration()
        config.maxFrameLength = 0
        assertInvalid(
            try TobyMessenger.connect(host: "127.0.0.1", port: listener.port, configuration: config), naming: "maxFrameLength")
        config = TobyConfiguration()
        config.readTimeout = .zero
        let path = "/tmp/toby-config-\(getpid()).sock"
        let unixListener = try TobyListener(unixPath: path)
        defer { unixListener.close() }
        assertInvalid(try TobyMessenger.connect(unixPath: path, configuration: config), naming: "readTimeout")
    }

    func testWrappingASocketRefusesInvalidConfigurationAndLeavesItOpen() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        var config = TobyConfiguration()
        config.maxQueuedSendBytes = 0
        assertInvalid(try TobyMessenger(socket: fds[0], configuration: config), naming: "maxQueuedSendBytes")
        XCTAssertEqual(fcntl(fds[0], F_GETFD), 0, "the descriptor is still open")
    }

    func testStartRefusesInvalidConfiguration() throws {
        var config = TobyConfiguration()
        config.ringCapacity = 1000
        let listener = try TobyListener(host: "127.0.0.1", port: 0, configuration: config)
        defer { listener.close() }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: listener.port)
        defer { try? client.close() }
        let accepted = try listener.accept()
        assertInvalid(try accepted.start(), naming: "ringCapacity")
    }

    private func assertInvalid<T>(
        _ make: @autoclosure () throws -> T, naming setting: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try make(), file: file, line: line) { error in
            guard case TobyError.invalidConfiguration(let why) = error else {
                return XCTFail("unexpected \(error)", file: file, line: line)
            }
            XCTAssertTrue(why.hasPrefix(setting + " "), "\(why) should name \(setting)", file: file, line: line)
        }
    }
}
