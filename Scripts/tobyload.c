/*
 * tobyload.c - an independent load generator for TobyTCP echo servers.
 *
 * Build:  gcc -std=c11 -O2 -Wall -Wextra -Werror -pthread -o tobyload Scripts/tobyload.c
 *         (clang takes the same flags)
 * Usage:  tobyload -p PORT [-h HOST] [-m pipeline|ping-pong|one-way] [-c CONNECTIONS]
 *                  [-s SIZE] [-w INFLIGHT] [-d SECONDS] [-W SECONDS] [-B]
 *
 * It is written from the wire format alone (an 8-byte unsigned length prefix,
 * little-endian unless -B, then that many payload bytes) and shares no code
 * with TobyTCP, so that its figures can cross-check `toby bench`.
 *
 * Byte j of the payload of message k (k counts from 0 on each connection) is
 * (k*131 + j) & 0xff, so a lost, reordered or corrupted reply shows up as a
 * wrong byte. Every reply is checked, including those of the warm-up and the
 * ones drained after the measured interval; only replies that arrive inside
 * the measured interval are counted and timed. One line of key=value pairs
 * goes to stdout; any error goes to stderr with exit status 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { PIPELINE, PINGPONG, ONEWAY };
enum { WARMUP, MEASURE, STOP };
static const char *mode_names[] = { "pipeline", "ping-pong", "one-way" };

#define SUB_BITS 7 /* 128 linear sub-buckets per power of two: < 0.8% error */
#define SUB (1 << SUB_BITS)
#define NBUCKETS ((65 - SUB_BITS) * SUB)
#define COPY_MAX 65536      /* frames up to this are copied into one buffer */
#define TXCAP (256 * 1024)  /* send buffer, and the one-way batch size */
#define RXCAP (256 * 1024)
#define RECV_TIMEOUT_S 10   /* a server silent this long is an error */

static const char *host = "127.0.0.1", *port;
static int mode = PIPELINE, nconns = 1, big_endian;
static size_t size = 64, frame_len;
static uint64_t window = 64;
static double duration = 5, warmup = 1;
static uint8_t header[8];     /* the same for every message: size is fixed */
static uint8_t *pattern;      /* pattern[i] = i & 0xff, size + 256 bytes */
static _Atomic int phase = WARMUP;

struct rx { uint8_t hdr[8]; int hdr_got; size_t pos; uint64_t k; };

struct conn {
    int id, fd;
    pthread_t sender, receiver;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* receiver -> sender: window space; main -> sender: stop */
    uint64_t sent, acked;   /* guarded by mu */
    int sender_done;        /* guarded by mu */
    uint64_t *ts;           /* send time of message k at ts[k % window], guarded by mu */
    uint8_t *txbuf, *rxbuf;
    struct rx rx;           /* reply parser, receiving thread only */
    uint64_t counted;       /* messages in the measured interval */
    uint64_t hist[NBUCKETS], max_ns;
};

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("tobyload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1); /* from any thread: a failed run has no figures worth finishing */
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void sleep_s(double s) {
    struct timespec t = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&t, &t) < 0)
        if (errno != EINTR) die("nanosleep: %s", strerror(errno));
}

/* Log-linear histogram: values below SUB exactly, above that SUB buckets per
 * power of two, so bounded memory with relative precision whatever the run. */
static int bucket_of(uint64_t v) {
    if (v < SUB) return (int)v;
    int e = 63 - __builtin_clzll(v);
    return (e - SUB_BITS + 1) * SUB + (int)((v >> (e - SUB_BITS)) & (SUB - 1));
}

static double bucket_mid(int b) {
    if (b < SUB) return b;
    int e = b / SUB + SUB_BITS - 1, m = b % SUB;
    double width = (double)(1ull << (e - SUB_BITS));
    return (SUB + m) * width + width / 2;
}

static void record(struct conn *c, uint64_t ns) {
    c->hist[bucket_of(ns)]++;
    if (ns > c->max_ns) c->max_ns = ns;
}

static double percentile_us(const uint64_t *hist, uint64_t total, double q, uint64_t max) {
    uint64_t rank = (uint64_t)(q * (double)total + 0.999999), seen = 0;
    if (rank == 0) rank = 1;
    for (int b = 0; b < NBUCKETS; b++)
        if ((seen += hist[b]) >= rank) {
            double v = bucket_mid(b);
            return (v > (double)max ? (double)max : v) / 1000.0;
        }
    return (double)max / 1000.0;
}

static void writev_all(struct conn *c, struct iovec *iov, int cnt) {
    while (cnt > 0) {
        ssize_t w = writev(c->fd, iov, cnt);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) die("connection %d: writev: %s", c->id, strerror(errno));
        for (size_t left = (size_t)w; cnt > 0 && left >= iov->iov_len; iov++, cnt--)
            left -= iov->iov_len, w = (ssize_t)left;
        if (cnt > 0) /* partial write: resume inside this iovec */
            iov->iov_base = (uint8_t *)iov->iov_base + w, iov->iov_len -= (size_t)w;
    }
}

static void write_buf(struct conn *c, size_t n) {
    struct iovec iov = { c->txbuf, n };
    writev_all(c, &iov, 1);
}

/* Sends messages k0 .. k0+n-1. Small frames are copied into one buffer so a
 * whole window goes out in one write; big ones go straight from the pattern. */
static void send_range(struct conn *c, uint64_t k0, uint64_t n) {
    size_t used = 0;
    for (uint64_t k = k0; k < k0 + n; k++) {
        const uint8_t *payload = pattern + ((k * 131) & 0xff);
        if (frame_len <= COPY_MAX) {
            if (used + frame_len > TXCAP) write_buf(c, used), used = 0;
            memcpy(c->txbuf + used, header, 8);
            memcpy(c->txbuf + used + 8, payload, size);
            used += frame_len;
        } else {
            struct iovec iov[2] = { { header, 8 }, { (void *)payload, size } };
            writev_all(c, iov, 2);
        }
    }
    if (used) write_buf(c, used);
}

/* Returns bytes read, 0 at end of stream, -1 when RECV_TIMEOUT_S passed. */
static ssize_t read_some(struct conn *c) {
    for (;;) {
        ssize_t n = read(c->fd, c->rxbuf, RXCAP);
        if (n >= 0) return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
        if (errno != EINTR)
            die("connection %d message %llu: read: %s", c->id, (unsigned long long)c->rx.k,
                strerror(errno));
    }
}

/* Feeds received bytes to the reply parser, checking every byte against what
 * was sent. Returns how many replies these bytes completed. */
static uint64_t rx_feed(struct conn *c, const uint8_t *b, size_t n) {
    struct rx *r = &c->rx;
    uint64_t done = 0;
    while (n > 0) {
        if (r->hdr_got < 8) {
            size_t t = 8 - (size_t)r->hdr_got < n ? 8 - (size_t)r->hdr_got : n;
            memcpy(r->hdr + r->hdr_got, b, t);
            r->hdr_got += (int)t, b += t, n -= t;
            if (r->hdr_got < 8) break;
            uint64_t len = 0;
            for (int i = 0; i < 8; i++)
                len |= (uint64_t)r->hdr[big_endian ? 7 - i : i] << (8 * i);
            if (len != size)
                die("connection %d message %llu: length is %llu, expected %zu", c->id,
                    (unsigned long long)r->k, (unsigned long long)len, size);
            r->pos = 0;
        }
        size_t t = size - r->pos < n ? size - r->pos : n;
        const uint8_t *want = pattern + ((r->k * 131) & 0xff) + r->pos;
        if (memcmp(b, want, t) != 0)
            for (size_t j = 0; j < t; j++)
                if (b[j] != want[j])
                    die("connection %d message %llu: byte %zu is 0x%02x, expected 0x%02x",
                        c->id, (unsigned long long)r->k, r->pos + j, b[j], want[j]);
        r->pos += t, b += t, n -= t;
        if (r->pos == size) r->k++, r->hdr_got = 0, done++;
    }
    return done;
}

static int is_sender_done(struct conn *c) {
    pthread_mutex_lock(&c->mu);
    int d = c->sender_done;
    pthread_mutex_unlock(&c->mu);
    return d;
}

/* After the last message: half-close, so the server ends the stream once it
 * has echoed everything, which wakes a receiver blocked in read. */
static void finish_sending(struct conn *c) {
    pthread_mutex_lock(&c->mu);
    c->sender_done = 1;
    pthread_mutex_unlock(&c->mu);
    if (shutdown(c->fd, SHUT_WR) < 0) die("connection %d: shutdown: %s", c->id, strerror(errno));
}

static void *pipeline_sender(void *arg) {
    struct conn *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (atomic_load(&phase) != STOP && c->sent - c->acked >= window)
            pthread_cond_wait(&c->cv, &c->mu);
        if (atomic_load(&phase) == STOP) { pthread_mutex_unlock(&c->mu); break; }
        uint64_t k0 = c->sent, n = window - (c->sent - c->acked), t = now_ns();
        for (uint64_t i = 0; i < n; i++) c->ts[(k0 + i) % window] = t;
        c->sent += n;
        pthread_mutex_unlock(&c->mu);
        send_range(c, k0, n);
    }
    finish_sending(c);
    return NULL;
}

static void *oneway_sender(void *arg) {
    struct conn *c = arg;
    uint64_t batch = TXCAP / frame_len ? TXCAP / frame_len : 1;
    for (uint64_t k = 0; atomic_load(&phase) != STOP; k += batch) {
        send_range(c, k, batch);
        if (atomic_load(&phase) == MEASURE) c->counted += batch; /* counted once written */
    }
    finish_sending(c);
    return NULL;
}

/* Receiver for pipeline (checked, timed) and one-way (discarded) modes. */
static void *receiver(void *arg) {
    struct conn *c = arg;
    for (;;) {
        if (mode == PIPELINE) {
            pthread_mutex_lock(&c->mu);
            int finished = c->sender_done && c->acked == c->sent;
            pthread_mutex_unlock(&c->mu);
            if (finished) break;
        }
        ssize_t n = read_some(c);
        uint64_t t = now_ns(); /* every reply completed by this read arrived now */
        if (n < 0) {
            if (mode == ONEWAY && !is_sender_done(c)) continue; /* quiet is fine while sending */
            die("connection %d: nothing from the server for %d s", c->id, RECV_TIMEOUT_S);
        }
        if (n == 0) {
            pthread_mutex_lock(&c->mu);
            uint64_t outstanding = c->sent - c->acked;
            int done = c->sender_done;
            pthread_mutex_unlock(&c->mu);
            if (done && (mode == ONEWAY || outstanding == 0)) break;
            die("connection %d message %llu: server closed the connection early"
                " (%llu replies outstanding)", c->id, (unsigned long long)c->rx.k,
                (unsigned long long)outstanding);
        }
        if (mode == ONEWAY) continue;
        uint64_t k0 = c->rx.k, done = rx_feed(c, c->rxbuf, (size_t)n);
        if (done == 0) continue;
        int measured = atomic_load(&phase) == MEASURE;
        pthread_mutex_lock(&c->mu);
        if (k0 + done > c->sent)
            die("connection %d message %llu: reply to a message never sent", c->id,
                (unsigned long long)c->sent);
        if (measured)
            for (uint64_t k = k0; k < k0 + done; k++) record(c, t - c->ts[k % window]);
        c->acked += done;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        if (measured) c->counted += done;
    }
    return NULL;
}

static void *pingpong(void *arg) {
    struct conn *c = arg;
    for (uint64_t k = 0; atomic_load(&phase) != STOP; k++) {
        uint64_t t0 = now_ns(), t1 = 0, got = 0;
        send_range(c, k, 1);
        while (got == 0) {
            ssize_t n = read_some(c);
            t1 = now_ns();
            if (n < 0) die("connection %d message %llu: no reply for %d s", c->id,
                           (unsigned long long)k, RECV_TIMEOUT_S);
            if (n == 0) die("connection %d message %llu: server closed the connection early",
                            c->id, (unsigned long long)k);
            got = rx_feed(c, c->rxbuf, (size_t)n);
        }
        if (got > 1 || c->rx.hdr_got > 0)
            die("connection %d message %llu: data beyond the reply", c->id,
                (unsigned long long)k + 1);
        if (atomic_load(&phase) == MEASURE) record(c, t1 - t0), c->counted++;
    }
    return NULL;
}

static int dial(void) {
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res), fd = -1, err = 0;
    if (rc != 0) die("%s port %s: %s", host, port, gai_strerror(rc));
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        if ((fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)) < 0) { err = errno; continue; }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (errno == EINTR) { /* the connect goes on in the background: await it */
            struct pollfd p = { fd, POLLOUT, 0 };
            socklen_t len = sizeof err;
            while (poll(&p, 1, -1) < 0)
                if (errno != EINTR) die("poll: %s", strerror(errno));
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) break;
        } else err = errno;
        close(fd), fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) die("connect to %s port %s: %s", host, port, strerror(err));
    int one = 1;
    struct timeval tv = { RECV_TIMEOUT_S, 0 };
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        die("setsockopt: %s", strerror(errno));
    return fd;
}

static unsigned long long parse_count(const char *s, char opt, unsigned long long lo,
                                      unsigned long long hi) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
        die("-%c wants a whole number from %llu to %llu, not '%s'", opt, lo, hi, s);
    return v;
}

static double parse_seconds(const char *s, char opt, double lo) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo) || v > 1e6) die("-%c wants seconds, not '%s'", opt, s);
    return v;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n, sz);
    if (!p) die("out of memory");
    return p;
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "h:p:m:c:s:w:d:W:B")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = optarg; parse_count(optarg, 'p', 1, 65535); break;
        case 'm':
            for (mode = 0; mode < 3 && strcmp(optarg, mode_names[mode]) != 0; mode++) {}
            if (mode == 3) die("-m wants pipeline, ping-pong or one-way, not '%s'", optarg);
            break;
        case 'c': nconns = (int)parse_count(optarg, 'c', 1, 100000); break;
        case 's': size = (size_t)parse_count(optarg, 's', 0, 1ull << 30); break;
        case 'w': window = parse_count(optarg, 'w', 1, 1u << 24); break;
        case 'd': duration = parse_seconds(optarg, 'd', 0.001); break;
        case 'W': warmup = parse_seconds(optarg, 'W', 0); break;
        case 'B': big_endian = 1; break;
        default:
            fprintf(stderr, "usage: tobyload -p PORT [-h HOST] [-m pipeline|ping-pong|one-way]"
                            " [-c CONNECTIONS] [-s SIZE] [-w INFLIGHT] [-d SECONDS]"
                            " [-W SECONDS] [-B]\n");
            return 1;
        }
    }
    if (!port || optind != argc) die("-p PORT is required, and nothing else is taken");
    if (mode == PINGPONG) window = 1;
    signal(SIGPIPE, SIG_IGN); /* a closed server shows up as EPIPE from write */

    frame_len = 8 + size;
    for (int i = 0; i < 8; i++) header[big_endian ? 7 - i : i] = (uint8_t)((uint64_t)size >> (8 * i));
    pattern = xcalloc(size + 256, 1);
    for (size_t i = 0; i < size + 256; i++) pattern[i] = (uint8_t)i;

    struct conn *conns = xcalloc((size_t)nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) { /* connect all before any load starts */
        struct conn *c = &conns[i];
        c->id = i, c->fd = dial();
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv, NULL);
        c->ts = xcalloc(window, sizeof *c->ts);
        c->txbuf = xcalloc(TXCAP, 1), c->rxbuf = xcalloc(RXCAP, 1);
    }
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        int rc = pthread_create(&c->sender, NULL, mode == PIPELINE ? pipeline_sender :
                                mode == ONEWAY ? oneway_sender : pingpong, c);
        if (rc == 0 && mode != PINGPONG) rc = pthread_create(&c->receiver, NULL, receiver, c);
        if (rc != 0) die("pthread_create: %s", strerror(rc));
    }

    sleep_s(warmup);
    uint64_t t0 = now_ns();
    atomic_store(&phase, MEASURE);
    sleep_s(duration);
    atomic_store(&phase, STOP);
    uint64_t t1 = now_ns();
    for (int i = 0; i < nconns; i++) { /* wake senders waiting for window space */
        pthread_mutex_lock(&conns[i].mu);
        pthread_cond_broadcast(&conns[i].cv);
        pthread_mutex_unlock(&conns[i].mu);
    }

    static uint64_t hist[NBUCKETS];
    uint64_t messages = 0, max_ns = 0;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        int rc = pthread_join(c->sender, NULL);
        if (rc == 0 && mode != PINGPONG) rc = pthread_join(c->receiver, NULL);
        if (rc != 0) die("pthread_join: %s", strerror(rc));
        if (close(c->fd) < 0) die("close: %s", strerror(errno));
        messages += c->counted;
        for (int b = 0; b < NBUCKETS; b++) hist[b] += c->hist[b];
        if (c->max_ns > max_ns) max_ns = c->max_ns;
    }

    double secs = (double)(t1 - t0) / 1e9;
    printf("mode=%s connections=%d size=%zu", mode_names[mode], nconns, size);
    if (mode != ONEWAY) printf(" inflight=%llu", (unsigned long long)window);
    printf(" seconds=%.2f messages=%llu msgs_per_s=%.0f mb_per_s=%.2f", secs,
           (unsigned long long)messages, (double)messages / secs,
           (double)messages * (double)size / secs / 1e6);
    if (mode != ONEWAY)
        printf(" p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f",
               percentile_us(hist, messages, 0.50, max_ns),
               percentile_us(hist, messages, 0.99, max_ns),
               percentile_us(hist, messages, 0.999, max_ns), (double)max_ns / 1000.0);
    printf("\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
