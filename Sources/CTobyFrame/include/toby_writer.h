/*
 * toby_writer.h — the one writer: frames gathered into sendmsg calls, small ones staged together.
 * Part of the CTobyFrame mechanism; include "ctobyframe.h" for all of it.
 */
#ifndef TOBY_WRITER_H
#define TOBY_WRITER_H

#include "toby_base.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif

#endif /* TOBY_WRITER_H */
