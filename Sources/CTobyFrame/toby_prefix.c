/* Prefix encoding: 8-byte unsigned length in either byte order. */
#include "ctobyframe.h"

void toby_prefix_encode(uint64_t length, toby_byte_order order,
                        uint8_t out[TOBY_PREFIX_SIZE]) {
    /* Shifts rather than memcpy + bswap keep this independent of the host's
     * byte order; compilers turn both loops into a single (b)swap + store. */
    if (order == TOBY_BIG_ENDIAN) {
        for (int i = 0; i < TOBY_PREFIX_SIZE; i++)
            out[i] = (uint8_t)(length >> (8 * (TOBY_PREFIX_SIZE - 1 - i)));
    } else {
        for (int i = 0; i < TOBY_PREFIX_SIZE; i++)
            out[i] = (uint8_t)(length >> (8 * i));
    }
}

uint64_t toby_prefix_decode(const uint8_t in[TOBY_PREFIX_SIZE],
                            toby_byte_order order) {
    uint64_t v = 0;
    if (order == TOBY_BIG_ENDIAN) {
        for (int i = 0; i < TOBY_PREFIX_SIZE; i++)
            v = (v << 8) | in[i];
    } else {
        for (int i = TOBY_PREFIX_SIZE - 1; i >= 0; i--)
            v = (v << 8) | in[i];
    }
    return v;
}
