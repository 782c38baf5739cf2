#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Starts a detached OS thread running `body`. Used for the readiness poller:
/// a thread of our own, so no task of Swift's cooperative pool ever blocks.
///
/// - Parameter stackSize: The thread's stack in bytes; nil for the default.
/// - Throws: ``TobyError/system(operation:errno:)`` for `pthread_create`
///   (`EAGAIN` when the process or system is out of threads or memory);
///   `body` is then released without running.
func spawnDetachedThread(stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) throws(TobyError) {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    if let stackSize {
        let rc = pthread_attr_setstacksize(&attributes, stackSize)
        if rc != 0 { throw .system(operation: "pthread_attr_setstacksize", errno: rc) }
    }
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attributes, { raw in
        let box = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        throw .system(operation: "pthread_create", errno: rc)
    }
    pthread_detach(thread)
}
