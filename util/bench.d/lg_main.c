/*
 * lg_main.c: pyrepl-load's command line and the requests it describes.
 * main() reads the options into o and runs one mode, which prints one
 * JSON object on stdout; util/bench.d/bench.py drives it.
 *
 *   pyrepl-load load   many connections in one epoll loop, each a closed
 *                      loop of one request (HTTP keep-alive) or one
 *                      WebSocket message at a time: latency and rate
 *   pyrepl-load stream one run on one connection (SSE or WebSocket):
 *                      bytes, duration, and the delay of every "@@<ns>"
 *                      stamp (CLOCK_MONOTONIC, printed by the code) from
 *                      the print to the read that brought it
 *   pyrepl-load create sequential creates on one keep-alive connection,
 *                      optionally until the first answer ("ready") and
 *                      a delete (not timed) after each
 *
 * Options (all modes): --port N, --header "Name: value" (repeatable),
 * --path P (repeatable; --paths-file F, one a line), --method M, --body B,
 * --accept A, --status N (expected; default 200); WebSocket: --ws,
 * --msg TEMPLATE ("{rid}" becomes a request id unique to the run),
 * --done S (repeatable, up to 2: a request is complete when messages
 * carrying "<rid>" contained each), --ok S (the first --done message or
 * the HTTP body must contain S, else the request counts as an error),
 * --subprotocol P.  load: --conns N, --warmup SEC, --duration SEC,
 * --count N, --once (HTTP: every path once, spread over the connections;
 * WebSocket: one message on each connection).
 * stream: --stamps.  create: --count N, --id-key K, --ready-path P
 * --ready-body B (HTTP, same connection) or --ready-ws-path P --ready-msg M
 * --ready-done S (a new WebSocket), --delete-path P ("{sid}" is the new
 * id), --pace-ms N, --keep (print the ids).  --quickack: see lg.h.
 */

#define _GNU_SOURCE

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg_mode.h"


#define LG_BODY_KEEP    (256 * 1024)    /* HTTP body kept for --ok */


lg_opts_t  o;


void
lg_die(const char *what)
{
    fprintf(stderr, "pyrepl-load: %s\n", what);
    exit(1);
}


/* append tmpl to out with every key replaced by val */
void
lg_subst(lg_buf_t *out, const char *tmpl, const char *key, const char *val)
{
    const char  *p;
    size_t       klen = strlen(key);

    while ((p = strstr(tmpl, key)) != NULL) {
        if (lg_buf_append(out, tmpl, p - tmpl) != 0
            || lg_buf_append(out, val, strlen(val)) != 0)
        {
            lg_die("out of memory");
        }
        tmpl = p + klen;
    }

    if (lg_buf_append(out, tmpl, strlen(tmpl)) != 0) {
        lg_die("out of memory");
    }
}


void
lg_request(lg_buf_t *out, const char *method, const char *path,
    const char *body, const char *accept)
{
    char    head[2048];
    size_t  blen = body ? strlen(body) : 0;
    int     n;

    n = snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s%s",
                 method, path, o.port,
                 accept ? "Accept: " : "", accept ? accept : "",
                 accept ? "\r\n" : "");
    if (n < 0 || (size_t) n >= sizeof(head)) {
        lg_die("request head too long");
    }

    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        n += snprintf(head + n, sizeof(head) - n,
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n", blen);
        if ((size_t) n >= sizeof(head)) {
            lg_die("request head too long");
        }
    }

    if (lg_buf_append(out, head, n) != 0
        || lg_buf_append(out, o.headers, o.headers_len) != 0
        || lg_buf_append(out, "\r\n", 2) != 0
        || (blen && lg_buf_append(out, body, blen) != 0))
    {
        lg_die("out of memory");
    }
}


void
lg_keep_body(void *arg, const char *p, size_t n)
{
    lg_buf_t  *b = arg;

    if (b->len + n <= LG_BODY_KEEP) {
        (void) lg_buf_append(b, p, n);
    }
}


/* command line --------------------------------------------------------- */


static void
lg_add_path(const char *p)
{
    const char  **np;

    if (o.npaths == o.paths_cap) {
        o.paths_cap = o.paths_cap ? o.paths_cap * 2 : 16;
        np = realloc(o.paths, o.paths_cap * sizeof(char *));
        if (np == NULL) {
            lg_die("out of memory");
        }
        o.paths = np;
    }
    o.paths[o.npaths++] = p;
}


static void
lg_paths_file(const char *name)
{
    FILE     *f = fopen(name, "r");
    char     *line = NULL;
    size_t    cap = 0;
    ssize_t   n;

    if (f == NULL) {
        lg_die("cannot open --paths-file");
    }

    while ((n = getline(&line, &cap, f)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (n) {
            lg_add_path(strdup(line));
        }
    }

    free(line);
    fclose(f);
}


int
main(int argc, char **argv)
{
    static const struct option  opts[] = {
        { "port", required_argument, NULL, 'p' },
        { "header", required_argument, NULL, 'H' },
        { "path", required_argument, NULL, 'P' },
        { "paths-file", required_argument, NULL, 'F' },
        { "method", required_argument, NULL, 'm' },
        { "body", required_argument, NULL, 'b' },
        { "accept", required_argument, NULL, 'a' },
        { "status", required_argument, NULL, 's' },
        { "ws", no_argument, NULL, 'w' },
        { "msg", required_argument, NULL, 'M' },
        { "done", required_argument, NULL, 'd' },
        { "ok", required_argument, NULL, 'o' },
        { "subprotocol", required_argument, NULL, 'S' },
        { "conns", required_argument, NULL, 'c' },
        { "warmup", required_argument, NULL, 'W' },
        { "duration", required_argument, NULL, 'D' },
        { "count", required_argument, NULL, 'n' },
        { "once", no_argument, NULL, '1' },
        { "stamps", no_argument, NULL, 't' },
        { "id-key", required_argument, NULL, 'k' },
        { "ready-path", required_argument, NULL, 'r' },
        { "ready-body", required_argument, NULL, 'R' },
        { "ready-ws-path", required_argument, NULL, 'x' },
        { "ready-msg", required_argument, NULL, 'X' },
        { "ready-done", required_argument, NULL, 'y' },
        { "delete-path", required_argument, NULL, 'z' },
        { "pace-ms", required_argument, NULL, 'i' },
        { "keep", no_argument, NULL, 'K' },
        { "quickack", no_argument, NULL, 'Q' },
        { NULL, 0, NULL, 0 }
    };
    int     ch;
    size_t  n;

    if (argc < 2) {
        lg_die("usage: pyrepl-load load|stream|create [options]");
    }

    o.mode = argv[1];
    o.method = "GET";
    o.status = 200;
    o.conns = 1;
    o.warmup = 0.5;
    o.duration = 2;
    o.id_key = "session_id";

    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'p': o.port = atoi(optarg); break;
        case 'H':
            n = strlen(optarg);
            if (o.headers_len + n + 3 > sizeof(o.headers)) {
                lg_die("too many headers");
            }
            memcpy(o.headers + o.headers_len, optarg, n);
            memcpy(o.headers + o.headers_len + n, "\r\n", 3);
            o.headers_len += n + 2;
            break;
        case 'P': lg_add_path(optarg); break;
        case 'F': lg_paths_file(optarg); break;
        case 'm': o.method = optarg; break;
        case 'b': o.body = optarg; break;
        case 'a': o.accept = optarg; break;
        case 's': o.status = atoi(optarg); break;
        case 'w': o.ws = 1; break;
        case 'M': o.msg = optarg; break;
        case 'd':
            if (o.ndone == LG_MAX_DONE) {
                lg_die("at most two --done");
            }
            o.done[o.ndone++] = optarg;
            break;
        case 'o': o.ok = optarg; break;
        case 'S': o.subprotocol = optarg; break;
        case 'c': o.conns = atoi(optarg); break;
        case 'W': o.warmup = atof(optarg); break;
        case 'D': o.duration = atof(optarg); break;
        case 'n': o.count = atol(optarg); break;
        case '1': o.once = 1; break;
        case 't': o.stamps = 1; break;
        case 'k': o.id_key = optarg; break;
        case 'r': o.ready_path = optarg; break;
        case 'R': o.ready_body = optarg; break;
        case 'x': o.ready_ws_path = optarg; break;
        case 'X': o.ready_msg = optarg; break;
        case 'y': o.ready_done = optarg; break;
        case 'z': o.delete_path = optarg; break;
        case 'i': o.pace_ms = atoi(optarg); break;
        case 'K': o.keep = 1; break;
        case 'Q': lg_quickack = 1; break;
        default: lg_die("bad option");
        }
    }

    if (o.port <= 0) {
        lg_die("--port is required");
    }

    if (o.once && o.conns > (int) o.npaths) {
        o.conns = o.npaths;
    }

    if (strcmp(o.mode, "load") == 0) {
        return lg_mode_load();
    }
    if (strcmp(o.mode, "stream") == 0) {
        return lg_mode_stream();
    }
    if (strcmp(o.mode, "create") == 0) {
        return lg_mode_create();
    }

    lg_die("mode is load, stream or create");
    return 1;
}
