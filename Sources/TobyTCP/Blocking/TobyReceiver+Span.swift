#if compiler(>=6.2)
extension TobyReceiver {
    /// Why ``TobyReceiver/withNextMessage(_:)-jxf7`` failed: the receive, or
    /// the body you gave it. The two never mix, so a `catch` can tell a broken
    /// connection from a message your code rejected.
    ///
    /// ```swift
    /// do {
    ///     let value = try receiver.withNextMessage { (span) throws(ParseError) in try parse(span) }
    /// } catch .receive(let error) {
    ///     // the connection: end of stream is `nil`, not an error; see TobyError
    /// } catch .body(let error) {
    ///     // a ParseError, typed: no cast needed
    /// }
    /// ```
    public enum BodyFailure<BodyError: Error>: Error, CustomStringConvertible {
        /// Receiving failed, exactly as ``TobyReceiver/receive()`` would have
        /// thrown; the body was not called.
        case receive(TobyError)
        /// The body threw this for the message it was lent. The message was
        /// consumed; the receiver stays usable.
        case body(BodyError)

        /// The receive error's sentence, or the body error as it prints.
        public var description: String {
            switch self {
            case .receive(let error): return error.description
            case .body(let error): return String(describing: error)
            }
        }

        /// The same text as ``description`` (see
        /// ``TobyError/localizedDescription``).
        public var localizedDescription: String { description }
    }

    /// Waits for the next message and lends its bytes to `body` as a
    /// `RawSpan`, which cannot escape the closure: the zero-copy receive with
    /// the compiler checking the lifetime.
    ///
    /// The bytes are lent exactly as by ``receive(_:)``: in place in the ring
    /// buffer, or in one scratch copy for a frame that wraps around the ring's
    /// end, or in the frame's own storage when it is larger than the ring. The
    /// configured ``TobyConfiguration/readTimeout`` applies. Do not call other
    /// receive methods of this receiver from `body`.
    ///
    /// ```swift
    /// while let sum = try receiver.withNextMessage({ span in
    ///     (0..<span.byteCount).reduce(0) { $0 &+ Int(span.unsafeLoad(fromByteOffset: $1, as: UInt8.self)) }
    /// }) {
    ///     print(sum)
    /// }
    /// ```
    ///
    /// **When `body` throws**, the message it was lent is consumed all the
    /// same: it is released from the ring and will not be lent again. The
    /// receiver stays usable, and the next call lends the next message. The
    /// error is rethrown as ``BodyFailure/body(_:)``, with its own type.
    ///
    /// - Parameter body: Reads the message. Its error type `BodyError` is
    ///   kept as it is.
    /// - Returns: What `body` returned, or `nil` once the peer has closed the
    ///   stream cleanly and every message was delivered.
    /// - Throws: ``BodyFailure/receive(_:)`` with the ``TobyError`` that
    ///   ``receive()`` would throw (the body was not called), or
    ///   ``BodyFailure/body(_:)`` with what `body` threw.
    public func withNextMessage<Result, BodyError: Error>(
        _ body: (RawSpan) throws(BodyError) -> Result
    ) throws(BodyFailure<BodyError>) -> Result? {
        var bodyError: BodyError?
        let lent: Result??
        do throws(TobyError) {
            lent = try lend { span -> Result? in
                do throws(BodyError) { return try body(span) } catch {
                    bodyError = error
                    return nil
                }
            }
        } catch {
            throw .receive(error)
        }
        if let bodyError { throw .body(bodyError) }
        return lent.flatMap { $0 }
    }

    /// Waits for the next message and lends its bytes to a `body` that
    /// cannot fail, as a `RawSpan` that cannot escape the closure.
    ///
    /// The same receive as ``withNextMessage(_:)-jxf7``; with nothing for the
    /// body to throw, only the receive's ``TobyError`` remains.
    ///
    /// ```swift
    /// while let count = try receiver.withNextMessage({ span in span.byteCount }) {
    ///     print("\(count) bytes")
    /// }
    /// ```
    ///
    /// - Parameter body: Reads the message.
    /// - Returns: What `body` returned, or `nil` once the peer has closed the
    ///   stream cleanly and every message was delivered.
    /// - Throws: ``TobyError`` as ``receive()`` does.
    public func withNextMessage<Result>(_ body: (RawSpan) -> Result) throws(TobyError) -> Result? {
        try lend(body)
    }

    /// ``receive(_:)`` with its bytes as a span and its errors typed: it
    /// throws only ``TobyError`` because `body` cannot throw. `nil` is the
    /// end of the stream.
    private func lend<Result>(_ body: (RawSpan) -> Result) throws(TobyError) -> Result? {
        do {
            return try receive { buffer -> Result in
                // The span borrows `buffer`, valid for this closure only,
                // and the compiler keeps it from escaping `body`.
                body(unsafe RawSpan(_unsafeBytes: buffer))
            }
        } catch let error as TobyError {
            throw error
        } catch {
            preconditionFailure("receive(_:) throws only TobyError when its body cannot throw: \(error)")
        }
    }
}
#endif
