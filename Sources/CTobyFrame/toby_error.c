/* Error texts for TOBY_E* codes and -errno values. */
#include "ctobyframe.h"

#include <string.h>

const char *toby_strerror(int err) {
    switch (err) {
    case 0:
        return "success";
    case TOBY_EFRAMETOOLARGE:
        return "frame length exceeds the configured maximum";
    case TOBY_ETRUNCATED:
        return "peer closed the stream in the middle of a frame";
    case TOBY_EINVAL:
        return "invalid argument";
    default:
        break;
    }
    if (err < 0 && err > -4096)
        /* glibc's strerror returns static text for every errno value it
         * knows; only unknown values use its thread-local buffer. */
        return strerror(-err);
    return "unknown error";
}
