/*
 * ctobyframe.h — the byte-level mechanism of TobyTCP.
 *
 * TobyTcp frames every message as an 8-byte unsigned length (payload bytes,
 * not counting the 8) followed by the payload:
 *
 *     +----------------------------+---------------------------+
 *     | length: 8 bytes (LE or BE) | payload: `length` bytes   |
 *     +----------------------------+---------------------------+
 *
 *     "toby is a good dog" (18 bytes), little-endian:
 *     12 00 00 00 00 00 00 00 74 6f 62 79 20 69 73 ...
 *
 * This library is a mechanism only: it has no threads, no locks, no global
 * mutable state, no logging, never allocates and never touches signal
 * dispositions. Every object lives in memory the caller provides. Policy
 * (blocking, threads, queues, user-facing errors) belongs to the caller.
 *
 * Return values follow libuv: >= 0 is success, a negative value is either
 * -errno (for example -ECONNRESET) or one of the TOBY_E* codes below, which
 * lie outside errno's range. toby_strerror() describes both.
 *
 * Thread safety: none. A toby_reader or toby_writer must be used by one
 * thread at a time; the caller serialises access.
 */
#ifndef CTOBYFRAME_H
#define CTOBYFRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Prefix                                                                   */
/* ------------------------------------------------------------------------ */

/** Size of the length prefix on the wire. */
#define TOBY_PREFIX_SIZE 8

/** Byte order of the length prefix. */
typedef enum toby_byte_order {
    /** The TobyTcp protocol text's order, and TobyTCP's default. */
    TOBY_LITTLE_ENDIAN = 0,
    /** The order the original Rust `tobytcp` crate puts on the wire. */
    TOBY_BIG_ENDIAN = 1
} toby_byte_order;

/** Writes `length` as an 8-byte prefix into `out` (8 bytes, caller-owned). */
void toby_prefix_encode(uint64_t length, toby_byte_order order,
                        uint8_t out[TOBY_PREFIX_SIZE]);

/** Reads the length from the 8-byte prefix at `in` (caller-owned). */
uint64_t toby_prefix_decode(const uint8_t in[TOBY_PREFIX_SIZE],
                            toby_byte_order order);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/** A prefix announced a payload longer than the reader's limit. Sticky. */
#define TOBY_EFRAMETOOLARGE (-30001)
/** The peer closed the stream in the middle of a frame. Sticky. */
#define TOBY_ETRUNCATED (-30002)
/** An argument broke a documented precondition (bad capacity, ...). */
#define TOBY_EINVAL (-30003)

/**
 * Describes an error code: a TOBY_E* code, or -errno. The returned string is
 * static and must not be freed. Unknown codes get a generic text.
 */
const char *toby_strerror(int err);

/* ------------------------------------------------------------------------ */
/* I/O seam                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * Every system call of this library goes through one of these tables, so
 * tests can inject short reads and writes, EINTR and EAGAIN.
 *
 * Each function returns what the system call returns on success, or -errno
 * on failure (never -1 with errno set). `ctx` is passed back unchanged.
 */
typedef struct toby_io {
    /** Like recvmsg(2): scatter-read into msg->msg_iov. */
    ssize_t (*recvmsg)(void *ctx, int fd, struct msghdr *msg, int flags);
    /** Like sendmsg(2): gather-write msg->msg_iov. */
    ssize_t (*sendmsg)(void *ctx, int fd, const struct msghdr *msg, int flags);
    /** Opaque pointer handed to the functions above; owned by the caller. */
    void *ctx;
} toby_io;

/**
 * The table that calls the real recvmsg(2) and sendmsg(2). Points to
 * immutable static storage; never free it.
 */
const toby_io *toby_io_system(void);

/* ------------------------------------------------------------------------ */
/* Reader                                                                   */
/* ------------------------------------------------------------------------ */

/** Statuses of toby_reader_next() (errors are negative). */
enum {
    /** No complete frame is buffered: call toby_reader_fill(). */
    TOBY_NEED_MORE = 0,
    /** A complete frame is in the ring; see toby_frame. Call
     *  toby_reader_consume() when done with its bytes. */
    TOBY_FRAME = 1,
    /** The next frame does not fit in the ring. Its payload must be read
     *  into a caller-provided destination of frame.length bytes with
     *  toby_reader_direct_fill(). */
    TOBY_FRAME_DIRECT = 2,
    /** The peer ended the stream cleanly, at a frame boundary. */
    TOBY_END = 3
};

/**
 * One frame, as described by toby_reader_next().
 *
 * For TOBY_FRAME the payload lies in the ring as one or two segments:
 * data[0]/len[0], then data[1]/len[1] (len[1] > 0 only when the frame wraps
 * around the end of the ring). The pointers are borrowed from the reader's
 * ring and stay valid until toby_reader_consume(); fills do not touch them.
 *
 * For TOBY_FRAME_DIRECT, `length` is the payload length and data/len
 * describe the part of the payload already buffered.
 *
 * For TOBY_EFRAMETOOLARGE, `length` is the announced length and `prefix`
 * holds the 8 bytes as they came off the wire.
 *
 * For TOBY_ETRUNCATED, `expected` is the size of the frame the peer left
 * unfinished (8 when the prefix itself was cut, else 8 + payload length) and
 * `received` how many of its bytes arrived.
 */
typedef struct toby_frame {
    const uint8_t *data[2];
    size_t len[2];
    uint64_t length;
    uint64_t expected;
    uint64_t received;
    uint8_t prefix[TOBY_PREFIX_SIZE];
} toby_frame;

/**
 * Per-connection reader: a ring buffer filled by one recvmsg() covering all
 * free space (two iovecs when the free space wraps) and a decoder that finds
 * complete frames in place, without copying.
 *
 * The fields are private; they are visible only so callers can allocate the
 * struct. Use the functions below.
 */
typedef struct toby_reader {
    uint8_t *ring;          /* borrowed: caller-owned, `capacity` bytes */
    size_t capacity;        /* power of two */
    size_t head;            /* free-running: first unconsumed byte */
    size_t tail;            /* free-running: one past the last byte read */
    uint64_t max_frame;     /* largest payload accepted */
    uint64_t direct_left;   /* payload bytes still owed to a direct frame */
    uint64_t direct_total;  /* that frame's payload length */
    size_t current;         /* ring bytes of the frame last returned */
    const toby_io *io;      /* borrowed: must outlive the reader */
    int fd;                 /* borrowed: the reader never closes it */
    int error;              /* sticky error, 0 if none */
    int eof;                /* the peer closed its side */
    toby_byte_order order;
    toby_frame failure;     /* details of the sticky error */
    uint64_t bytes_read;    /* every byte recvmsg returned, ring and direct
                               destinations alike (statistics); only grows */
} toby_reader;

/**
 * Initialises `r` (caller-owned storage).
 *
 * - `ring`: caller-owned buffer of `capacity` bytes; it must stay valid and
 *   untouched by the caller until the reader is no longer used. The reader
 *   never frees it.
 * - `capacity`: a power of two, at least 16.
 * - `max_frame`: the largest payload length accepted; checked as soon as
 *   the 8 prefix bytes are known, before the caller allocates anything.
 * - `fd`: the stream socket to read; never closed by the reader.
 * - `io`: the syscall table (toby_io_system() for the real one); borrowed.
 *
 * Returns 0, or TOBY_EINVAL if capacity is not a power of two >= 16 or a
 * pointer is NULL.
 */
int toby_reader_init(toby_reader *r, uint8_t *ring, size_t capacity,
                     uint64_t max_frame, toby_byte_order order, int fd,
                     const toby_io *io);

/**
 * Decodes the next frame from the buffered bytes. Returns TOBY_NEED_MORE,
 * TOBY_FRAME, TOBY_FRAME_DIRECT, TOBY_END, or a sticky error
 * (TOBY_EFRAMETOOLARGE, TOBY_ETRUNCATED, or the -errno a fill hit). An error
 * is only reported once every complete frame before it has been returned
 * and consumed. `f` (caller-owned) receives the details.
 *
 * Calling next() again before consume() returns the same frame.
 */
int toby_reader_next(toby_reader *r, toby_frame *f);

/** Releases the frame last returned as TOBY_FRAME; its ring bytes become
 *  free space. */
void toby_reader_consume(toby_reader *r);

/**
 * Reads once from the socket into all free ring space (one recvmsg, two
 * iovecs when the free space wraps). `flags` are passed to recvmsg (e.g.
 * MSG_DONTWAIT). EINTR is retried. Returns the bytes read (> 0), 0 at end of
 * stream (the next toby_reader_next() then reports TOBY_END or
 * TOBY_ETRUNCATED), -EAGAIN / -EWOULDBLOCK when a non-blocking read found
 * nothing (not sticky), or a sticky -errno. Returns -ENOBUFS (not sticky)
 * if the ring is full, which the caller avoids by consuming frames first.
 */
ssize_t toby_reader_fill(toby_reader *r, int flags);

/** Most bytes a direct fill reads into the ring past the direct frame. */
#define TOBY_DIRECT_READAHEAD 4096

/**
 * For a TOBY_FRAME_DIRECT frame: one recvmsg whose iovecs are
 * [dst .. dst+dst_len) followed by up to TOBY_DIRECT_READAHEAD bytes of
 * free ring space, so the rest of the
 * payload lands straight in its destination and the bytes of the frames
 * after it land in the ring. `dst` is caller-owned and only used during the
 * call; `dst_len` must not exceed the payload bytes still owed. Returns the
 * bytes written to dst (> 0), -EAGAIN for a non-blocking read that found
 * nothing, TOBY_ETRUNCATED if the peer closed first, or a sticky -errno.
 * Once every payload byte has arrived the frame is done and
 * toby_reader_next() moves on.
 */
ssize_t toby_reader_direct_fill(toby_reader *r, void *dst, size_t dst_len,
                                int flags);

/* ------------------------------------------------------------------------ */
/* Writer                                                                   */
/* ------------------------------------------------------------------------ */

/** Vectors per sendmsg call; IOV_MAX on Linux and the BSDs. */
#define TOBY_WRITER_IOV 1024

/** Frames whose payload is at most this many bytes are copied, prefix and
 *  all, into the writer's staging buffer instead of taking two iovecs: for
 *  small frames a user-space copy is far cheaper than the kernel's
 *  per-segment cost of walking an iovec. The one threshold of TobyTCP: the
 *  event loop's output queue copies frames up to this size together too. */
#define TOBY_WRITER_COALESCE 512

/** Bytes of the writer's staging buffer for coalesced small frames. */
#define TOBY_WRITER_STAGE (32 * 1024)

/** One outgoing message: a borrowed payload (or, for
 *  toby_writer_write_raw(), bytes that are already framed). The writer never
 *  copies or frees it unless staging it; it must stay valid for the
 *  duration of the write call. */
typedef struct toby_out {
    const void *data;
    size_t len;
} toby_out;

/**
 * The one writer of TobyTCP, for the blocking client and the event loops
 * alike. Gathers frames into sendmsg calls of up to TOBY_WRITER_IOV
 * vectors, sent with MSG_NOSIGNAL so a gone peer yields -EPIPE instead of
 * SIGPIPE. A payload larger than TOBY_WRITER_COALESCE goes out from the
 * caller's memory as its own iovec (never copied); smaller frames are
 * copied with their prefix into a staging buffer, so a batch of small
 * frames leaves in a few large vectors. toby_writer_write_raw() sends bytes
 * that are already framed through the same loop. The descriptor is set per
 * writer; an event loop re-initialises its one writer for each connection
 * it flushes (toby_writer_init is cheap).
 *
 * The fields are private scratch space; visible only so callers can
 * allocate the struct (about 56 KiB; pages are touched only as used).
 */
typedef struct toby_writer {
    const toby_io *io;      /* borrowed: must outlive the writer */
    int fd;                 /* borrowed: never closed by the writer */
    toby_byte_order order;
    struct iovec iov[TOBY_WRITER_IOV];
    uint8_t prefix[TOBY_WRITER_IOV][TOBY_PREFIX_SIZE];
    uint8_t stage[TOBY_WRITER_STAGE];
} toby_writer;

/** Initialises `w` (caller-owned storage). Returns 0 or TOBY_EINVAL. */
int toby_writer_init(toby_writer *w, toby_byte_order order, int fd,
                     const toby_io *io);

/**
 * Writes frames[*index ..< count], resuming `*offset` bytes into frame
 * *index (the offset counts its 8 prefix bytes). `frames` is caller-owned
 * and only read during the call. EINTR is retried and partial writes are
 * resumed at the exact byte; progress is stored in *index / *offset before
 * every return, so a caller can resume after -EAGAIN.
 *
 * `flags` are added to MSG_NOSIGNAL (e.g. MSG_DONTWAIT).
 *
 * Returns 0 once everything is written (*index == count, *offset == 0),
 * -EAGAIN / -EWOULDBLOCK if the socket buffer is full (a sendmsg that
 * returns 0 bytes is reported the same way), or another -errno (e.g.
 * -EPIPE, -ECONNRESET).
 */
int toby_writer_write(toby_writer *w, const toby_out *frames, size_t count,
                      size_t *index, uint64_t *offset, int flags);

/**
 * toby_writer_write() for bytes that are already framed (an event loop's
 * queued output: coalesced small frames, large payloads after their prefix,
 * frames forwarded unchanged from a ring): each item goes out as it is, as
 * one vector, never staged and with no prefix added, so `*offset` counts
 * the item's bytes only. Empty items are skipped (never a sendmsg without
 * bytes), and the progress stored never rests on one. The byte order is
 * not used. Returns as toby_writer_write().
 */
int toby_writer_write_raw(toby_writer *w, const toby_out *items, size_t count,
                          size_t *index, uint64_t *offset, int flags);

/* ------------------------------------------------------------------------ */
/* Sockets                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * Connects a TCP stream socket to host:port (numeric or resolved with
 * getaddrinfo, trying each address in turn), with TCP_NODELAY set.
 * On success returns 0 and stores a new file descriptor in *fd, owned by the
 * caller. On failure returns -errno from the last attempt, or
 * TOBY_EINVAL for a name that does not resolve (*gai_error then holds the
 * getaddrinfo code for gai_strerror; it may be NULL).
 */
int toby_socket_connect_tcp(const char *host, uint16_t port, int *fd,
                            int *gai_error);

/**
 * Connects to a Unix domain stream socket at `path`. Returns 0 and a new
 * caller-owned fd, -ENAMETOOLONG if `path` does not fit in sun_path
 * (never truncated), or -errno.
 */
int toby_socket_connect_unix(const char *path, int *fd);

/**
 * Creates a listening TCP socket bound to host:port (port 0 picks an
 * ephemeral port) with SO_REUSEADDR. Returns 0 and a caller-owned fd, the
 * bound port in *bound_port, or -errno / TOBY_EINVAL as for connect.
 */
int toby_socket_listen_tcp(const char *host, uint16_t port, int backlog,
                           int *fd, uint16_t *bound_port, int *gai_error);

/**
 * Creates a listening Unix domain socket at `path`. Returns 0 and a
 * caller-owned fd, -ENAMETOOLONG if the path does not fit in sun_path, or
 * -errno (-EADDRINUSE if the path exists). The caller removes the file.
 */
int toby_socket_listen_unix(const char *path, int backlog, int *fd);

/**
 * accept(2) with close-on-exec, retrying EINTR, and TCP_NODELAY on TCP
 * connections. Writes the peer's address as text ("1.2.3.4:5", "[::1]:5",
 * or for a Unix socket "pid N" where SO_PEERCRED exists, else "unix") into
 * `peer` (caller-owned, `peer_len` bytes, may be NULL).
 * Returns 0 and a caller-owned fd, or -errno.
 */
int toby_socket_accept(int listen_fd, int *fd, char *peer, size_t peer_len);

/** Largest Unix socket path, in bytes, that fits sun_path with its NUL. */
size_t toby_socket_unix_path_max(void);

/* ------------------------------------------------------------------------ */
/* Ring swapping (for event loops that pool rings)                           */
/* ------------------------------------------------------------------------ */

/**
 * Gives the reader another ring, or none: an event loop serving thousands of
 * connections lends a ring to a connection only while it has bytes buffered.
 * Allowed only while nothing is buffered (toby_reader_buffered() == 0 and no
 * frame is awaiting toby_reader_consume()); a direct frame in progress keeps
 * its state, since its payload never lives in the ring.
 *
 * - `ring`: caller-owned, `capacity` bytes, a power of two >= 16; or NULL
 *   with `capacity` 0 to detach (fills then return -ENOBUFS, not sticky).
 *   The previous ring is no longer referenced once this returns.
 *
 * Returns 0, or TOBY_EINVAL if bytes are buffered or the ring is invalid.
 */
int toby_reader_set_ring(toby_reader *r, uint8_t *ring, size_t capacity);

/** A payload lent in place by toby_reader_take(). */
typedef struct toby_span {
    const uint8_t *data;
    size_t len;
} toby_span;

/**
 * The fast path of toby_reader_next() for a batch: takes up to `max`
 * complete frames that lie unwrapped in the ring, consumes each, and
 * describes their payloads in `out` (caller-owned, `max` entries). Their
 * bytes stay valid until the next fill (consumed space is only reused by a
 * fill), and each payload's 8 prefix bytes lie right before it. Stops at the
 * first frame it does not handle — incomplete, wrapping around the ring's
 * end, larger than the ring, over the limit — and at any pending error or
 * end of stream, all left for toby_reader_next() to report in order.
 * Returns the number of frames taken (0 when the next one needs next()).
 */
size_t toby_reader_take(toby_reader *r, toby_span *out, size_t max);

/** Bytes buffered in the ring and not yet consumed (a loop gives the ring
 *  back to its pool when this is 0). */
size_t toby_reader_buffered(const toby_reader *r);

/* ------------------------------------------------------------------------ */
/* Event loop mechanism (Linux epoll)                                       */
/* ------------------------------------------------------------------------ */

/*
 * What an event loop needs from the kernel, and nothing more: epoll with a
 * caller-chosen 64-bit token per registration, interest changes, a wake-up
 * for other threads, and a wait whose timeout the caller computes from its
 * own timers. No threads, no timers, no allocation. Registrations are
 * level-triggered.
 *
 * Tokens: the caller picks them. A loop that reuses descriptor numbers puts
 * a generation in its tokens, so an event queued for a closed descriptor is
 * never mistaken for the connection that got the same number next.
 */

/** Interest and event bits. */
enum {
    /** Interest: readable. Event: readable (or the peer closed). */
    TOBY_LOOP_READ = 1u << 0,
    /** Interest: writable. Event: writable. */
    TOBY_LOOP_WRITE = 1u << 1,
    /** Event only: hang-up (the peer closed, or both directions are shut). */
    TOBY_LOOP_HANGUP = 1u << 2,
    /** Event only: an error is pending on the socket (read it with a
     *  receive or SO_ERROR). */
    TOBY_LOOP_ERROR = 1u << 3,
    /** Interest only, and only at registration: wake one of the loops
     *  waiting on a descriptor that several loops share (a listener), not
     *  all of them (EPOLLEXCLUSIVE). Such a registration cannot be changed
     *  by toby_loop_modify(); remove it and add it again. */
    TOBY_LOOP_EXCLUSIVE = 1u << 4
};

/** The token of the loop's own wake-up descriptor; registrations may not
 *  use it. */
#define TOBY_LOOP_WAKE_TOKEN UINT64_MAX

/** Most events one toby_loop_wait() returns. */
#define TOBY_LOOP_MAX_EVENTS 256

/** One readiness event: the registration's token and TOBY_LOOP_* bits. */
typedef struct toby_loop_event {
    uint64_t token;
    uint32_t events;
} toby_loop_event;

/**
 * The loop's system calls, in the loop's own terms so fakes need no epoll
 * structures. Each returns what the call returns on success, or -errno
 * (never -1 with errno set).
 */
typedef struct toby_loop_io {
    /** epoll_create1(EPOLL_CLOEXEC). */
    int (*create)(void *ctx);
    /** eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK). */
    int (*create_wake)(void *ctx);
    /** epoll_ctl: op is 0 add, 1 modify, 2 delete; `interest` holds
     *  TOBY_LOOP_* bits. Returns 0 or -errno. */
    int (*control)(void *ctx, int epoll_fd, int op, int fd, uint32_t interest,
                   uint64_t token);
    /** epoll_wait into `events` (caller-owned, `capacity` <=
     *  TOBY_LOOP_MAX_EVENTS entries). Returns the count, or -errno. */
    int (*wait)(void *ctx, int epoll_fd, toby_loop_event *events, int capacity,
                int timeout_ms);
    /** Adds 1 to the wake-up counter (write(2) of a uint64_t 1). */
    int (*signal)(void *ctx, int wake_fd);
    /** Resets the wake-up counter (read(2) of its uint64_t). */
    int (*drain)(void *ctx, int wake_fd);
    /** close(2). */
    int (*close)(void *ctx, int fd);
    /** Opaque pointer handed to the functions above; owned by the caller. */
    void *ctx;
} toby_loop_io;

/** The table that calls the real epoll, eventfd, read, write and close.
 *  Immutable static storage; never free it. */
const toby_loop_io *toby_loop_io_system(void);

/** An epoll instance and its wake-up descriptor. Fields are private. */
typedef struct toby_loop {
    const toby_loop_io *io; /* borrowed: must outlive the loop */
    int epoll_fd;           /* owned: closed by toby_loop_close() */
    int wake_fd;            /* owned: closed by toby_loop_close() */
} toby_loop;

/**
 * Opens a loop in caller-owned storage: an epoll instance with its wake-up
 * descriptor registered under TOBY_LOOP_WAKE_TOKEN. Returns 0, or -errno
 * (-EMFILE when descriptors ran out; nothing is left open then).
 */
int toby_loop_open(toby_loop *loop, const toby_loop_io *io);

/** Closes both descriptors of an opened loop. Registrations vanish with
 *  the epoll instance; the registered descriptors stay open (the caller
 *  owns them). */
void toby_loop_close(toby_loop *loop);

/** Registers `fd` (borrowed) with `token` and TOBY_LOOP_READ / _WRITE /
 *  _EXCLUSIVE interest. Returns 0, -EEXIST if it is registered already,
 *  TOBY_EINVAL for the reserved token, or -errno. */
int toby_loop_add(toby_loop *loop, int fd, uint64_t token, uint32_t interest);

/** Changes a registration's interest (and token). Interest 0 keeps the
 *  registration but reports nothing except errors and hang-ups. */
int toby_loop_modify(toby_loop *loop, int fd, uint64_t token,
                     uint32_t interest);

/** Removes a registration. Call it before closing a descriptor that other
 *  processes may still share (a dup'd or inherited one); a descriptor
 *  closed for good leaves epoll by itself. */
int toby_loop_remove(toby_loop *loop, int fd);

/**
 * Waits up to `timeout_ms` (-1: until an event; 0: poll) and stores the
 * ready registrations in `events` (caller-owned, `capacity` entries, at
 * most TOBY_LOOP_MAX_EVENTS are used). A wake-up is drained and not
 * reported: the caller learns of it by looking at its own queue. Returns
 * the number of events (0 on timeout, after only a wake-up, or on EINTR),
 * or -errno.
 */
int toby_loop_wait(toby_loop *loop, toby_loop_event *events, int capacity,
                   int timeout_ms);

/** Wakes the loop's current or next toby_loop_wait(). The only function
 *  here that any thread may call at any time. Returns 0 or -errno. */
int toby_loop_wake(const toby_loop *loop);

/**
 * Milliseconds to wait until `deadline_ns` from `now_ns` (both on one
 * monotonic clock), rounded up so a timer never fires early, clamped to
 * INT32_MAX: -1 for UINT64_MAX ("no timer"), 0 for a deadline passed.
 */
int toby_loop_timeout_ms(uint64_t now_ns, uint64_t deadline_ns);

/** A resolved socket address, for a non-blocking connect. */
typedef struct toby_address {
    struct sockaddr_storage storage;
    socklen_t length;
} toby_address;

/**
 * Resolves host:port into up to `capacity` stream addresses (`out` is
 * caller-owned), in getaddrinfo's order. With `numeric_only` set it never
 * blocks (AI_NUMERICHOST) and fails with TOBY_EINVAL for a name; without,
 * a DNS name may block, so an event loop calls it on another thread.
 * Returns the count (> 0), TOBY_EINVAL (then *gai_error, if not NULL, holds
 * the getaddrinfo code), or -errno.
 */
int toby_socket_resolve(const char *host, uint16_t port, int numeric_only,
                        toby_address *out, int capacity, int *gai_error);

/**
 * Starts a non-blocking connect to `address` (borrowed) on a new
 * non-blocking, close-on-exec socket (TCP_NODELAY for TCP), stored in *fd and
 * owned by the caller. Returns 0 when connected at once, -EINPROGRESS when
 * the caller must wait for writability and then call
 * toby_socket_connect_finish(), or -errno (no descriptor is left open).
 */
int toby_socket_connect_start(const toby_address *address, int *fd);

/** Like toby_socket_connect_start() for a Unix socket path
 *  (-ENAMETOOLONG if it does not fit in sun_path). */
int toby_socket_connect_unix_start(const char *path, int *fd);

/** Once a started connect's socket is writable: 0 if it connected, else
 *  its -errno (from SO_ERROR). */
int toby_socket_connect_finish(int fd);

/** Sets or clears O_NONBLOCK on `fd` (borrowed). Returns 0 or -errno. */
int toby_socket_set_nonblocking(int fd, int on);

/**
 * Like toby_socket_accept() for a non-blocking listener: the new fd is
 * non-blocking too. Returns 0 and a caller-owned fd, -EAGAIN when no
 * connection is pending, or -errno (-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM
 * when the process or system ran out of descriptors or memory: the pending
 * connection stays in the backlog).
 */
int toby_socket_accept_nonblocking(int listen_fd, int *fd, char *peer,
                                   size_t peer_len);

#ifdef __cplusplus
}
#endif

#endif /* CTOBYFRAME_H */
