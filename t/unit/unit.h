/*
 * unit.h: what the C unit tests share: CHECK(), which counts passed and
 * failed checks and prints each failure with its place; every test's
 * main() ends with "N passed, N failed" and a non-zero exit on failure.
 * One test program is one translation unit.
 */

#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>


static int  passed, failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

#endif /* UNIT_H */
