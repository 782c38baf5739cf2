/*
 * Socket setup: address resolution, connect, listen, accept. Every fd is
 * created close-on-exec so a fork+exec in the application cannot leak it.
 */
#define _GNU_SOURCE
#include "ctobyframe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

static void set_nodelay(int fd) {
    int one = 1;
    /* Best effort: latency, not correctness, depends on it. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void close_keep_errno(int fd) {
    int saved = errno;
    (void)close(fd);
    errno = saved;
}

/*
 * connect(2) that survives signals: an interrupted connect goes on in the
 * background, so calling connect again would fail with EALREADY. Instead,
 * wait for the socket to become writable and read the outcome from SO_ERROR.
 */
static int connect_retrying(int s, const struct sockaddr *addr, socklen_t len) {
    if (connect(s, addr, len) == 0)
        return 0;
    if (errno != EINTR)
        return -errno;
    for (;;) {
        struct pollfd p = {.fd = s, .events = POLLOUT, .revents = 0};
        int n = poll(&p, 1, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        int error = 0;
        socklen_t error_len = sizeof(error);
        if (getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &error_len) != 0)
            return -errno;
        return -error;
    }
}

/* getaddrinfo for stream sockets; `flags` are added to AI_NUMERICSERV
 * (AI_PASSIVE to listen, AI_NUMERICHOST to never block). */
static int resolve(const char *host, uint16_t port, int flags,
                   struct addrinfo **out, int *gai_error) {
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | flags;
    int rc = getaddrinfo(host, service, &hints, out);
    if (gai_error != NULL)
        *gai_error = rc;
    if (rc == 0)
        return 0;
    if (rc == EAI_SYSTEM && errno != 0)
        return -errno;
    return TOBY_EINVAL;
}

/* Tries `attempt` on a new stream socket for each address host:port
 * resolves to, in turn, until one succeeds (0): that socket is then stored
 * in *fd, the caller's. A failed attempt's socket is closed. Returns 0, the
 * last failure's -errno (`none` if there was no address to try), or the
 * resolver's error. */
typedef int (*address_attempt)(int s, const struct addrinfo *ai, void *ctx);

static int each_address(const char *host, uint16_t port, int passive,
                        int *gai_error, int none, address_attempt attempt,
                        void *ctx, int *fd) {
    struct addrinfo *list = NULL;
    int rc = resolve(host, port, passive ? AI_PASSIVE : 0, &list, gai_error);
    if (rc != 0)
        return rc;
    rc = none;
    for (struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        int s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                       ai->ai_protocol);
        if (s < 0) {
            rc = -errno;
            continue;
        }
        rc = attempt(s, ai, ctx);
        if (rc == 0) {
            *fd = s;
            break;
        }
        close_keep_errno(s);
    }
    freeaddrinfo(list);
    return rc;
}

static int attempt_connect(int s, const struct addrinfo *ai, void *ctx) {
    (void)ctx;
    int rc = connect_retrying(s, ai->ai_addr, ai->ai_addrlen);
    if (rc == 0)
        set_nodelay(s);
    return rc;
}

int toby_socket_connect_tcp(const char *host, uint16_t port, int *fd,
                            int *gai_error) {
    return each_address(host, port, 0, gai_error, -ECONNREFUSED,
                        attempt_connect, NULL, fd);
}

static int unix_address(const char *path, struct sockaddr_un *sa) {
    size_t len = strlen(path);
    memset(sa, 0, sizeof(*sa));
    if (len == 0)
        return TOBY_EINVAL;
    if (len >= sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, len + 1);
    return 0;
}

size_t toby_socket_unix_path_max(void) {
    struct sockaddr_un sa;
    return sizeof(sa.sun_path) - 1;
}

/* The address of `path` and a new close-on-exec Unix stream socket for it. */
static int unix_socket(const char *path, struct sockaddr_un *sa, int *s) {
    int rc = unix_address(path, sa);
    if (rc != 0)
        return rc;
    *s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return *s < 0 ? -errno : 0;
}

int toby_socket_connect_unix(const char *path, int *fd) {
    struct sockaddr_un sa;
    int s = -1;
    int rc = unix_socket(path, &sa, &s);
    if (rc != 0)
        return rc;
    rc = connect_retrying(s, (struct sockaddr *)&sa, sizeof(sa));
    if (rc != 0) {
        (void)close(s);
        return rc;
    }
    *fd = s;
    return 0;
}

struct listen_request {
    int backlog;
    uint16_t *bound_port;
};

static int attempt_listen(int s, const struct addrinfo *ai, void *ctx) {
    const struct listen_request *req = ctx;
    int one = 1;
    (void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(s, req->backlog) != 0)
        return -errno;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(s, (struct sockaddr *)&ss, &len) != 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        *req->bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else
        *req->bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

int toby_socket_listen_tcp(const char *host, uint16_t port, int backlog,
                           int *fd, uint16_t *bound_port, int *gai_error) {
    struct listen_request req = {backlog, bound_port};
    return each_address(host, port, 1, gai_error, -EADDRNOTAVAIL,
                        attempt_listen, &req, fd);
}

int toby_socket_listen_unix(const char *path, int backlog, int *fd) {
    struct sockaddr_un sa;
    int s = -1;
    int rc = unix_socket(path, &sa, &s);
    if (rc != 0)
        return rc;
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(s, backlog) != 0) {
        rc = -errno;
        (void)close(s);
        return rc;
    }
    *fd = s;
    return 0;
}

static void describe_peer(int fd, const struct sockaddr_storage *ss,
                          char *out, size_t out_len) {
    if (out == NULL || out_len == 0)
        return;
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, out_len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, out_len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(out, out_len, "unix");
#ifdef SO_PEERCRED
        /* Unix peers all share the listener's path; their process id is
         * what tells them apart. */
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            snprintf(out, out_len, "pid %ld", (long)cred.pid);
#endif
    }
}

static int accept_with(int listen_fd, int flags, int *fd, char *peer,
                       size_t peer_len) {
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        int s = accept4(listen_fd, (struct sockaddr *)&ss, &len,
                        SOCK_CLOEXEC | flags);
        if (s < 0) {
            /* A connection the peer abandoned before we got to it is not
             * the listener's failure: take the next one (as libuv does). */
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return -errno;
        }
        if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
            set_nodelay(s);
        describe_peer(s, &ss, peer, peer_len);
        *fd = s;
        return 0;
    }
}

int toby_socket_accept(int listen_fd, int *fd, char *peer, size_t peer_len) {
    return accept_with(listen_fd, 0, fd, peer, peer_len);
}

int toby_socket_accept_nonblocking(int listen_fd, int *fd, char *peer,
                                   size_t peer_len) {
    int rc = accept_with(listen_fd, SOCK_NONBLOCK, fd, peer, peer_len);
    return rc == -EWOULDBLOCK ? -EAGAIN : rc;
}

int toby_socket_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (wanted != flags && fcntl(fd, F_SETFL, wanted) != 0)
        return -errno;
    return 0;
}

int toby_socket_resolve(const char *host, uint16_t port, int numeric_only,
                        toby_address *out, int capacity, int *gai_error) {
    if (host == NULL || out == NULL || capacity <= 0)
        return TOBY_EINVAL;
    struct addrinfo *list = NULL;
    int rc = resolve(host, port, numeric_only ? AI_NUMERICHOST : 0, &list,
                     gai_error);
    if (rc != 0)
        return rc;
    int count = 0;
    for (struct addrinfo *ai = list; ai != NULL && count < capacity;
         ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(out[count].storage))
            continue;
        memset(&out[count], 0, sizeof(out[count]));
        memcpy(&out[count].storage, ai->ai_addr, ai->ai_addrlen);
        out[count].length = ai->ai_addrlen;
        count++;
    }
    freeaddrinfo(list);
    return count > 0 ? count : TOBY_EINVAL;
}

static int connect_start(int family, const struct sockaddr *sa,
                         socklen_t len, int *fd) {
    int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -errno;
    if (family == AF_INET || family == AF_INET6)
        set_nodelay(s);
    int rc;
    do {
        rc = connect(s, sa, len);
    } while (rc != 0 && errno == EINTR);
    /* EINTR on a non-blocking connect leaves it in progress, as EINPROGRESS
     * does; the retry above then reports EALREADY, which means the same. */
    if (rc != 0 && errno != EINPROGRESS && errno != EALREADY) {
        int err = -errno;
        (void)close(s);
        return err;
    }
    *fd = s;
    return rc == 0 ? 0 : -EINPROGRESS;
}

int toby_socket_connect_start(const toby_address *address, int *fd) {
    if (address == NULL || fd == NULL)
        return TOBY_EINVAL;
    return connect_start(address->storage.ss_family,
                         (const struct sockaddr *)&address->storage,
                         address->length, fd);
}

int toby_socket_connect_unix_start(const char *path, int *fd) {
    struct sockaddr_un sa;
    int rc = unix_address(path, &sa);
    if (rc != 0)
        return rc;
    return connect_start(AF_UNIX, (const struct sockaddr *)&sa, sizeof(sa), fd);
}

int toby_socket_connect_finish(int fd) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -errno;
    return -err;
}
