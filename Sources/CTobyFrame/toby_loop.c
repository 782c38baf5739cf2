/*
 * The event-loop mechanism: epoll with caller-chosen 64-bit tokens and an
 * eventfd wake-up. Every system call goes through a toby_loop_io table, so
 * tests drive token handling, wake-up draining and EINTR with fakes.
 */
#define _GNU_SOURCE 1
#include "ctobyframe.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- the system table ---------------------------------------------------- */

static uint32_t to_epoll(uint32_t interest) {
    uint32_t e = 0;
    if (interest & TOBY_LOOP_READ)
        e |= EPOLLIN | EPOLLRDHUP;
    if (interest & TOBY_LOOP_WRITE)
        e |= EPOLLOUT;
    if (interest & TOBY_LOOP_EXCLUSIVE) {
        /* EPOLLEXCLUSIVE admits only EPOLLIN/OUT/WAKEUP/ET (else EINVAL);
         * it is meant for listeners, where RDHUP means nothing. */
        e = (e & ~(uint32_t)EPOLLRDHUP) | EPOLLEXCLUSIVE;
    }
    return e;
}

static uint32_t from_epoll(uint32_t e) {
    uint32_t events = 0;
    if (e & (EPOLLIN | EPOLLPRI))
        events |= TOBY_LOOP_READ;
    if (e & EPOLLOUT)
        events |= TOBY_LOOP_WRITE;
    if (e & (EPOLLHUP | EPOLLRDHUP))
        events |= TOBY_LOOP_HANGUP;
    if (e & EPOLLERR)
        events |= TOBY_LOOP_ERROR;
    return events;
}

static int sys_create(void *ctx) {
    (void)ctx;
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int sys_create_wake(void *ctx) {
    (void)ctx;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

static int sys_control(void *ctx, int epoll_fd, int op, int fd,
                       uint32_t interest, uint64_t token) {
    (void)ctx;
    static const int ops[3] = {EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL};
    if (op < 0 || op > 2)
        return -EINVAL;
    struct epoll_event event;
    memset(&event, 0, sizeof(event));
    event.events = to_epoll(interest);
    event.data.u64 = token;
    return epoll_ctl(epoll_fd, ops[op], fd, &event) == 0 ? 0 : -errno;
}

static int sys_wait(void *ctx, int epoll_fd, toby_loop_event *events,
                    int capacity, int timeout_ms) {
    (void)ctx;
    struct epoll_event raw[TOBY_LOOP_MAX_EVENTS];
    if (capacity > TOBY_LOOP_MAX_EVENTS)
        capacity = TOBY_LOOP_MAX_EVENTS;
    int n = epoll_wait(epoll_fd, raw, capacity, timeout_ms);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        events[i].token = raw[i].data.u64;
        events[i].events = from_epoll(raw[i].events);
    }
    return n;
}

static int sys_signal(void *ctx, int wake_fd) {
    (void)ctx;
    uint64_t one = 1;
    return write(wake_fd, &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0 : -errno;
}

static int sys_drain(void *ctx, int wake_fd) {
    (void)ctx;
    uint64_t count;
    return read(wake_fd, &count, sizeof(count)) == (ssize_t)sizeof(count) ? 0 : -errno;
}

static int sys_close(void *ctx, int fd) {
    (void)ctx;
    return close(fd) == 0 ? 0 : -errno;
}

static const toby_loop_io system_loop_io = {
    .create = sys_create,
    .create_wake = sys_create_wake,
    .control = sys_control,
    .wait = sys_wait,
    .signal = sys_signal,
    .drain = sys_drain,
    .close = sys_close,
    .ctx = NULL,
};

const toby_loop_io *toby_loop_io_system(void) { return &system_loop_io; }

/* ---- the loop ------------------------------------------------------------ */

int toby_loop_open(toby_loop *loop, const toby_loop_io *io) {
    if (loop == NULL || io == NULL)
        return TOBY_EINVAL;
    int ep = io->create(io->ctx);
    if (ep < 0)
        return ep;
    int wake = io->create_wake(io->ctx);
    if (wake < 0) {
        (void)io->close(io->ctx, ep);
        return wake;
    }
    int rc = io->control(io->ctx, ep, 0, wake, TOBY_LOOP_READ,
                         TOBY_LOOP_WAKE_TOKEN);
    if (rc != 0) {
        (void)io->close(io->ctx, wake);
        (void)io->close(io->ctx, ep);
        return rc;
    }
    loop->io = io;
    loop->epoll_fd = ep;
    loop->wake_fd = wake;
    return 0;
}

void toby_loop_close(toby_loop *loop) {
    (void)loop->io->close(loop->io->ctx, loop->wake_fd);
    (void)loop->io->close(loop->io->ctx, loop->epoll_fd);
    loop->wake_fd = -1;
    loop->epoll_fd = -1;
}

int toby_loop_add(toby_loop *loop, int fd, uint64_t token, uint32_t interest) {
    if (token == TOBY_LOOP_WAKE_TOKEN)
        return TOBY_EINVAL;
    return loop->io->control(loop->io->ctx, loop->epoll_fd, 0, fd, interest,
                             token);
}

int toby_loop_modify(toby_loop *loop, int fd, uint64_t token,
                     uint32_t interest) {
    if (token == TOBY_LOOP_WAKE_TOKEN || (interest & TOBY_LOOP_EXCLUSIVE))
        return TOBY_EINVAL;
    return loop->io->control(loop->io->ctx, loop->epoll_fd, 1, fd, interest,
                             token);
}

int toby_loop_remove(toby_loop *loop, int fd) {
    return loop->io->control(loop->io->ctx, loop->epoll_fd, 2, fd, 0, 0);
}

int toby_loop_wait(toby_loop *loop, toby_loop_event *events, int capacity,
                   int timeout_ms) {
    if (events == NULL || capacity <= 0)
        return TOBY_EINVAL;
    if (capacity > TOBY_LOOP_MAX_EVENTS)
        capacity = TOBY_LOOP_MAX_EVENTS;
    int n = loop->io->wait(loop->io->ctx, loop->epoll_fd, events, capacity,
                           timeout_ms);
    if (n == -EINTR)
        return 0; /* the caller recomputes its timeout and waits again */
    if (n < 0)
        return n;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (events[i].token == TOBY_LOOP_WAKE_TOKEN) {
            /* -EAGAIN: already drained; any other error leaves the counter
             * set, so the next wait returns at once rather than missing a
             * wake-up. */
            (void)loop->io->drain(loop->io->ctx, loop->wake_fd);
            continue;
        }
        events[kept++] = events[i];
    }
    return kept;
}

int toby_loop_wake(const toby_loop *loop) {
    int rc;
    do {
        rc = loop->io->signal(loop->io->ctx, loop->wake_fd);
    } while (rc == -EINTR);
    /* EAGAIN: the counter is saturated, so a wake-up is pending anyway. */
    return rc == -EAGAIN ? 0 : rc;
}

int toby_loop_timeout_ms(uint64_t now_ns, uint64_t deadline_ns) {
    if (deadline_ns == UINT64_MAX)
        return -1;
    if (deadline_ns <= now_ns)
        return 0;
    uint64_t wait = deadline_ns - now_ns;
    /* Rounded up without overflow near UINT64_MAX. */
    uint64_t ms = wait / 1000000u + (wait % 1000000u != 0);
    return ms > (uint64_t)INT32_MAX ? INT32_MAX : (int)ms;
}
