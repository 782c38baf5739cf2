/* Prefix encoding: 8-byte unsigned length in either byte order. */
#include "toby_internal.h"

void toby_prefix_encode(uint64_t length, toby_byte_order order,
                        uint8_t out[TOBY_PREFIX_SIZE]) {
    toby__prefix_encode(length, order, out);
}

uint64_t toby_prefix_decode(const uint8_t in[TOBY_PREFIX_SIZE],
                            toby_byte_order order) {
    return toby__prefix_decode(in, order);
}
