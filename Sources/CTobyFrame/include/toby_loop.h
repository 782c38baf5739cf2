/*
 * toby_loop.h — the event-loop mechanism: epoll with 64-bit tokens, an eventfd wake-up, timeouts.
 * Part of the CTobyFrame mechanism; include "ctobyframe.h" for all of it.
 */
#ifndef TOBY_LOOP_H
#define TOBY_LOOP_H

#include "toby_base.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif

#endif /* TOBY_LOOP_H */
