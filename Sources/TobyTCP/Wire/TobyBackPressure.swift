/// When a connection's queued output holds back what produces it: above
/// ``highWaterMark`` unsent bytes a server stops reading the connection (no
/// new requests while the replies back up) and an async send suspends (it
/// never blocks a thread); both go on once the queue has drained to
/// ``lowWaterMark``. So a peer that never reads costs bounded memory.
///
/// One value, set the same way for servers (``TobyServer/Options/backPressure``)
/// and async clients (the `backPressure:` of ``TobyAsyncConnection``'s
/// connects). With ``TobyConfiguration/maxQueuedSendBytes`` (how much other
/// threads may hand a connection before they wait) and
/// ``TobyConfiguration/writeTimeout`` (how long an async send may wait for
/// room), it is all of TobyTCP's back-pressure configuration.
public struct TobyBackPressure: Sendable, Hashable {
    /// Queued output above which producers are held back. At least 1.
    /// Default 1 MiB.
    public var highWaterMark: Int
    /// Queued output at or below which they go on. In
    /// `0..<highWaterMark`. Default 256 KiB.
    public var lowWaterMark: Int

    /// Makes a back-pressure setting; the defaults suit most connections.
    public init(highWaterMark: Int = 1 << 20, lowWaterMark: Int = 256 << 10) {
        self.highWaterMark = highWaterMark
        self.lowWaterMark = lowWaterMark
    }

    func validate() throws(TobyError) {
        guard highWaterMark >= 1 else {
            throw .invalidConfiguration("the write high-water mark must be at least 1 (got \(highWaterMark))")
        }
        guard lowWaterMark >= 0, lowWaterMark < highWaterMark else {
            throw .invalidConfiguration(
                "the write low-water mark must be in 0..<high-water mark (got \(lowWaterMark), high \(highWaterMark))")
        }
    }
}
