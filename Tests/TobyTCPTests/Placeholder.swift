import XCTest
import TobyTCP

final class SmokeTests: XCTestCase {
    func testEcho() throws {
        let listener = try TobyListener(port: 0)
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: listener.port)
        let server = try listener.accept()
        let serverRx = try server.start()
        let clientRx = try client.start()
        try client.send("toby is a good dog")
        let got = try XCTUnwrap(try serverRx.receive())
        XCTAssertEqual(String(decoding: got, as: UTF8.self), "toby is a good dog")
        try server.send(got + [1])
        XCTAssertEqual(try clientRx.receive()?.count, 19)
        let big = [UInt8](repeating: 7, count: 3 << 20)
        try client.send(big)
        XCTAssertEqual(try serverRx.receive(), big)
        try client.close()
        XCTAssertNil(try serverRx.receive())
    }
}
