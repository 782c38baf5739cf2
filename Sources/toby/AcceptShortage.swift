import TobyTCP

/// Reports a server's running out of descriptors once per episode, on
/// stderr: one line when accepting first fails, one when it works again.
/// Every `--api` backs off and leaves the waiting clients in the backlog
/// (none is refused), so without these lines they would just wait, unseen;
/// with a line per failed accept, a shortage would flood stderr.
final class AcceptShortage: TobyServerObserver, @unchecked Sendable {
    private let lock = ConditionLock()
    // Guarded by lock.
    private var failures = 0
    private var since: UInt64 = 0

    /// `accept` failed with `error`.
    func failed(_ error: TobyError) {
        let first = lock.withLock { () -> Bool in
            failures += 1
            if failures == 1 { since = monotonicNanoseconds() }
            return failures == 1
        }
        if first {
            Output.error(
                "\(error); connections wait in the backlog until some are free (reported again once accepting works)")
        }
    }

    /// A connection was accepted on `address`.
    func accepted(on address: String) {
        guard
            let (count, seconds) = lock.withLock({ () -> (Int, Double)? in
                guard failures > 0 else { return nil }
                defer { failures = 0 }
                return (failures, Double(monotonicNanoseconds() &- since) / 1e9)
            })
        else { return }
        let tenths = Double(Int((seconds * 10).rounded())) / 10
        Output.error("accepting again on \(address) after \(count) failed accept\(count == 1 ? "" : "s") in \(tenths) s")
    }

    // As the event-loop servers' observer.

    func connectionOpened(_ connection: TobyServerObserverEvent) { accepted(on: connection.server) }

    func connectionClosed(_ connection: TobyServerObserverEvent, error: TobyError?) {}

    func acceptFailed(server: String, error: TobyError) { failed(error) }
}
