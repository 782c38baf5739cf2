/* Reader introspection for the tests and fuzzers only; not in the public
 * header. Swift tests reach it as the explicit submodule CTobyFrame.Testing
 * (include/module.modulemap), the fuzzers with -I Sources/CTobyFrame. */
#ifndef TOBY_TESTING_H
#define TOBY_TESTING_H

#include "ctobyframe.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * For a TOBY_FRAME_DIRECT frame: copies the payload bytes already buffered
 * in the ring into `dst` (caller-owned, at least `dst_len` bytes) and frees
 * them from the ring. Returns the number of bytes copied (<= dst_len).
 */
size_t toby_reader_direct_take(toby_reader *r, void *dst, size_t dst_len);

/** Payload bytes the current TOBY_FRAME_DIRECT frame still needs. */
uint64_t toby_reader_direct_remaining(const toby_reader *r);

#ifdef __cplusplus
}
#endif

#endif /* TOBY_TESTING_H */
