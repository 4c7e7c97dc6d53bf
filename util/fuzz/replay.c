/*
 * replay.c: a main() for a fuzz target without libFuzzer, so that the
 * corpora can be replayed by the normal compiler
 * (t/operations/test_fuzz_corpus.py).
 * Runs LLVMFuzzerTestOneInput once for each file named on the command line,
 * and for each regular file in a directory named there (in name order),
 * each read into a heap buffer of exactly its size so that ASan sees a read
 * past its end.  Names each input on stderr before running it, so the
 * last name printed before a crash is the culprit.  Exits 0 after the last
 * input, 1 if a file cannot be read.
 *
 * Build: cc -fsanitize=address,undefined -I src util/fuzz/replay.c \
 *            util/fuzz/<name>_fuzz.c src/codec/<what it fuzzes>.c ...
 */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
run_file(const char *path)
{
    long      len;
    FILE     *f;
    uint8_t  *buf;

    f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        perror(path);
        if (f) {
            fclose(f);
        }
        return -1;
    }

    buf = malloc(len ? (size_t) len : 1);
    if (buf == NULL || fread(buf, 1, (size_t) len, f) != (size_t) len) {
        perror(path);
        free(buf);
        fclose(f);
        return -1;
    }

    fclose(f);

    fprintf(stderr, "replay: %s (%ld bytes)\n", path, len);
    LLVMFuzzerTestOneInput(buf, (size_t) len);

    free(buf);

    return 0;
}


static int
by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


static int
run_dir(const char *dir, unsigned *n)
{
    int             rc;
    char            path[4096];
    char          **names;
    size_t          count, cap, i;
    struct stat     st;
    struct dirent  *e;
    DIR            *d;

    d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        return -1;
    }

    names = NULL;
    count = cap = 0;
    rc = 0;

    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }

        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof(char *));
            if (names == NULL) {
                perror("realloc");
                closedir(d);
                return -1;
            }
        }

        names[count++] = strdup(e->d_name);
    }

    closedir(d);

    qsort(names, count, sizeof(char *), by_name);

    for (i = 0; i < count; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);

        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(path);
            (*n)++;
        }

        free(names[i]);
    }

    free(names);

    return rc;
}


int
main(int argc, char **argv)
{
    int          i, rc;
    unsigned     n;
    struct stat  st;

    n = 0;

    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }

        if (S_ISDIR(st.st_mode)) {
            rc = run_dir(argv[i], &n);

        } else {
            rc = run_file(argv[i]);
            n++;
        }

        if (rc != 0) {
            return 1;
        }
    }

    printf("replay: %u inputs, no crash\n", n);

    return 0;
}
