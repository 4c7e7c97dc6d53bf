/*
 * wk_time.h: the clock of the worker binaries' poll loops.  Every timer,
 * deadline and pause in the supervisor and the session processes is a
 * point on this clock, so they compare with each other.
 */

#ifndef WK_TIME_H
#define WK_TIME_H

#include <stdint.h>


/*
 * CLOCK_MONOTONIC in milliseconds: not moved by changes to the wall
 * clock.  0 if the clock cannot be read, which Linux never does for
 * CLOCK_MONOTONIC.
 */
int64_t wk_msec(void);

#endif /* WK_TIME_H */
