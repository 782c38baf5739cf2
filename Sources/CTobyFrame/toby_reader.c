/*
 * The reader: a power-of-two ring filled by one recvmsg over all free space,
 * and an in-place decoder. head and tail are free-running counters; the
 * number of buffered bytes is tail - head (unsigned arithmetic stays exact
 * across wrap-around because capacity is far below SIZE_MAX).
 */
#include "toby_internal.h"
#include "toby_testing.h"

#include <errno.h>
#include <string.h>

static size_t ring_used(const toby_reader *r) { return r->tail - r->head; }

static size_t ring_mask(const toby_reader *r) { return r->capacity - 1; }

/* Copies n buffered bytes starting `skip` bytes after head into dst. */
static void ring_copy_out(const toby_reader *r, size_t skip, void *dst,
                          size_t n) {
    size_t start = (r->head + skip) & ring_mask(r);
    size_t first = r->capacity - start;
    if (first > n)
        first = n;
    memcpy(dst, r->ring + start, first);
    if (n > first)
        memcpy((uint8_t *)dst + first, r->ring, n - first);
}

/* Describes n buffered bytes starting `skip` after head as <= 2 segments. */
static void ring_segments(const toby_reader *r, size_t skip, size_t n,
                          toby_frame *f) {
    if (n == 0) {
        /* Also covers a detached ring (NULL): no pointer arithmetic on it. */
        f->data[0] = f->data[1] = NULL;
        f->len[0] = f->len[1] = 0;
        return;
    }
    size_t start = (r->head + skip) & ring_mask(r);
    size_t first = r->capacity - start;
    if (first > n)
        first = n;
    f->data[0] = r->ring + start;
    f->len[0] = first;
    f->data[1] = n > first ? r->ring : NULL;
    f->len[1] = n - first;
}

/* The free space as up to two iovecs; returns how many. */
static int ring_free_iov(const toby_reader *r, struct iovec *iov) {
    size_t free_bytes = r->capacity - ring_used(r);
    if (free_bytes == 0)
        return 0;
    size_t start = r->tail & ring_mask(r);
    size_t first = r->capacity - start;
    if (first > free_bytes)
        first = free_bytes;
    iov[0].iov_base = r->ring + start;
    iov[0].iov_len = first;
    if (free_bytes == first)
        return 1;
    iov[1].iov_base = r->ring;
    iov[1].iov_len = free_bytes - first;
    return 2;
}

static int fail(toby_reader *r, int error, toby_frame *f) {
    r->error = error;
    r->failure.length = f->length;
    r->failure.expected = f->expected;
    r->failure.received = f->received;
    memcpy(r->failure.prefix, f->prefix, TOBY_PREFIX_SIZE);
    return error;
}

int toby_reader_init(toby_reader *r, uint8_t *ring, size_t capacity,
                     uint64_t max_frame, toby_byte_order order, int fd,
                     const toby_io *io) {
    if (r == NULL || ring == NULL || io == NULL)
        return TOBY_EINVAL;
    if (capacity < 16 || (capacity & (capacity - 1)) != 0 ||
        capacity > ((size_t)1 << (sizeof(size_t) * 8 - 2)))
        return TOBY_EINVAL;
    if (order != TOBY_LITTLE_ENDIAN && order != TOBY_BIG_ENDIAN)
        return TOBY_EINVAL;
    memset(r, 0, sizeof(*r));
    r->ring = ring;
    r->capacity = capacity;
    r->max_frame = max_frame;
    r->order = order;
    r->fd = fd;
    r->io = io;
    return 0;
}

/*
 * Reached when the buffered bytes do not complete the next frame.
 * `expected`/`received` describe that frame for a truncation report.
 */
static int need_more(toby_reader *r, toby_frame *f, uint64_t expected,
                     uint64_t received) {
    if (r->error != 0) {
        /* An I/O error from a fill, reported now that every complete frame
         * before it has been handed out. */
        *f = r->failure;
        return r->error;
    }
    if (!r->eof)
        return TOBY_NEED_MORE;
    if (received == 0)
        return TOBY_END;
    memset(f, 0, sizeof(*f));
    f->expected = expected;
    f->received = received;
    return fail(r, TOBY_ETRUNCATED, f);
}

int toby_reader_next(toby_reader *r, toby_frame *f) {
    if (r->error == TOBY_EFRAMETOOLARGE || r->error == TOBY_ETRUNCATED) {
        *f = r->failure;
        return r->error;
    }
    size_t avail = ring_used(r);

    if (r->direct_left > 0) {
        uint64_t done = r->direct_total - r->direct_left;
        size_t buffered = avail < r->direct_left ? avail : (size_t)r->direct_left;
        if (buffered == 0 && (r->eof || r->error != 0))
            return need_more(r, f, TOBY_PREFIX_SIZE + r->direct_total,
                             TOBY_PREFIX_SIZE + done);
        memset(f, 0, sizeof(*f));
        ring_segments(r, 0, buffered, f);
        f->length = r->direct_total;
        return TOBY_FRAME_DIRECT;
    }

    if (avail < TOBY_PREFIX_SIZE)
        return need_more(r, f, TOBY_PREFIX_SIZE, avail);

    uint8_t prefix[TOBY_PREFIX_SIZE];
    ring_copy_out(r, 0, prefix, TOBY_PREFIX_SIZE);
    uint64_t length = toby__prefix_decode(prefix, r->order);

    if (length > r->max_frame) {
        memset(f, 0, sizeof(*f));
        f->length = length;
        memcpy(f->prefix, prefix, TOBY_PREFIX_SIZE);
        return fail(r, TOBY_EFRAMETOOLARGE, f);
    }

    if (length > r->capacity - TOBY_PREFIX_SIZE) {
        /* Can never be whole in the ring: the caller reads the payload into
         * its final destination. The prefix is consumed now. */
        r->head += TOBY_PREFIX_SIZE;
        r->current = 0;
        r->direct_left = length;
        r->direct_total = length;
        /* Describe it exactly as every later call will (length > 0 here),
         * including a truncation already known from EOF or an error. */
        return toby_reader_next(r, f);
    }

    size_t frame_size = TOBY_PREFIX_SIZE + (size_t)length;
    if (avail < frame_size)
        return need_more(r, f, frame_size, avail);

    memset(f, 0, sizeof(*f));
    ring_segments(r, TOBY_PREFIX_SIZE, (size_t)length, f);
    f->length = length;
    r->current = frame_size;
    return TOBY_FRAME;
}

void toby_reader_consume(toby_reader *r) {
    r->head += r->current;
    r->current = 0;
}

/* One recvmsg into iov[0..n); EINTR retried. Updates eof/error. */
static ssize_t receive(toby_reader *r, struct iovec *iov, int n, int flags) {
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    ssize_t got;
    do {
        got = r->io->recvmsg(r->io->ctx, r->fd, &msg, flags);
    } while (got == -EINTR);
    if (got > 0) {
        r->bytes_read += (uint64_t)got;
    } else if (got == 0) {
        r->eof = 1;
    } else if (got < 0 && got != -EAGAIN && got != -EWOULDBLOCK) {
        memset(&r->failure, 0, sizeof(r->failure));
        r->error = (int)got;
    }
    return got;
}

ssize_t toby_reader_fill(toby_reader *r, int flags) {
    if (r->error != 0)
        return r->error;
    if (r->eof)
        return 0;
    struct iovec iov[2];
    int n = ring_free_iov(r, iov);
    if (n == 0)
        return -ENOBUFS;
    ssize_t got = receive(r, iov, n, flags);
    if (got > 0)
        r->tail += (size_t)got;
    return got;
}

size_t toby_reader_direct_take(toby_reader *r, void *dst, size_t dst_len) {
    size_t n = ring_used(r);
    if (n > r->direct_left)
        n = (size_t)r->direct_left;
    if (n > dst_len)
        n = dst_len;
    if (n == 0)
        return 0;
    ring_copy_out(r, 0, dst, n);
    r->head += n;
    r->direct_left -= n;
    return n;
}

ssize_t toby_reader_direct_fill(toby_reader *r, void *dst, size_t dst_len,
                                int flags) {
    if (dst == NULL || dst_len == 0 || r->direct_left == 0)
        return TOBY_EINVAL;
    if (dst_len > r->direct_left)
        dst_len = (size_t)r->direct_left;
    /* Bytes already in the ring come first in the stream. */
    size_t taken = toby_reader_direct_take(r, dst, dst_len);
    if (taken > 0)
        return (ssize_t)taken;
    if (r->error != 0)
        return r->error;
    if (!r->eof) {
        struct iovec iov[3];
        iov[0].iov_base = dst;
        iov[0].iov_len = dst_len;
        int n = 1 + ring_free_iov(r, iov + 1);
        /* Read only a little ahead into the ring: enough for the next
         * prefix and a few small frames. Filling the whole ring would pull
         * most of a following large frame into it, to be copied out again
         * (measured: 64 KiB frames reached about half the kernel's rate). */
        size_t ahead = 0;
        for (int i = 1; i < n; i++) {
            if (ahead + iov[i].iov_len > TOBY_DIRECT_READAHEAD)
                iov[i].iov_len = TOBY_DIRECT_READAHEAD - ahead;
            ahead += iov[i].iov_len;
            if (iov[i].iov_len == 0) {
                n = i;
                break;
            }
        }
        ssize_t got = receive(r, iov, n, flags);
        if (got > 0) {
            size_t into_dst = (size_t)got < dst_len ? (size_t)got : dst_len;
            r->direct_left -= into_dst;
            r->tail += (size_t)got - into_dst;
            return (ssize_t)into_dst;
        }
        if (got < 0)
            return got;
    }
    /* End of stream with payload bytes still owed. */
    toby_frame f;
    memset(&f, 0, sizeof(f));
    f.expected = TOBY_PREFIX_SIZE + r->direct_total;
    f.received = TOBY_PREFIX_SIZE + (r->direct_total - r->direct_left);
    return fail(r, TOBY_ETRUNCATED, &f);
}

uint64_t toby_reader_direct_remaining(const toby_reader *r) {
    return r->direct_left;
}

size_t toby_reader_buffered(const toby_reader *r) { return ring_used(r); }

int toby_reader_set_ring(toby_reader *r, uint8_t *ring, size_t capacity) {
    if (r == NULL || ring_used(r) != 0 || r->current != 0)
        return TOBY_EINVAL;
    if (ring == NULL) {
        if (capacity != 0)
            return TOBY_EINVAL;
    } else if (capacity < 16 || (capacity & (capacity - 1)) != 0 ||
               capacity > ((size_t)1 << (sizeof(size_t) * 8 - 2))) {
        return TOBY_EINVAL;
    }
    r->ring = ring;
    r->capacity = capacity;
    r->head = 0;
    r->tail = 0;
    return 0;
}

size_t toby_reader_take(toby_reader *r, toby_span *out, size_t max) {
    if (r == NULL || out == NULL || r->ring == NULL || r->error != 0 ||
        r->direct_left != 0 || r->current != 0)
        return 0;
    size_t n = 0;
    const size_t mask = ring_mask(r);
    while (n < max) {
        size_t avail = ring_used(r);
        if (avail < TOBY_PREFIX_SIZE)
            break;
        size_t start = r->head & mask;
        if (start + TOBY_PREFIX_SIZE > r->capacity)
            break; /* the prefix wraps */
        uint64_t length = toby__prefix_decode(r->ring + start, r->order);
        if (length > r->max_frame || length > r->capacity - TOBY_PREFIX_SIZE)
            break; /* next() reports the limit or takes the direct path */
        size_t frame_size = TOBY_PREFIX_SIZE + (size_t)length;
        if (avail < frame_size || start + frame_size > r->capacity)
            break; /* incomplete, or the payload wraps */
        out[n].data = r->ring + start + TOBY_PREFIX_SIZE;
        out[n].len = (size_t)length;
        r->head += frame_size;
        n++;
    }
    return n;
}
