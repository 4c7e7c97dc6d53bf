/*
 * lg_stats.c: the samples pyrepl-load measures (times in ns, a growable
 * array) and their statistics, printed as JSON: the count, the minimum,
 * nearest-rank percentiles, the maximum and the mean, in microseconds.
 */

#include <stdio.h>
#include <stdlib.h>

#include "lg_mode.h"


void
lg_push(lg_samples_t *s, uint64_t v)
{
    uint64_t  *p;

    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        p = realloc(s->v, s->cap * sizeof(uint64_t));
        if (p == NULL) {
            lg_die("out of memory");
        }
        s->v = p;
    }
    s->v[s->n++] = v;
}


static int
lg_cmp(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}


/* nearest-rank percentile in microseconds of sorted samples */
static double
lg_pct(const lg_samples_t *s, double p)
{
    size_t  k;

    if (s->n == 0) {
        return 0;
    }
    k = (size_t) (p * s->n + 0.999999);
    k = k ? k - 1 : 0;
    if (k >= s->n) {
        k = s->n - 1;
    }
    return s->v[k] / 1000.0;
}


void
lg_print_stats(const char *name, lg_samples_t *s)
{
    double  sum = 0;
    size_t  i;

    qsort(s->v, s->n, sizeof(uint64_t), lg_cmp);
    for (i = 0; i < s->n; i++) {
        sum += s->v[i];
    }

    printf("\"%s\": {\"n\": %zu, \"min\": %.1f, \"p50\": %.1f, "
           "\"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f, "
           "\"mean\": %.1f}",
           name, s->n, s->n ? s->v[0] / 1000.0 : 0, lg_pct(s, 0.50),
           lg_pct(s, 0.90), lg_pct(s, 0.99), lg_pct(s, 0.999),
           lg_pct(s, 1.0), s->n ? sum / s->n / 1000.0 : 0);
}
