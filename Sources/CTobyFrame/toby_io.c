/* The system-call seam: the one place this library calls recvmsg/sendmsg. */
#include "ctobyframe.h"

#include <errno.h>

static ssize_t system_recvmsg(void *ctx, int fd, struct msghdr *msg, int flags) {
    (void)ctx;
    ssize_t n = recvmsg(fd, msg, flags);
    return n < 0 ? -errno : n;
}

static ssize_t system_sendmsg(void *ctx, int fd, const struct msghdr *msg,
                              int flags) {
    (void)ctx;
    ssize_t n = sendmsg(fd, msg, flags);
    return n < 0 ? -errno : n;
}

/* Immutable: sharing it between readers, writers and threads is safe. */
static const toby_io system_io = {system_recvmsg, system_sendmsg, NULL};

const toby_io *toby_io_system(void) { return &system_io; }
