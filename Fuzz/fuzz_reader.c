/*
 * libFuzzer target for the CTobyFrame reader.
 *
 * The input is a small header followed by the stream:
 *
 *   byte 0   ring capacity: 16 << (b % 7)            (16 .. 1024)
 *   byte 1   bit 0: byte order (1 = big-endian)
 *            bit 1: the stream ends with -ECONNRESET instead of EOF
 *            bit 2: call next() twice for every frame (must agree)
 *            bit 3: fill once while holding each frame (must not disturb it)
 *            bit 4: pass MSG_DONTWAIT to fills (only forwarded)
 *            bit 5: take frames with toby_reader_take (1 + byte 4 % 8 a
 *                   call) before every next(), as an event loop does
 *   byte 2,3 max frame: (b2 | b3 << 8) % 2048        (small, so direct
 *            frames are bounded and the limit is easy to hit)
 *   byte 4   direct-fill destination piece size: 0 = all that is owed,
 *            255 = 8 bytes more than is owed (must be clamped),
 *            otherwise b bytes per direct_fill call
 *   byte 5   n, the number of chunk specs (n % 32)
 *   n bytes  chunk specs, used in a cycle for successive recvmsg calls:
 *            0 = -EINTR, 1 = -EAGAIN, otherwise up to (b - 1) * mult bytes
 *   byte     mult (1 + b % 16), scales chunk sizes
 *   rest     the byte stream the peer sends
 *
 * Every frame and the final status are checked against a trivial reference
 * decoder over the whole stream. Any mismatch aborts.
 */
#include "ctobyframe.h"
#include "toby_testing.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_reader: check failed at %s:%d: %s\n",      \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* ---------------- reference decoder ---------------- */

typedef struct ref_frame {
    size_t offset; /* payload offset in the stream */
    uint64_t length;
} ref_frame;

enum ref_kind { REF_END, REF_TOO_LARGE, REF_TRUNCATED };

typedef struct ref_result {
    ref_frame *frames;
    size_t count;
    enum ref_kind kind;
    uint64_t length;   /* TOO_LARGE: announced; TRUNCATED: payload length
                          when the prefix is whole */
    uint64_t expected; /* TRUNCATED */
    uint64_t received; /* TRUNCATED */
    uint8_t prefix[8]; /* TOO_LARGE */
} ref_result;

static uint64_t ref_length(const uint8_t *p, int big) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (big ? 8 * (7 - i) : 8 * i);
    return v;
}

static void ref_decode(const uint8_t *s, size_t n, int big, uint64_t max,
                       ref_result *out) {
    memset(out, 0, sizeof(*out));
    out->frames = malloc((n / 8 + 1) * sizeof(ref_frame));
    CHECK(out->frames != NULL);
    size_t i = 0;
    for (;;) {
        size_t left = n - i;
        if (left == 0) {
            out->kind = REF_END;
            return;
        }
        if (left < 8) {
            out->kind = REF_TRUNCATED;
            out->expected = 8;
            out->received = left;
            return;
        }
        uint64_t len = ref_length(s + i, big);
        if (len > max) {
            out->kind = REF_TOO_LARGE;
            out->length = len;
            memcpy(out->prefix, s + i, 8);
            return;
        }
        if ((uint64_t)left < 8 + len) {
            out->kind = REF_TRUNCATED;
            out->length = len;
            out->expected = 8 + len;
            out->received = left;
            return;
        }
        out->frames[out->count].offset = i + 8;
        out->frames[out->count].length = len;
        out->count++;
        i += 8 + (size_t)len;
    }
}

/* ---------------- fake socket ---------------- */

typedef struct fake {
    const uint8_t *data;
    size_t size;
    size_t pos;
    const uint8_t *specs;
    size_t nspecs;
    size_t next_spec;
    size_t mult;
    int stalls;     /* consecutive -EINTR/-EAGAIN returned */
    int reset;      /* end with -ECONNRESET instead of 0 */
    int want_flags; /* flags every recvmsg must get */
} fake;

static ssize_t fake_recvmsg(void *ctx, int fd, struct msghdr *msg, int flags) {
    fake *fk = ctx;
    CHECK(fd == 7);
    CHECK(flags == fk->want_flags);
    CHECK(msg->msg_iovlen >= 1 && msg->msg_iovlen <= 3);
    size_t room = 0;
    for (size_t v = 0; v < msg->msg_iovlen; v++) {
        CHECK(msg->msg_iov[v].iov_len > 0);
        CHECK(msg->msg_iov[v].iov_base != NULL);
        room += msg->msg_iov[v].iov_len;
    }
    if (fk->pos == fk->size)
        return fk->reset ? -ECONNRESET : 0;

    size_t want = room;
    if (fk->nspecs > 0) {
        uint8_t spec = fk->specs[fk->next_spec];
        fk->next_spec = (fk->next_spec + 1) % fk->nspecs;
        if (spec <= 1 && fk->stalls < 3) {
            fk->stalls++;
            return spec == 0 ? -EINTR : -EAGAIN;
        }
        want = spec <= 1 ? 1 : (size_t)(spec - 1) * fk->mult;
    }
    fk->stalls = 0;
    size_t n = fk->size - fk->pos;
    if (n > want)
        n = want;
    if (n > room)
        n = room;
    size_t done = 0;
    for (size_t v = 0; v < msg->msg_iovlen && done < n; v++) {
        size_t k = msg->msg_iov[v].iov_len;
        if (k > n - done)
            k = n - done;
        memcpy(msg->msg_iov[v].iov_base, fk->data + fk->pos + done, k);
        done += k;
    }
    fk->pos += n;
    return (ssize_t)n;
}

static ssize_t fake_sendmsg(void *ctx, int fd, const struct msghdr *msg,
                            int flags) {
    (void)ctx;
    (void)fd;
    (void)msg;
    (void)flags;
    abort(); /* the reader never sends */
}

/* ---------------- the target ---------------- */

static void check_segments(const toby_frame *f, const uint8_t *ring,
                           size_t cap, const uint8_t *want, size_t n) {
    CHECK(f->len[0] + f->len[1] == n);
    if (f->len[0] > 0) {
        CHECK(f->data[0] >= ring && f->data[0] + f->len[0] <= ring + cap);
        CHECK(memcmp(f->data[0], want, f->len[0]) == 0);
    }
    if (f->len[1] > 0) {
        CHECK(f->len[0] > 0);
        CHECK(f->data[1] == ring);
        CHECK(f->len[1] <= cap);
        CHECK(memcmp(f->data[1], want + f->len[0], f->len[1]) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
    if (size < 7)
        return 0;
    size_t cap = (size_t)16 << (in[0] % 7);
    int big = in[1] & 1;
    int reset = (in[1] >> 1) & 1;
    int twice = (in[1] >> 2) & 1;
    int fill_holding = (in[1] >> 3) & 1;
    int flags = (in[1] >> 4) & 1 ? MSG_DONTWAIT : 0;
    int take = (in[1] >> 5) & 1;
    uint64_t max_frame = (uint64_t)(in[2] | (in[3] << 8)) % 2048;
    size_t piece = in[4];
    size_t nspecs = in[5] % 32;
    size_t p = 6;
    if (size < p + nspecs + 1)
        return 0;
    const uint8_t *specs = in + p;
    p += nspecs;
    size_t mult = 1 + in[p] % 16;
    p++;
    const uint8_t *data = in + p;
    size_t n = size - p;

    ref_result ref;
    ref_decode(data, n, big, max_frame, &ref);

    fake fk = {data, n, 0, specs, nspecs, 0, mult, 0, reset, flags};
    toby_io io = {fake_recvmsg, fake_sendmsg, &fk};
    uint8_t *ring = malloc(cap);
    CHECK(ring != NULL);
    memset(ring, 0xA5, cap);
    toby_reader r;
    CHECK(toby_reader_init(&r, ring, cap, max_frame,
                           big ? TOBY_BIG_ENDIAN : TOBY_LITTLE_ENDIAN, 7,
                           &io) == 0);

    size_t k = 0; /* frames delivered */
    toby_frame f;
    int status = 0;
    for (unsigned long steps = 0;; steps++) {
        CHECK(steps < 10UL * 1000 * 1000);
        CHECK(toby_reader_buffered(&r) <= cap);
        if (take) {
            toby_span spans[8];
            size_t most = 1 + piece % 8;
            size_t got = toby_reader_take(&r, spans, most);
            CHECK(got <= most);
            for (size_t i = 0; i < got; i++, k++) {
                CHECK(k < ref.count);
                CHECK(spans[i].len == ref.frames[k].length);
                CHECK(spans[i].data >= ring + 8 && spans[i].data + spans[i].len <= ring + cap);
                CHECK(memcmp(spans[i].data, data + ref.frames[k].offset, spans[i].len) == 0);
            }
        }
        int rc = toby_reader_next(&r, &f);
        if (rc == TOBY_FRAME) {
            CHECK(k < ref.count);
            CHECK(f.length == ref.frames[k].length);
            CHECK(f.length <= cap - 8);
            const uint8_t *want = data + ref.frames[k].offset;
            check_segments(&f, ring, cap, want, (size_t)f.length);
            if (twice) {
                toby_frame g;
                CHECK(toby_reader_next(&r, &g) == TOBY_FRAME);
                CHECK(memcmp(&f, &g, sizeof(f)) == 0);
            }
            if (fill_holding) {
                ssize_t got = toby_reader_fill(&r, flags);
                CHECK(got != -EINTR);
                check_segments(&f, ring, cap, want, (size_t)f.length);
            }
            toby_reader_consume(&r);
            k++;
        } else if (rc == TOBY_FRAME_DIRECT) {
            /* Either the next complete frame, or the one cut short. */
            uint64_t len = f.length;
            CHECK(len > cap - 8);
            CHECK(len <= max_frame);
            int complete = k < ref.count;
            if (complete)
                CHECK(len == ref.frames[k].length);
            else
                CHECK(ref.kind != REF_TOO_LARGE && ref.length == len);
            /* Where the payload starts in the stream; a cut-short frame
             * is the last ref.received bytes of the stream. */
            size_t off = complete ? ref.frames[k].offset
                                  : n - (size_t)ref.received + 8;
            CHECK(f.len[0] + f.len[1] <= len);
            check_segments(&f, ring, cap, data + off, f.len[0] + f.len[1]);
            if (twice) {
                toby_frame g;
                int again = toby_reader_next(&r, &g);
                CHECK(again == TOBY_FRAME_DIRECT);
                CHECK(memcmp(&f, &g, sizeof(f)) == 0);
            }
            /* 8 canary bytes after the payload: direct_fill is sometimes
             * offered more room than the frame still owes (piece == 255)
             * and must not write past the payload. */
            uint8_t *buf = malloc((size_t)len + 8);
            CHECK(buf != NULL);
            memset(buf + len, 0xC3, 8);
            size_t pos = toby_reader_direct_take(&r, buf, (size_t)len);
            CHECK(pos == f.len[0] + f.len[1]);
            int failed = 0;
            while (pos < len) {
                CHECK(toby_reader_direct_remaining(&r) == len - pos);
                size_t ask = (size_t)len - pos;
                if (piece == 255)
                    ask += 8;
                else if (piece != 0 && ask > piece)
                    ask = piece;
                /* take() first drains payload that spilled into the ring */
                if (piece != 0 && (steps & 1)) {
                    size_t t = toby_reader_direct_take(&r, buf + pos, ask);
                    CHECK(t <= len - pos);
                    pos += t;
                    if (t > 0)
                        continue;
                }
                ssize_t got = toby_reader_direct_fill(&r, buf + pos, ask, flags);
                if (got > 0) {
                    CHECK((size_t)got <= ask && (size_t)got <= len - pos);
                    pos += (size_t)got;
                } else if (got == -EAGAIN) {
                    continue;
                } else {
                    CHECK(got != -EINTR && got != 0);
                    CHECK(got == TOBY_ETRUNCATED || got == -ECONNRESET);
                    failed = 1;
                    break;
                }
            }
            if (!failed) {
                CHECK(complete);
                CHECK(toby_reader_direct_remaining(&r) == 0);
                CHECK(memcmp(buf, data + off, (size_t)len) == 0);
                k++;
            } else {
                CHECK(memcmp(buf, data + off, pos) == 0);
            }
            for (int c = 0; c < 8; c++)
                CHECK(buf[len + (uint64_t)c] == 0xC3);
            free(buf);
        } else if (rc == TOBY_NEED_MORE) {
            ssize_t got = toby_reader_fill(&r, flags);
            CHECK(got != -ENOBUFS); /* next() asked for more: room exists */
            CHECK(got != -EINTR);
            CHECK(got > 0 || got == 0 || got == -EAGAIN ||
                  got == -ECONNRESET);
        } else {
            status = rc;
            break;
        }
    }

    /* Every complete frame came out, then the same verdict. */
    CHECK(k == ref.count);
    if (ref.kind == REF_TOO_LARGE) {
        CHECK(status == TOBY_EFRAMETOOLARGE);
        CHECK(f.length == ref.length);
        CHECK(memcmp(f.prefix, ref.prefix, 8) == 0);
    } else if (reset) {
        CHECK(status == -ECONNRESET);
    } else if (ref.kind == REF_END) {
        CHECK(status == TOBY_END);
    } else {
        CHECK(status == TOBY_ETRUNCATED);
        CHECK(f.expected == ref.expected);
        CHECK(f.received == ref.received);
    }
    /* Sticky, including for fills. */
    toby_frame g;
    CHECK(toby_reader_next(&r, &g) == status);
    if (status != TOBY_END) {
        CHECK(g.length == f.length && g.expected == f.expected &&
              g.received == f.received);
        CHECK(toby_reader_fill(&r, flags) == status);
    } else {
        CHECK(toby_reader_fill(&r, flags) == 0);
    }

    free(ring);
    free(ref.frames);
    return 0;
}
