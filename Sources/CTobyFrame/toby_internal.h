/* Private helpers shared by the CTobyFrame sources; not installed. */
#ifndef TOBY_INTERNAL_H
#define TOBY_INTERNAL_H

#include "ctobyframe.h"

#include <string.h>

/* Inline prefix decoding for the reader's per-frame hot path: one load and
 * at most one byte swap, instead of a call into another translation unit. */
static inline uint64_t toby__prefix_decode(const uint8_t *in,
                                           toby_byte_order order) {
#if defined(__BYTE_ORDER__) && defined(__GNUC__)
    uint64_t v;
    memcpy(&v, in, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return order == TOBY_BIG_ENDIAN ? __builtin_bswap64(v) : v;
#else
    return order == TOBY_LITTLE_ENDIAN ? __builtin_bswap64(v) : v;
#endif
#else
    uint64_t v = 0;
    if (order == TOBY_BIG_ENDIAN) {
        for (int i = 0; i < TOBY_PREFIX_SIZE; i++)
            v = (v << 8) | in[i];
    } else {
        for (int i = TOBY_PREFIX_SIZE - 1; i >= 0; i--)
            v = (v << 8) | in[i];
    }
    return v;
#endif
}

static inline void toby__prefix_encode(uint64_t length, toby_byte_order order,
                                       uint8_t *out) {
#if defined(__BYTE_ORDER__) && defined(__GNUC__)
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v = order == TOBY_BIG_ENDIAN ? __builtin_bswap64(length) : length;
#else
    uint64_t v = order == TOBY_LITTLE_ENDIAN ? __builtin_bswap64(length) : length;
#endif
    memcpy(out, &v, sizeof(v));
#else
    for (int i = 0; i < TOBY_PREFIX_SIZE; i++) {
        int shift = order == TOBY_BIG_ENDIAN ? 8 * (TOBY_PREFIX_SIZE - 1 - i) : 8 * i;
        out[i] = (uint8_t)(length >> shift);
    }
#endif
}

#endif /* TOBY_INTERNAL_H */
