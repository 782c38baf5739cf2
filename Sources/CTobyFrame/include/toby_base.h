/*
 * toby_base.h — the prefix, error codes and the I/O seam every part uses.
 * Part of the CTobyFrame mechanism; include "ctobyframe.h" for all of it.
 */
#ifndef TOBY_BASE_H
#define TOBY_BASE_H

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

#ifdef __cplusplus
}
#endif

#endif /* TOBY_BASE_H */
