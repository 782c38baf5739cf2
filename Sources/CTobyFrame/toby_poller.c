/*
 * Readiness notification for async receivers: a thin layer over epoll and
 * eventfd, which Swift's Glibc module does not export. No threads here;
 * the caller runs the wait loop.
 */
#include "ctobyframe.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>

int toby_poller_create(int *epoll_fd, int *wake_fd) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    int ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ev < 0) {
        int rc = -errno;
        (void)close(ep);
        return rc;
    }
    struct epoll_event event = {.events = EPOLLIN, .data = {.fd = ev}};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &event) != 0) {
        int rc = -errno;
        (void)close(ev);
        (void)close(ep);
        return rc;
    }
    *epoll_fd = ep;
    *wake_fd = ev;
    return 0;
}

int toby_poller_arm(int epoll_fd, int fd, int registered) {
    struct epoll_event event = {
        .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data = {.fd = fd}};
    int op = registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epoll_fd, op, fd, &event) != 0)
        return -errno;
    return 0;
}

int toby_poller_disarm(int epoll_fd, int fd) {
    struct epoll_event unused = {0};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, &unused) != 0)
        return -errno;
    return 0;
}

int toby_poller_wait(int epoll_fd, int wake_fd, int *ready, int capacity,
                     int timeout_ms) {
    struct epoll_event events[64];
    if (capacity > 64)
        capacity = 64;
    if (capacity <= 0)
        return -EINVAL;
    int n = epoll_wait(epoll_fd, events, capacity, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (events[i].data.fd == wake_fd) {
            uint64_t drained;
            /* EAGAIN just means another wait already drained it. */
            (void)read(wake_fd, &drained, sizeof(drained));
            continue;
        }
        ready[count++] = events[i].data.fd;
    }
    return count;
}

int toby_poller_wake(int wake_fd) {
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(wake_fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is saturated, so a wake-up is pending anyway. */
    if (n < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

#else

int toby_poller_create(int *epoll_fd, int *wake_fd) {
    (void)epoll_fd;
    (void)wake_fd;
    return -ENOSYS;
}
int toby_poller_arm(int epoll_fd, int fd, int registered) {
    (void)epoll_fd; (void)fd; (void)registered;
    return -ENOSYS;
}
int toby_poller_disarm(int epoll_fd, int fd) {
    (void)epoll_fd; (void)fd;
    return -ENOSYS;
}
int toby_poller_wait(int epoll_fd, int wake_fd, int *ready, int capacity,
                     int timeout_ms) {
    (void)epoll_fd; (void)wake_fd; (void)ready; (void)capacity; (void)timeout_ms;
    return -ENOSYS;
}
int toby_poller_wake(int wake_fd) {
    (void)wake_fd;
    return -ENOSYS;
}

#endif
