/*
 * toby_socket.h — listening, connecting (blocking and non-blocking), resolving and accepting.
 * Part of the CTobyFrame mechanism; include "ctobyframe.h" for all of it.
 */
#ifndef TOBY_SOCKET_H
#define TOBY_SOCKET_H

#include "toby_base.h"
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#endif /* TOBY_SOCKET_H */
