import Glibc

/// OS threads of our own (pthreads, no Foundation), detached or joinable:
/// name resolution for async connect, a server's graceful shutdown, the
/// tool's connection threads and the benchmarks' workers. Work that blocks
/// runs on them, so no task of Swift's cooperative pool ever blocks.
package enum Threads {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// A started thread, to be joined once.
    package struct Handle: @unchecked Sendable {
        fileprivate let thread: pthread_t

        /// Waits until the thread's body has returned.
        package func join() {
            _ = pthread_join(thread, nil)
        }
    }

    /// Starts a detached thread running `body`.
    ///
    /// - Parameter stackSize: Bytes of stack, or nil for the system default.
    /// - Throws: ``TobyError/system(operation:errno:)`` for `pthread_create`.
    package static func spawn(stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) throws(TobyError) {
        let handle = try start(stackSize: stackSize, body)
        _ = pthread_detach(handle.thread)
    }

    /// Starts a thread running `body`, to be joined with ``Handle/join()``.
    ///
    /// - Parameter stackSize: Bytes of stack, or nil for the system default.
    /// - Throws: ``TobyError/system(operation:errno:)`` for `pthread_create`.
    package static func start(stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) throws(TobyError) -> Handle {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if let stackSize {
            let rc = pthread_attr_setstacksize(&attributes, stackSize)
            if rc != 0 { throw .system(operation: "pthread_attr_setstacksize", errno: rc) }
        }
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, &attributes,
            { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw .system(operation: "pthread_create", errno: rc)
        }
        return Handle(thread: thread)
    }
}
