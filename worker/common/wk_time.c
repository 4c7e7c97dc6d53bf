/*
 * wk_time.c: the millisecond clock of the worker binaries (wk_time.h).
 */

#include <time.h>

#include "wk_time.h"


int64_t
wk_msec(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1) {
        return 0;
    }

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
