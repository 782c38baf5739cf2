/*
 * toby_reader.h — the frame reader: a ring buffer, frames decoded in place, large frames read straight into their own storage.
 * Part of the CTobyFrame mechanism; include "ctobyframe.h" for all of it.
 */
#ifndef TOBY_READER_H
#define TOBY_READER_H

#include "toby_base.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif

#endif /* TOBY_READER_H */
