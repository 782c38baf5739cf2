/*
 * ctobyframe.h — the byte-level mechanism of TobyTCP.
 *
 * TobyTcp frames every message as an 8-byte unsigned length (payload bytes,
 * not counting the 8) followed by the payload:
 *
 *     +----------------------------+---------------------------+
 *     | length: 8 bytes (LE or BE) | payload: `length` bytes   |
 *     +----------------------------+---------------------------+
 *
 *     "toby is a good dog" (18 bytes), little-endian:
 *     12 00 00 00 00 00 00 00 74 6f 62 79 20 69 73 ...
 *
 * This library is a mechanism only: it has no threads, no locks, no global
 * mutable state, no logging, never allocates and never touches signal
 * dispositions. Every object lives in memory the caller provides. Policy
 * (blocking, threads, queues, user-facing errors) belongs to the caller.
 *
 * Return values follow libuv: >= 0 is success, a negative value is either
 * -errno (for example -ECONNRESET) or one of the TOBY_E* codes (toby_base.h),
 * which lie outside errno's range. toby_strerror() describes both.
 *
 * Thread safety: none. A toby_reader or toby_writer must be used by one
 * thread at a time; the caller serialises access.
 */
#ifndef CTOBYFRAME_H
#define CTOBYFRAME_H

/* The parts, each usable alone; together, the whole mechanism. */
#include "toby_base.h"
#include "toby_reader.h"
#include "toby_writer.h"
#include "toby_socket.h"
#include "toby_loop.h"

#endif /* CTOBYFRAME_H */
