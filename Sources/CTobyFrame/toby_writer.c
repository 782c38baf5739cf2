/*
 * The writer: frames go out as [prefix, payload] iovec pairs (small ones
 * staged together), or raw items as they are, many per sendmsg, resumed at
 * the exact byte after a partial write. One loop serves both; each entry
 * point gets its own copy of it, specialised for its kind of item, so the
 * framed path pays nothing for raw items.
 */
#include "toby_internal.h"

#include <errno.h>
#include <string.h>

int toby_writer_init(toby_writer *w, toby_byte_order order, int fd,
                     const toby_io *io) {
    if (w == NULL || io == NULL)
        return TOBY_EINVAL;
    if (order != TOBY_LITTLE_ENDIAN && order != TOBY_BIG_ENDIAN)
        return TOBY_EINVAL;
    w->io = io;
    w->fd = fd;
    w->order = order;
    return 0;
}

/*
 * Fills w->iov with frames[i..] starting `offset` bytes into frames[i];
 * returns the vector count (>= 1 while i < count). Small whole frames are
 * copied into w->stage, consecutive ones sharing one vector; a frame already
 * partly sent, or with a larger payload, is sent from the caller's memory.
 */
static int gather(toby_writer *w, const toby_out *frames, size_t count,
                  size_t i, uint64_t offset) {
    int n = 0;
    size_t p = 0;
    size_t staged = 0;
    int last_is_stage = 0;
    /* Each frame needs at most two vectors; stop while both still fit. */
    for (; i < count && n + 2 <= TOBY_WRITER_IOV; i++, offset = 0) {
        const toby_out *f = &frames[i];
        if (offset == 0 && f->len <= TOBY_WRITER_COALESCE) {
            size_t need = TOBY_PREFIX_SIZE + f->len;
            if (staged + need > TOBY_WRITER_STAGE)
                break; /* a full stage is a big enough batch */
            uint8_t *dst = w->stage + staged;
            toby__prefix_encode(f->len, w->order, dst);
            if (f->len > 0)
                memcpy(dst + TOBY_PREFIX_SIZE, f->data, f->len);
            if (last_is_stage) {
                w->iov[n - 1].iov_len += need;
            } else {
                w->iov[n].iov_base = dst;
                w->iov[n].iov_len = need;
                n++;
                last_is_stage = 1;
            }
            staged += need;
            continue;
        }
        last_is_stage = 0;
        if (offset < TOBY_PREFIX_SIZE) {
            toby__prefix_encode(f->len, w->order, w->prefix[p]);
            w->iov[n].iov_base = w->prefix[p] + offset;
            w->iov[n].iov_len = TOBY_PREFIX_SIZE - (size_t)offset;
            n++;
            p++;
            if (f->len > 0) {
                w->iov[n].iov_base = (void *)f->data;
                w->iov[n].iov_len = f->len;
                n++;
            }
        } else {
            size_t done = (size_t)(offset - TOBY_PREFIX_SIZE);
            w->iov[n].iov_base = (uint8_t *)f->data + done;
            w->iov[n].iov_len = f->len - done;
            n++;
        }
    }
    return n;
}

/*
 * Fills w->iov with raw items[i..], starting `offset` bytes into items[i]:
 * one vector per item, none for an empty one; returns the vector count
 * (>= 1 while a byte is left).
 */
static int gather_raw(toby_writer *w, const toby_out *items, size_t count,
                      size_t i, uint64_t offset) {
    int n = 0;
    for (; i < count && n < TOBY_WRITER_IOV; i++, offset = 0) {
        if (items[i].len > (size_t)offset) {
            w->iov[n].iov_base = (uint8_t *)items[i].data + offset;
            w->iov[n].iov_len = items[i].len - (size_t)offset;
            n++;
        }
    }
    return n;
}

/* Bytes an item puts on the wire. */
static inline uint64_t wire_length(const toby_out *f, int raw) {
    return (raw ? 0 : TOBY_PREFIX_SIZE) + (uint64_t)f->len;
}

/*
 * The write loop of both entry points; `raw` is a constant in each, so the
 * compiler makes two copies with the other kind's code gone. Empty raw
 * items cost no vector and no call, and the progress reported never rests
 * on one.
 */
static inline __attribute__((always_inline)) int
write_items(toby_writer *w, const toby_out *frames, size_t count,
            size_t *index, uint64_t *offset, int flags, int raw) {
    size_t i = *index;
    uint64_t off = *offset;
    int result = 0;
    if (raw)
        while (i < count && off == 0 && frames[i].len == 0)
            i++;
    while (i < count) {
        int n = raw ? gather_raw(w, frames, count, i, off)
                    : gather(w, frames, count, i, off);
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = w->iov;
        msg.msg_iovlen = (size_t)n;
        ssize_t sent = w->io->sendmsg(w->io->ctx, w->fd, &msg,
                                      MSG_NOSIGNAL | flags);
        if (sent == -EINTR)
            continue;
        if (sent < 0) {
            result = (int)sent;
            break;
        }
        if (sent == 0) {
            /* No progress without an error: let the caller wait for
             * writability rather than spin. */
            result = -EAGAIN;
            break;
        }
        /* Advance (i, off) past `sent` bytes. */
        uint64_t left = (uint64_t)sent;
        while (left > 0) {
            uint64_t rest = wire_length(&frames[i], raw) - off;
            if (left < rest) {
                off += left;
                break;
            }
            left -= rest;
            i++;
            off = 0;
        }
        if (raw)
            while (i < count && off == 0 && frames[i].len == 0)
                i++;
    }
    *index = i;
    *offset = off;
    return result;
}

int toby_writer_write(toby_writer *w, const toby_out *frames, size_t count,
                      size_t *index, uint64_t *offset, int flags) {
    return write_items(w, frames, count, index, offset, flags, 0);
}

int toby_writer_write_raw(toby_writer *w, const toby_out *items, size_t count,
                          size_t *index, uint64_t *offset, int flags) {
    return write_items(w, items, count, index, offset, flags, 1);
}
