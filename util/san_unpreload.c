/*
 * san_unpreload.c: the last library in the LD_PRELOAD with which the tests
 * start Debian's nginx (not instrumented) to load the sanitizer build of
 * the module (util/build --sanitize writes that list to build/san/preload).
 * The sanitizer runtime must be preloaded into nginx itself, but nothing
 * nginx starts needs it: the supervisor and session binaries link it
 * themselves, and in anything else (sh, sleep, python3 started by user
 * code) it would only slow things down and add reports about code that is
 * not ours.  So at start-up this takes LD_PRELOAD out of the environment
 * that nginx's children inherit; ASAN_OPTIONS and UBSAN_OPTIONS stay.
 */

#include <stdlib.h>


__attribute__((constructor))
static void
pyrepl_unpreload(void)
{
    unsetenv("LD_PRELOAD");
}
