/*
 * libFuzzer target for the CTobyFrame writer.
 *
 * The input is a small header followed by two tables:
 *
 *   byte 0   bit 0: byte order (1 = big-endian)
 *            bit 1: pass MSG_DONTWAIT (must be forwarded with MSG_NOSIGNAL)
 *            bit 2: empty payloads get a NULL data pointer
 *            bit 3: resume every -EAGAIN with a freshly initialised writer
 *            bit 4: start mid-stream (bytes 3,4 choose where)
 *            bit 5: raw items through toby_writer_write_raw (sent as
 *                   they are, no prefix: an event loop's framed output)
 *   byte 1,2 frame count: (b1 | b2 << 8) % 1100    (> 512 splits batches)
 *   byte 3,4 start position in the encoded stream (when bit 4 is set)
 *   byte 5   t, the number of length entries (1 + b % 32)
 *   t bytes  payload lengths, used in a cycle: b < 200 is b bytes,
 *            otherwise (b - 199) * 97 bytes (up to 5432); frames are
 *            dropped from the end to keep the stream within 32 KiB
 *   byte     s, the number of send specs (s % 64)
 *   s bytes  send specs, used in a cycle for successive sendmsg calls:
 *            0 = -EINTR, 1 = -EAGAIN, 2 = accept 0 bytes, 3 = -EPIPE,
 *            otherwise accept up to (b - 3) * mult bytes
 *   byte     mult (1 + b), scales accepted byte counts
 *
 * The bytes the fake socket accepts are compared with an independent
 * encoding of the frames, and after every return *index / *offset must
 * name exactly the first byte not yet accepted. Any mismatch aborts.
 */
#include "ctobyframe.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_writer: check failed at %s:%d: %s\n",      \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)

typedef struct fake {
    const uint8_t *want; /* reference encoding */
    size_t want_len;
    size_t out;          /* bytes accepted so far (absolute stream offset) */
    const uint8_t *specs;
    size_t nspecs;
    size_t next_spec;
    size_t mult;
    int stalls;
    int want_flags;
    int epipe;           /* an -EPIPE was returned */
    unsigned long calls;
    unsigned long work; /* iovecs seen, to bound the time of one run */
} fake;

/* After this many iovecs, sendmsg accepts everything: keeps byte-at-a-time
 * runs over 1000-frame batches from taking seconds. */
#define WORK_BUDGET 100000UL

static ssize_t fake_sendmsg(void *ctx, int fd, const struct msghdr *msg,
                            int flags) {
    fake *fk = ctx;
    fk->calls++;
    CHECK(fd == 9);
    CHECK(flags == (MSG_NOSIGNAL | fk->want_flags));
    CHECK(msg->msg_name == NULL && msg->msg_control == NULL);
    CHECK(msg->msg_iovlen >= 1 && msg->msg_iovlen <= TOBY_WRITER_IOV);
    size_t room = 0;
    for (size_t v = 0; v < msg->msg_iovlen; v++) {
        CHECK(msg->msg_iov[v].iov_len > 0);
        CHECK(msg->msg_iov[v].iov_base != NULL);
        room += msg->msg_iov[v].iov_len;
    }
    /* The writer never offers bytes beyond the end of the stream. */
    CHECK(room <= fk->want_len - fk->out);
    fk->work += msg->msg_iovlen;
    size_t accept = room;
    if (fk->nspecs > 0 && fk->work < WORK_BUDGET) {
        uint8_t spec = fk->specs[fk->next_spec];
        fk->next_spec = (fk->next_spec + 1) % fk->nspecs;
        if (spec == 3) {
            fk->epipe = 1;
            return -EPIPE;
        }
        if (spec <= 2 && fk->stalls < 4) {
            fk->stalls++;
            return spec == 0 ? -EINTR : spec == 1 ? -EAGAIN : 0;
        }
        accept = spec <= 3 ? 1 : (size_t)(spec - 3) * fk->mult;
    }
    fk->stalls = 0;
    if (accept > room)
        accept = room;
    /* The accepted bytes, in iovec order, must continue the stream. */
    size_t done = 0;
    for (size_t v = 0; v < msg->msg_iovlen && done < accept; v++) {
        size_t k = msg->msg_iov[v].iov_len;
        if (k > accept - done)
            k = accept - done;
        CHECK(memcmp(msg->msg_iov[v].iov_base, fk->want + fk->out + done,
                     k) == 0);
        done += k;
    }
    fk->out += accept;
    return (ssize_t)accept;
}

static ssize_t fake_recvmsg(void *ctx, int fd, struct msghdr *msg, int flags) {
    (void)ctx;
    (void)fd;
    (void)msg;
    (void)flags;
    abort(); /* the writer never receives */
}

/* Bound on the encoded stream, so byte-at-a-time runs stay fast. */
#define MAX_STREAM (32 * 1024)

static uint8_t payload_byte(size_t frame, size_t j) {
    return (uint8_t)(frame * 131u + j * 7u + (j >> 8) + 1u);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
    if (size < 7)
        return 0;
    int big = in[0] & 1;
    int flags = (in[0] >> 1) & 1 ? MSG_DONTWAIT : 0;
    int null_empty = (in[0] >> 2) & 1;
    int fresh = (in[0] >> 3) & 1;
    int mid = (in[0] >> 4) & 1;
    int raw_items = (in[0] >> 5) & 1;
    size_t count = (size_t)(in[1] | (in[2] << 8)) % 1100;
    size_t start_at = (size_t)(in[3] | (in[4] << 8));
    size_t t = 1 + in[5] % 32;
    size_t p = 6;
    if (size < p + t + 1)
        return 0;
    const uint8_t *lens = in + p;
    p += t;
    size_t nspecs = in[p] % 64;
    p++;
    if (size < p + nspecs + 1)
        return 0;
    const uint8_t *specs = in + p;
    p += nspecs;
    size_t mult = 1 + (size_t)in[p];

    /* Frames and their independent encoding. */
    toby_out *frames = calloc(count + 1, sizeof(toby_out));
    size_t *starts = calloc(count + 1, sizeof(size_t));
    CHECK(frames != NULL && starts != NULL);
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        uint8_t b = lens[i % t];
        size_t len = b < 200 ? b : (size_t)(b - 199) * 97;
        size_t prefix = raw_items ? 0 : 8;
        if (total + prefix + len > MAX_STREAM) {
            count = i; /* keep each run fast */
            break;
        }
        starts[i] = total;
        total += prefix + len;
        frames[i].len = len;
    }
    starts[count] = total;
    uint8_t *want = malloc(total + 1);
    CHECK(want != NULL);
    for (size_t i = 0; i < count; i++) {
        size_t len = frames[i].len;
        uint8_t *d = want + starts[i];
        if (!raw_items) {
            for (int k = 0; k < 8; k++)
                d[k] = (uint8_t)((uint64_t)len >> (big ? 8 * (7 - k) : 8 * k));
            d += 8;
        }
        uint8_t *pl = NULL;
        if (len > 0 || !null_empty) {
            pl = malloc(len ? len : 1);
            CHECK(pl != NULL);
            for (size_t j = 0; j < len; j++)
                pl[j] = payload_byte(i, j);
            memcpy(d, pl, len);
        }
        frames[i].data = pl;
    }

    /* Where to start: a frame and an offset inside it. */
    size_t index = 0;
    uint64_t offset = 0;
    size_t begin = 0;
    if (mid && total > 0) {
        begin = start_at % total;
        while (starts[index + 1] <= begin)
            index++;
        offset = begin - starts[index];
    }

    fake fk = {want, total, begin, specs, nspecs, 0, mult, 0, flags, 0, 0, 0};
    toby_io io = {fake_recvmsg, fake_sendmsg, &fk};
    toby_byte_order order = big ? TOBY_BIG_ENDIAN : TOBY_LITTLE_ENDIAN;
    toby_writer *w = malloc(sizeof(*w));
    CHECK(w != NULL);
    CHECK(toby_writer_init(w, order, 9, &io) == 0);

    for (unsigned long rounds = 0;; rounds++) {
        CHECK(rounds < 1000UL * 1000);
        unsigned long calls_before = fk.calls;
        int rc = raw_items
                     ? toby_writer_write_raw(w, frames, count, &index, &offset, flags)
                     : toby_writer_write(w, frames, count, &index, &offset, flags);
        /* Progress names exactly the first byte not yet accepted. */
        CHECK(index <= count);
        if (index == count) {
            CHECK(offset == 0);
            CHECK(fk.out == total);
        } else {
            CHECK(offset < (raw_items ? 0 : 8) + (uint64_t)frames[index].len);
            CHECK(starts[index] + offset == fk.out);
        }
        if (rc == 0) {
            CHECK(index == count && fk.out == total);
            if (begin == total || count == 0)
                CHECK(fk.calls == calls_before);
            break;
        }
        CHECK(fk.calls > calls_before);
        if (rc == -EPIPE) {
            CHECK(fk.epipe);
            /* A gone peer: resume anyway, like a caller that retries. */
            fk.epipe = 0;
            fk.nspecs = 0; /* accept everything from now on */
        } else {
            CHECK(rc == -EAGAIN);
        }
        if (fresh)
            CHECK(toby_writer_init(w, order, 9, &io) == 0);
    }
    CHECK(fk.out == total);

    for (size_t i = 0; i < count; i++)
        free((void *)frames[i].data);
    free(frames);
    free(starts);
    free(want);
    free(w);
    return 0;
}
