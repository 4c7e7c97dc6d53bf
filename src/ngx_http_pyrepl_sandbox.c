/*
 * ngx_http_pyrepl_sandbox.c: the directives that confine session
 * processes, their checks, and the supervisor options they become
 * (worker/sandbox/sb_confine.h applies them in each session process):
 *
 *   pyrepl_session_uids BASE|off 1610612736: a session runs as uid and
 *                                gid BASE + its pid, one identity per
 *                                live session
 *   pyrepl_user USER [GROUP]     nobody (and its group): the identity of
 *                                every session when pyrepl_session_uids
 *                                is off
 *   pyrepl_memory_limit SIZE|off 1g of private writable memory
 *                                (RLIMIT_DATA)
 *   pyrepl_cpu_limit TIME|off    off: CPU seconds over a session's life
 *   pyrepl_max_processes N       64 processes and threads per session
 *   pyrepl_file_size_limit SIZE|off  1g per file written
 *   pyrepl_open_files N          1024 descriptors
 *   pyrepl_seccomp on|off|log    on
 *   pyrepl_network on|off        off: no AF_INET/AF_INET6 sockets
 *   pyrepl_env NAME=VALUE        (repeatable) added to the environment
 *   pyrepl_jail on|off           on as root: namespaces, a minimal root
 *                                and control groups (worker/sandbox/
 *                                sb_jail.h)
 *   pyrepl_tmp_size SIZE         64m: a jail's /tmp and /dev/shm, each
 *   pyrepl_cpu_weight N          100: a jail's CPU share, as cpu.weight
 *   pyrepl_bind SRC [DST] [ro|rw] (repeatable) SRC at DST in every jail
 *
 * and the environment of sessions, which is nothing of nginx's own (the
 * operator's secrets, HOME=/root, a build machine's PATH): PATH, LANG and
 * TMPDIR with fixed values, USER and LOGNAME (pyrepl_user's name when
 * every session runs as it, else "pyrepl"), what pyrepl_env adds or
 * replaces, and HOME, the session's working directory (set in the session
 * process).  It is the supervisor's environment, which its children
 * inherit.
 *
 * Identities apply only when the nginx master runs as root (otherwise
 * sessions run as nginx's own user, which "nginx -t" warns about).  A
 * session uid must never be one nginx's workers run as: they would share
 * signals, sockets and files.
 */

#include "ngx_http_pyrepl_sandbox.h"


static void ngx_http_pyrepl_bind_split(ngx_str_t *b, ngx_str_t *src,
    ngx_str_t *dst);
static ngx_uint_t ngx_http_pyrepl_path_nested(ngx_str_t *a, ngx_str_t *b);

#include <grp.h>
#include <pwd.h>


#define PYREPL_UID_BASE       1610612736     /* 0x60000000 */
#define PYREPL_PID_MAX        (1U << 22)     /* the kernel's PID_MAX_LIMIT */
#define PYREPL_MIN_MEMORY     (128 * 1024 * 1024)
#define PYREPL_MAX_ENV        64


static ngx_str_t  ngx_http_pyrepl_env_defaults[] = {
    ngx_string("PATH=/usr/local/bin:/usr/bin:/bin"),
    ngx_string("LANG=C.UTF-8"),
    ngx_string("TMPDIR=/tmp"),
    ngx_null_string
};


static ngx_str_t  ngx_http_pyrepl_env_user[] = {
    ngx_string("USER="),
    ngx_string("LOGNAME=")
};


#if defined(__has_feature)
#if __has_feature(address_sanitizer)

/* the sanitizer build: its processes report where the tests look */
static char  *ngx_http_pyrepl_env_sanitizer[] = {
    "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL
};

#define PYREPL_ENV_SANITIZER  1
#endif
#endif


ngx_conf_enum_t  ngx_http_pyrepl_seccomp_modes[] = {
    { ngx_string("off"), 0 },
    { ngx_string("on"), 1 },
    { ngx_string("log"), 2 },
    { ngx_null_string, 0 }
};


/*
 * pyrepl_env NAME=VALUE; NAME a shell variable name, each at most once;
 * VALUE anything (it may be empty).
 */
char *
ngx_http_pyrepl_env(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pyrepl_main_conf_t *pmcf = conf;

    u_char      *eq, *p;
    size_t       len;
    ngx_str_t   *value, *e;
    ngx_uint_t   i;

    value = cf->args->elts;

    eq = ngx_strlchr(value[1].data, value[1].data + value[1].len, '=');

    if (eq == NULL || eq == value[1].data
        || (*value[1].data >= '0' && *value[1].data <= '9'))
    {
        return "takes NAME=VALUE, NAME a variable name";
    }

    for (p = value[1].data; p < eq; p++) {
        if (!(*p == '_' || (*p >= '0' && *p <= '9')
              || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        {
            return "takes NAME=VALUE, NAME of letters, digits and \"_\"";
        }
    }

    len = eq - value[1].data + 1;

    if (pmcf->sandbox.env == NULL) {
        pmcf->sandbox.env = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (pmcf->sandbox.env == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    e = pmcf->sandbox.env->elts;

    for (i = 0; i < pmcf->sandbox.env->nelts; i++) {
        if (ngx_strncmp(e[i].data, value[1].data, len) == 0) {
            return "sets this variable again";
        }
    }

    if (pmcf->sandbox.env->nelts == PYREPL_MAX_ENV) {
        return "is given more than 64 times";
    }

    e = ngx_array_push(pmcf->sandbox.env);
    if (e == NULL) {
        return NGX_CONF_ERROR;
    }

    *e = value[1];

    return NGX_CONF_OK;
}


/*
 * The sessions' environment (see the top), NULL-terminated, in memory of
 * the calling process's own (malloc: the child that execs the supervisor
 * calls it).  NULL when out of memory.
 */
char **
ngx_http_pyrepl_sandbox_envp(ngx_http_pyrepl_main_conf_t *pmcf)
{
    char           **envp, *v;
    u_char          *user;
    size_t           len;
    ngx_str_t       *e, *d;
    ngx_uint_t       i, j, n, nenv;
    struct passwd   *pw;

    nenv = pmcf->sandbox.env ? pmcf->sandbox.env->nelts : 0;
    e = nenv ? pmcf->sandbox.env->elts : NULL;

    envp = malloc((nenv + 10) * sizeof(char *));
    if (envp == NULL) {
        return NULL;
    }

    n = 0;

    /* who a session is: there is no passwd entry for per-session uids */
    user = (u_char *) "pyrepl";

    if (geteuid() != 0) {
        pw = getpwuid(geteuid());
        user = pw ? (u_char *) pw->pw_name : user;

    } else if (pmcf->sandbox.uid_base == 0) {
        user = pmcf->sandbox.user.data;
    }

    for (i = 0; i < 2; i++) {
        d = &ngx_http_pyrepl_env_user[i];

        for (j = 0; j < nenv; j++) {
            if (ngx_strncmp(e[j].data, d->data, d->len) == 0) {
                break;
            }
        }

        if (j < nenv) {
            continue;
        }

        envp[n] = malloc(d->len + ngx_strlen(user) + 1);
        if (envp[n] == NULL) {
            return NULL;
        }

        ngx_sprintf((u_char *) envp[n++], "%V%s%Z", d, user);
    }

    for (d = ngx_http_pyrepl_env_defaults; d->len; d++) {
        len = ngx_strlchr(d->data, d->data + d->len, '=') - d->data + 1;

        for (j = 0; j < nenv; j++) {
            if (ngx_strncmp(e[j].data, d->data, len) == 0) {
                break;
            }
        }

        if (j == nenv) {
            envp[n++] = (char *) d->data;
        }
    }

    for (i = 0; i < nenv; i++) {
        v = malloc(e[i].len + 1);
        if (v == NULL) {
            return NULL;
        }

        ngx_memcpy(v, e[i].data, e[i].len);
        v[e[i].len] = '\0';
        envp[n++] = v;
    }

#ifdef PYREPL_ENV_SANITIZER
    for (i = 0; ngx_http_pyrepl_env_sanitizer[i] != NULL; i++) {
        v = getenv(ngx_http_pyrepl_env_sanitizer[i]);
        len = ngx_strlen(ngx_http_pyrepl_env_sanitizer[i]);

        if (v != NULL) {
            envp[n] = malloc(len + 1 + ngx_strlen(v) + 1);
            if (envp[n] == NULL) {
                return NULL;
            }

            ngx_sprintf((u_char *) envp[n++], "%s=%s%Z",
                        ngx_http_pyrepl_env_sanitizer[i], v);
        }
    }
#endif

    envp[n] = NULL;

    return envp;
}


void
ngx_http_pyrepl_sandbox_create(ngx_http_pyrepl_sandbox_conf_t *sb)
{
    /* user and group are { 0, NULL } (ngx_pcalloc) */

    sb->uid = (ngx_uid_t) NGX_CONF_UNSET_UINT;
    sb->gid = (ngx_gid_t) NGX_CONF_UNSET_UINT;
    sb->uid_base = NGX_CONF_UNSET;
    sb->memory = NGX_CONF_UNSET;
    sb->cpu = NGX_CONF_UNSET;
    sb->max_processes = NGX_CONF_UNSET_UINT;
    sb->file_size = NGX_CONF_UNSET;
    sb->open_files = NGX_CONF_UNSET_UINT;
    sb->seccomp = NGX_CONF_UNSET_UINT;
    sb->network = NGX_CONF_UNSET;
    sb->jail = NGX_CONF_UNSET;
    sb->tmp_size = NGX_CONF_UNSET_SIZE;
    sb->cpu_weight = NGX_CONF_UNSET_UINT;
}


/*
 * pyrepl_bind SRC [DST] [ro|rw]: SRC seen at DST (default: the same path)
 * in every session's jail, read-only unless rw.  DST may not be where the
 * jail puts its own mounts (/proc, /dev, /tmp, the home).
 */
char *
ngx_http_pyrepl_bind(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pyrepl_main_conf_t *pmcf = conf;

    u_char           *p, *real;
    ngx_str_t        *value, *src, *dst, *b, real_src;
    ngx_uint_t        i, rw;
    ngx_file_info_t   fi;

    static ngx_str_t  taken[] = {
        ngx_string("/proc"), ngx_string("/dev"), ngx_string("/tmp"),
        ngx_string(PYREPL_JAIL_HOME), ngx_string("/usr/local/etc"),
        ngx_string("/usr/local/nginx")
    };

    value = cf->args->elts;
    src = &value[1];
    dst = src;
    rw = 0;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strcmp(value[i].data, "ro") == 0) {
            rw = 0;

        } else if (ngx_strcmp(value[i].data, "rw") == 0) {
            rw = 1;

        } else if (i == 2) {
            dst = &value[i];

        } else {
            return "takes SRC [DST] [ro|rw]";
        }
    }

    while (dst->len > 1 && dst->data[dst->len - 1] == '/') {
        dst->len--;
    }

    /* one spelling of each destination: no "//", "." or ".." in it */
    if (src->data[0] != '/' || dst->data[0] != '/' || dst->len < 2
        || ngx_strlchr(src->data, src->data + src->len, ':') != NULL
        || ngx_strlchr(dst->data, dst->data + dst->len, ':') != NULL
        || ngx_strstr(dst->data, "//") != NULL
        || ngx_strstr(dst->data, "/.") != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_bind \"%V\" \"%V\": absolute paths "
                           "without \":\", \"//\" or names starting with "
                           "\".\", and not \"/\"", src, dst);
        return NGX_CONF_ERROR;
    }

    /* the jail's own mounts, and the folders above them, stay its own */
    for (i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        if (ngx_http_pyrepl_path_nested(dst, &taken[i])) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pyrepl_bind: \"%V\" is, holds or is in "
                               "\"%V\", the jail's own", dst, &taken[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_file_info(src->data, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "pyrepl_bind: " ngx_file_info_n " \"%V\" failed",
                           src);
        return NGX_CONF_ERROR;
    }

    /* the jail opens the source without following any link: its real path */
    real = ngx_pnalloc(cf->pool, NGX_MAX_PATH);
    if (real == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_realpath(src->data, real) == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "pyrepl_bind: " ngx_realpath_n " \"%V\" failed",
                           src);
        return NGX_CONF_ERROR;
    }

    real_src.data = real;
    real_src.len = ngx_strlen(real);
    src = &real_src;               /* dst stays as written */

    if (ngx_strlchr(src->data, src->data + src->len, ':') != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_bind: the real path \"%V\" has a \":\"",
                           src);
        return NGX_CONF_ERROR;
    }

    if (pmcf->sandbox.binds == NULL) {
        pmcf->sandbox.binds = ngx_array_create(cf->pool, 4,
                                               sizeof(ngx_str_t));
        if (pmcf->sandbox.binds == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (pmcf->sandbox.binds->nelts == NGX_HTTP_PYREPL_MAX_BINDS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_bind: at most %d",
                           NGX_HTTP_PYREPL_MAX_BINDS);
        return NGX_CONF_ERROR;
    }

    b = ngx_array_push(pmcf->sandbox.binds);
    if (b == NULL) {
        return NGX_CONF_ERROR;
    }

    b->len = sizeof("rw::") - 1 + src->len + dst->len;
    b->data = ngx_pnalloc(cf->pool, b->len + 1);
    if (b->data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_sprintf(b->data, "%s:%V:%V", rw ? "rw" : "ro", src, dst);
    *p = '\0';

    return NGX_CONF_OK;
}


/*
 * The binds as a whole, once PyREPL's own folders (own: pyrepl_workdir,
 * which sessions write, the checkpoint and socket folders, private) are
 * known: no source inside (or holding) one of them or an rw bind's
 * source, where a session could replace a folder with a link for the next
 * jails to follow, or see what is not its own; and no destination inside
 * another (the jail would make its folder in the other bind's source, on
 * the host).
 */
ngx_int_t
ngx_http_pyrepl_binds_check(ngx_conf_t *cf, ngx_array_t *binds,
    ngx_str_t *own, ngx_uint_t nown)
{
    u_char      *real;
    ngx_str_t   *b, si, sj, di, dj, dir;
    ngx_uint_t   i, j, k;

    if (binds == NULL) {
        return NGX_OK;
    }

    b = binds->elts;

    for (i = 0; i < binds->nelts; i++) {
        ngx_http_pyrepl_bind_split(&b[i], &si, &di);

        for (k = 0; k < nown; k++) {
            /* as the jail sees it: its real path, when it is there */
            dir = own[k];
            real = ngx_pnalloc(cf->temp_pool, NGX_MAX_PATH);

            if (real == NULL) {
                return NGX_ERROR;
            }

            if (ngx_realpath(own[k].data, real) != NULL) {
                dir.data = real;
                dir.len = ngx_strlen(real);
            }

            if (ngx_http_pyrepl_path_nested(&si, &own[k])
                || ngx_http_pyrepl_path_nested(&si, &dir))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "pyrepl_bind \"%V\": sessions write in, "
                                   "or PyREPL keeps private, \"%V\"", &si,
                                   &own[k]);
                return NGX_ERROR;
            }
        }

        for (j = 0; j < binds->nelts; j++) {
            if (j == i) {
                continue;
            }

            ngx_http_pyrepl_bind_split(&b[j], &sj, &dj);

            if (j > i && ngx_http_pyrepl_path_nested(&di, &dj)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "pyrepl_bind: \"%V\" and \"%V\" are "
                                   "one inside the other", &di, &dj);
                return NGX_ERROR;
            }

            if (b[j].data[1] == 'w'
                && ngx_http_pyrepl_path_nested(&si, &sj))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "pyrepl_bind \"%V\": sessions write in "
                                   "the rw bind of \"%V\"", &si, &sj);
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* "ro|rw:SRC:DST" into its source and destination */
static void
ngx_http_pyrepl_bind_split(ngx_str_t *b, ngx_str_t *src, ngx_str_t *dst)
{
    u_char  *colon;

    src->data = b->data + sizeof("rw:") - 1;
    colon = ngx_strlchr(src->data, b->data + b->len, ':');
    src->len = colon - src->data;
    dst->data = colon + 1;
    dst->len = b->data + b->len - dst->data;
}


/* Whether a and b are the same path or one is inside the other. */
static ngx_uint_t
ngx_http_pyrepl_path_nested(ngx_str_t *a, ngx_str_t *b)
{
    ngx_str_t  *s, *l;                  /* the shorter, the longer */

    s = (a->len <= b->len) ? a : b;
    l = (s == a) ? b : a;

    if (ngx_strncmp(s->data, l->data, s->len) != 0) {
        return 0;
    }

    return l->len == s->len || s->len == 1 || l->data[s->len] == '/';
}


/* pyrepl_user USER [GROUP] */
char *
ngx_http_pyrepl_user(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pyrepl_main_conf_t *pmcf = conf;

    ngx_str_t  *value;

    if (pmcf->sandbox.user.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    pmcf->sandbox.user = value[1];

    if (cf->args->nelts == 3) {
        pmcf->sandbox.group = value[2];
    }

    return NGX_CONF_OK;
}


/* pyrepl_session_uids BASE | off */
char *
ngx_http_pyrepl_session_uids(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pyrepl_main_conf_t *pmcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (pmcf->sandbox.uid_base != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        pmcf->sandbox.uid_base = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n < 65536 || (uint64_t) n + PYREPL_PID_MAX >= 0xffffffffULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_session_uids \"%V\": \"off\" or a first "
                           "uid from 65536 to %uL, so that it plus any pid "
                           "is no system account and below 2^32 - 1",
                           &value[1], 0xffffffffULL - PYREPL_PID_MAX - 1);
        return NGX_CONF_ERROR;
    }

    pmcf->sandbox.uid_base = n;

    return NGX_CONF_OK;
}


/* pyrepl_memory_limit, pyrepl_file_size_limit: SIZE | off */
char *
ngx_http_pyrepl_limit_size(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    off_t      *field, n;
    ngx_str_t  *value;

    field = (off_t *) (p + cmd->offset);

    if (*field != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *field = 0;
        return NGX_CONF_OK;
    }

    n = ngx_parse_offset(&value[1]);
    if (n <= 0) {
        return "invalid value: a size such as 512m, or \"off\"";
    }

    *field = n;

    return NGX_CONF_OK;
}


/* pyrepl_cpu_limit TIME | off */
char *
ngx_http_pyrepl_limit_time(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    time_t     *field, n;
    ngx_str_t  *value;

    field = (time_t *) (p + cmd->offset);

    if (*field != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *field = 0;
        return NGX_CONF_OK;
    }

    n = ngx_parse_time(&value[1], 1);
    if (n == (time_t) NGX_ERROR || n < 1) {
        return "invalid value: a time of 1s or more, or \"off\"";
    }

    *field = n;

    return NGX_CONF_OK;
}


/*
 * Defaults and checks at the end of the http block: user and group are
 * resolved here, when nginx parses its configuration, like nginx's own
 * "user" directive.
 */
char *
ngx_http_pyrepl_sandbox_init(ngx_conf_t *cf,
    ngx_http_pyrepl_sandbox_conf_t *sb)
{
    u_char         *name;
    struct group   *gr;
    struct passwd  *pw;

    ngx_conf_init_value(sb->uid_base, PYREPL_UID_BASE);
    ngx_conf_init_value(sb->memory, (off_t) 1024 * 1024 * 1024);
    ngx_conf_init_value(sb->cpu, 0);
    ngx_conf_init_uint_value(sb->max_processes, 64);
    ngx_conf_init_value(sb->file_size, (off_t) 1024 * 1024 * 1024);
    ngx_conf_init_uint_value(sb->open_files, 1024);
    ngx_conf_init_uint_value(sb->seccomp, 1);
    ngx_conf_init_value(sb->network, 0);
    ngx_conf_init_value(sb->jail, geteuid() == 0);
    ngx_conf_init_size_value(sb->tmp_size, 64 * 1024 * 1024);
    ngx_conf_init_uint_value(sb->cpu_weight, 100);

    if (sb->tmp_size < 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_tmp_size must be at least 1m");
        return NGX_CONF_ERROR;
    }

    if (sb->cpu_weight < 1 || sb->cpu_weight > 10000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_cpu_weight must be between 1 and 10000 "
                           "(100: as much as any other session)");
        return NGX_CONF_ERROR;
    }

    if (sb->memory != 0 && sb->memory < PYREPL_MIN_MEMORY) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_memory_limit must be at least 128m (a "
                           "session's interpreter maps about 40m before any "
                           "user code) or \"off\"");
        return NGX_CONF_ERROR;
    }

    if (sb->max_processes < 4 || sb->max_processes > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_max_processes must be between 4 (a "
                           "session's own threads and its shell) and "
                           "1000000");
        return NGX_CONF_ERROR;
    }

    if (sb->open_files < 32 || sb->open_files > 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_open_files must be between 32 and "
                           "1048576");
        return NGX_CONF_ERROR;
    }

    if (sb->user.data == NULL) {
        ngx_str_set(&sb->user, "nobody");
    }

    name = ngx_pnalloc(cf->pool, ngx_max(sb->user.len, sb->group.len) + 1);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(name, sb->user.data, sb->user.len + 1);

    pw = getpwnam((char *) name);
    if (pw == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_user: no user \"%V\"", &sb->user);
        return NGX_CONF_ERROR;
    }

    sb->uid = pw->pw_uid;
    sb->gid = pw->pw_gid;

    if (sb->group.data != NULL) {
        ngx_cpystrn(name, sb->group.data, sb->group.len + 1);

        gr = getgrnam((char *) name);
        if (gr == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pyrepl_user: no group \"%V\"", &sb->group);
            return NGX_CONF_ERROR;
        }

        sb->gid = gr->gr_gid;
    }

    if (sb->gid == 0 || (sb->uid == 0 && sb->uid_base == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pyrepl_user \"%V\": sessions never run as root "
                           "or with group root", &sb->user);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * With the whole configuration read (nginx's "user" is known): the
 * sessions' identity must not be the workers'.  Also in "nginx -t".
 */
ngx_int_t
ngx_http_pyrepl_sandbox_check(ngx_cycle_t *cycle,
    ngx_http_pyrepl_main_conf_t *pmcf)
{
    ngx_core_conf_t                 *ccf;
    ngx_http_pyrepl_sandbox_conf_t  *sb;

    sb = &pmcf->sandbox;

    if (geteuid() != 0) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "pyrepl: nginx does not run as root, so sessions run "
                      "as its own user: they are confined by rlimits and "
                      "seccomp, but not from each other or from nginx");
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (sb->uid_base == 0 && sb->uid == ccf->user) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pyrepl_user \"%V\" is the user nginx's workers run "
                      "as: sessions could signal them and use their "
                      "sockets; give sessions a user of their own, or "
                      "\"pyrepl_session_uids\" a range", &sb->user);
        return NGX_ERROR;
    }

    if (sb->uid_base != 0
        && ccf->user >= (ngx_uid_t) sb->uid_base
        && ccf->user < (ngx_uid_t) sb->uid_base + PYREPL_PID_MAX)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pyrepl_session_uids %i: the range up to %i holds "
                      "the uid nginx's workers run as", sb->uid_base,
                      sb->uid_base + PYREPL_PID_MAX - 1);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The supervisor's confinement options (worker/sandbox/sb_confine.h), stored
 * from argv[0] on into bufs (NGX_HTTP_PYREPL_SANDBOX_ARGS / 2 entries);
 * returns how many.  Identities only when running as root.
 */
ngx_uint_t
ngx_http_pyrepl_sandbox_argv(ngx_http_pyrepl_main_conf_t *pmcf, char **argv,
    u_char (*bufs)[NGX_INT64_LEN + 1])
{
    ngx_str_t                       *b;
    ngx_uint_t                       i, k, n, nproc;
    ngx_http_pyrepl_sandbox_conf_t  *sb;

    static char  *modes[] = { "off", "on", "log" };

    sb = &pmcf->sandbox;
    i = 0;
    k = 0;

#define PYREPL_ARG(name, fmt, v)                                             \
    argv[i++] = name;                                                        \
    ngx_sprintf(bufs[k], fmt "%Z", v);                                       \
    argv[i++] = (char *) bufs[k++]

    /* a uid shared by all sessions counts all their processes */
    nproc = sb->max_processes;

    if (geteuid() == 0) {
        if (sb->uid_base != 0) {
            PYREPL_ARG("--uid-base", "%i", sb->uid_base);

        } else {
            PYREPL_ARG("--uid", "%ui", (ngx_uint_t) sb->uid);
            PYREPL_ARG("--gid", "%ui", (ngx_uint_t) sb->gid);
            nproc *= pmcf->max_sessions;
        }
    }

    PYREPL_ARG("--memory", "%O", sb->memory);
    PYREPL_ARG("--cpu", "%T", sb->cpu);
    PYREPL_ARG("--nproc", "%ui", nproc);
    PYREPL_ARG("--nofile", "%ui", sb->open_files);
    PYREPL_ARG("--fsize", "%O", sb->file_size);

    argv[i++] = "--seccomp";
    argv[i++] = modes[sb->seccomp];
    argv[i++] = "--network";
    argv[i++] = sb->network ? "on" : "off";

    if (sb->jail && geteuid() == 0) {
        argv[i++] = "--jail";
        argv[i++] = "on";

        PYREPL_ARG("--tmp-size", "%uz", sb->tmp_size);
        PYREPL_ARG("--cpu-weight", "%ui", sb->cpu_weight);

        b = sb->binds ? sb->binds->elts : NULL;

        for (n = 0; sb->binds && n < sb->binds->nelts; n++) {
            argv[i++] = "--bind";
            argv[i++] = (char *) b[n].data;
        }
    }

#undef PYREPL_ARG

    return i;
}
