/*
 * py_outcome.c: the outcome of a run (py_outcome_t), copied on the main
 * thread out of Python objects, run_cell()'s answer or an exception that
 * escaped, into plain malloc'd UTF-8 that the I/O thread, which never
 * takes the GIL, turns into frames (py_outcome_send) and frees.  Every
 * text is capped so that the frames it goes into stay under the frame
 * limit.
 */

#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "py_exec.h"
#include "wk_log.h"


#define PY_OUTCOME_ENAME_MAX     1024
#define PY_OUTCOME_TB_ENTRY_MAX  ((size_t) 16 * 1024) /* a traceback entry */
#define PY_OUTCOME_TB_OMITTED    "    ... (traceback entries omitted)\n"
#define PY_OUTCOME_NAMES_MAX     10000     /* names in a change report */
#define PY_OUTCOME_NAME_MAX      1024      /* bytes of one name */


static int py_outcome_traceback(PyObject *list, size_t budget,
    pr_strs_t *tb);
static int py_outcome_names(PyObject *list, pr_strs_t *names);
static void py_outcome_strs_free(pr_strs_t *strs);


static const char  *py_outcome_tx_names[] = {
    NULL, "committed", "rolled_back", "pending"
};


int
py_outcome_copy(py_session_t *s, PyObject *ret, py_outcome_t *o)
{
    PyObject  *status, *result, *bundle, *ename, *evalue, *tb, *changes;

    if (!PyTuple_Check(ret) || PyTuple_GET_SIZE(ret) != 7
        || !PyTuple_Check(PyTuple_GET_ITEM(ret, 6))
        || PyTuple_GET_SIZE(PyTuple_GET_ITEM(ret, 6)) != 3)
    {
        PyErr_SetString(PyExc_SystemError,
                        "pyrepl runtime: run_cell() returned a bad value");
        return -1;
    }

    status = PyTuple_GET_ITEM(ret, 0);
    result = PyTuple_GET_ITEM(ret, 1);
    bundle = PyTuple_GET_ITEM(ret, 2);
    ename = PyTuple_GET_ITEM(ret, 3);
    evalue = PyTuple_GET_ITEM(ret, 4);
    tb = PyTuple_GET_ITEM(ret, 5);
    changes = PyTuple_GET_ITEM(ret, 6);

    if (py_outcome_names(PyTuple_GET_ITEM(changes, 0), &o->added) != 0
        || py_outcome_names(PyTuple_GET_ITEM(changes, 1), &o->modified) != 0
        || py_outcome_names(PyTuple_GET_ITEM(changes, 2), &o->removed) != 0)
    {
        return -1;
    }

    if (PyUnicode_Check(status)
        && PyUnicode_CompareWithASCIIString(status, "ok") == 0)
    {
        o->status = WK_IO_RUN_OK;

    } else if (PyUnicode_Check(status)
               && PyUnicode_CompareWithASCIIString(status, "interrupted")
                  == 0)
    {
        o->status = WK_IO_RUN_INTERRUPTED;

    } else {
        o->status = WK_IO_RUN_ERROR;
    }

    if (result != Py_None
        && py_outcome_text(result, s->max_frame - 1024, &o->result) != 0)
    {
        return -1;
    }

    /* JSON in ASCII; one that does not fit the frame whole is left out */
    if (bundle != Py_None && PyUnicode_Check(bundle)
        && PyUnicode_IS_ASCII(bundle)
        && (size_t) PyUnicode_GET_LENGTH(bundle) + o->result.len + 1024
           < s->max_frame
        && py_outcome_text(bundle, s->max_frame, &o->bundle) != 0)
    {
        return -1;
    }

    if (ename == Py_None) {
        return 0;
    }

    if (py_outcome_text(ename, PY_OUTCOME_ENAME_MAX, &o->ename) != 0
        || py_outcome_text(evalue, s->max_frame / 4, &o->evalue) != 0)
    {
        return -1;
    }

    if (tb != Py_None && PyList_Check(tb)) {
        return py_outcome_traceback(tb, s->max_frame / 2, &o->traceback);
    }

    return 0;
}


void
py_outcome_escaped(py_session_t *s, py_outcome_t *o)
{
    int64_t      count;
    size_t       n;
    char        *line;
    PyObject    *exc, *name;
    const char  *fallback;

    count = o->count;
    py_outcome_free(o);
    o->count = count;

    exc = py_outcome_fetch();

    o->status = (exc != NULL
                 && PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt))
                ? WK_IO_RUN_INTERRUPTED : WK_IO_RUN_ERROR;

    fallback = (o->status == WK_IO_RUN_INTERRUPTED) ? "KeyboardInterrupt"
                                                 : "SystemError";

    if (exc != NULL) {
        name = PyType_GetName(Py_TYPE(exc));

        if (name == NULL
            || py_outcome_text(name, PY_OUTCOME_ENAME_MAX, &o->ename) != 0)
        {
            PyErr_Clear();
        }

        Py_XDECREF(name);

        if (py_outcome_text(exc, s->max_frame / 4, &o->evalue) != 0) {
            PyErr_Clear();
        }

        Py_DECREF(exc);
    }

    if (o->ename.data == NULL) {
        o->ename.data = strdup(fallback);
        o->ename.len = (o->ename.data != NULL) ? strlen(fallback) : 0;
    }

    if (o->evalue.data == NULL) {
        o->evalue.data = strdup("");
        o->evalue.len = 0;
    }

    if (o->ename.data == NULL || o->evalue.data == NULL) {
        wk_log("session %s: out of memory describing an error", s->id);
        py_outcome_free(o);
        o->status = WK_IO_RUN_ERROR;
        o->count = count;
        return;
    }

    /* "Name: value\n" (or "Name\n"), as the interpreter's last line */
    n = o->ename.len + (o->evalue.len ? 2 + o->evalue.len : 0) + 1;

    o->traceback.items = malloc(sizeof(pr_str_t));
    line = malloc(n + 1);

    if (o->traceback.items == NULL || line == NULL) {
        free(o->traceback.items);
        free(line);
        o->traceback.items = NULL;
        return;
    }

    (void) snprintf(line, n + 1, "%s%s%s\n", o->ename.data,
                    o->evalue.len ? ": " : "", o->evalue.data);

    o->traceback.items[0].data = line;
    o->traceback.items[0].len = n;
    o->traceback.n = 1;
}


int
py_outcome_text(PyObject *obj, size_t limit, pr_str_t *t)
{
    int          cut;
    char        *data;
    PyObject    *str, *bytes;
    Py_ssize_t   size;
    const char  *p;
    size_t       n;

    bytes = NULL;

    str = PyObject_Str(obj);
    if (str == NULL) {
        return -1;
    }

    bytes = PyUnicode_AsEncodedString(str, "utf-8", "backslashreplace");
    Py_DECREF(str);

    if (bytes == NULL) {
        return -1;
    }

    p = PyBytes_AS_STRING(bytes);
    size = PyBytes_GET_SIZE(bytes);
    n = (size_t) size;
    cut = 0;

    if (limit < 4) {
        limit = 4;
    }

    if (n > limit) {
        n = pr_utf8_boundary((const uint8_t *) p, limit - 3);
        cut = 1;
    }

    data = malloc(n + 4);
    if (data == NULL) {
        Py_DECREF(bytes);
        PyErr_NoMemory();
        return -1;
    }

    memcpy(data, p, n);

    if (cut) {
        memcpy(data + n, "...", 3);
        n += 3;
    }

    data[n] = '\0';

    Py_DECREF(bytes);

    t->data = data;
    t->len = n;

    return 0;
}


/*
 * Copy a list of traceback strings into tb, each entry at most
 * PY_OUTCOME_TB_ENTRY_MAX bytes.  If the whole is over budget, the middle
 * entries give way to one "omitted" line; the first entries (where the
 * user's cell is) and the last one (the exception) stay.  Returns 0, or
 * -1 with a Python exception set (tb empty).
 */
static int
py_outcome_traceback(PyObject *list, size_t budget, pr_strs_t *tb)
{
    size_t       i, k, n, total, marker;
    pr_str_t    *items;

    n = (size_t) PyList_GET_SIZE(list);
    if (n == 0) {
        return 0;
    }

    items = calloc(n + 1, sizeof(pr_str_t));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }

    total = 0;

    for (i = 0; i < n; i++) {
        if (py_outcome_text(PyList_GET_ITEM(list, i),
                            PY_OUTCOME_TB_ENTRY_MAX, &items[i])
            != 0)
        {
            goto fail;
        }

        total += items[i].len;
    }

    if (total > budget && n > 2) {
        marker = sizeof(PY_OUTCOME_TB_OMITTED) - 1;
        total = items[n - 1].len + marker;

        for (k = 0; k < n - 1 && total + items[k].len <= budget; k++) {
            total += items[k].len;
        }

        /* items[k .. n-2] go, items[k] becomes the marker */
        for (i = k; i < n - 1; i++) {
            free((char *) items[i].data);
        }

        items[k].data = strdup(PY_OUTCOME_TB_OMITTED);
        items[k].len = marker;
        items[k + 1] = items[n - 1];
        n = k + 2;

        if (items[k].data == NULL) {
            items[k].len = 0;
            free((char *) items[k + 1].data);
            n = k;
            PyErr_NoMemory();
            goto fail;
        }
    }

    tb->items = items;
    tb->n = (uint32_t) n;

    return 0;

fail:

    for (k = 0; k < n; k++) {
        free((char *) items[k].data);
    }

    free(items);

    return -1;
}


void
py_outcome_free(py_outcome_t *o)
{
    uint32_t  i;

    free((char *) o->result.data);
    free((char *) o->bundle.data);
    free((char *) o->ename.data);
    free((char *) o->evalue.data);

    for (i = 0; i < o->traceback.n; i++) {
        free((char *) o->traceback.items[i].data);
    }

    free(o->traceback.items);

    py_outcome_strs_free(&o->added);
    py_outcome_strs_free(&o->modified);
    py_outcome_strs_free(&o->removed);

    memset(o, 0, sizeof(py_outcome_t));
}


/*
 * A list of names into names (malloc'd), at most PY_OUTCOME_NAMES_MAX of
 * them: a run that binds more reports the first ones.  Returns 0, or -1
 * with a Python exception set.
 */
static int
py_outcome_names(PyObject *list, pr_strs_t *names)
{
    size_t  i, n;

    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_SystemError,
                        "pyrepl runtime: names are not a list");
        return -1;
    }

    n = (size_t) PyList_GET_SIZE(list);
    if (n > PY_OUTCOME_NAMES_MAX) {
        n = PY_OUTCOME_NAMES_MAX;
    }

    if (n == 0) {
        return 0;
    }

    names->items = calloc(n, sizeof(pr_str_t));
    if (names->items == NULL) {
        PyErr_NoMemory();
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (py_outcome_text(PyList_GET_ITEM(list, i), PY_OUTCOME_NAME_MAX,
                            &names->items[i])
            != 0)
        {
            names->n = (uint32_t) i;
            py_outcome_strs_free(names);
            return -1;
        }
    }

    names->n = (uint32_t) n;

    return 0;
}


static void
py_outcome_strs_free(pr_strs_t *strs)
{
    uint32_t  i;

    for (i = 0; i < strs->n; i++) {
        free((char *) strs->items[i].data);
    }

    free(strs->items);

    strs->items = NULL;
    strs->n = 0;
}


PyObject *
py_outcome_fetch(void)
{
#if PY_VERSION_HEX >= 0x030c0000
    return PyErr_GetRaisedException();
#else
    PyObject  *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);

    if (type == NULL) {
        return NULL;
    }

    PyErr_NormalizeException(&type, &value, &tb);

    if (value != NULL && tb != NULL) {
        (void) PyException_SetTraceback(value, tb);
    }

    Py_XDECREF(type);
    Py_XDECREF(tb);

    return value;
#endif
}


void
py_outcome_send(wk_io_t *io, const py_outcome_t *o)
{
    int         i;
    pr_frame_t  f;

    i = io->run_conn;

    if (o->op == PY_OP_COMMIT || o->op == PY_OP_ROLLBACK) {
        memset(&f, 0, sizeof(pr_frame_t));

        if (o->errcode != NULL) {
            wk_io_fail(io, i, o->errcode,
                       "no run waits for a commit or a rollback");

        } else {
            f.type = PR_T_OK;
            pr_set_cstr(&f, tx, py_outcome_tx_names[o->tx]);

            if (o->new_pid > 0) {
                pr_set_int(&f, pid, o->new_pid);
            }

            wk_io_send(io, i, &f);
        }

        wk_io_flush(io, i);

        return;
    }

    if (o->op == PY_OP_PLACE) {
        /* settle(): "" when the cwd and env were taken, else why not */
        if (o->status == WK_IO_RUN_OK && o->result.data != NULL
            && o->result.len == 0)
        {
            memset(&f, 0, sizeof(pr_frame_t));
            f.type = PR_T_OK;
            wk_io_send(io, i, &f);

        } else if (o->status == WK_IO_RUN_OK && o->result.data != NULL) {
            memset(&f, 0, sizeof(pr_frame_t));
            f.type = PR_T_FAIL;
            pr_set_cstr(&f, errcode, "bad_request");
            pr_set_str(&f, message, o->result.data, o->result.len);
            wk_io_send(io, i, &f);

        } else {
            wk_io_fail(io, i, "unavailable",
                       "the cwd and env could not be set (out of memory)");
        }

        wk_io_flush(io, i);

        return;
    }

    if (o->op == PY_OP_NAMESPACE || o->op == PY_OP_CHECKPOINT
        || o->op == PY_OP_RESTORE || o->op == PY_OP_INTROSPECT)
    {
        memset(&f, 0, sizeof(pr_frame_t));

        if (o->status == WK_IO_RUN_OK && o->result.data != NULL) {
            f.type = PR_T_OK;
            pr_set_str(&f, text, o->result.data, o->result.len);
            wk_io_send(io, i, &f);

        } else {
            wk_io_fail(io, i, "unavailable",
                       "the namespace cannot be read or written "
                       "(interrupted, or out of memory)");
        }

        wk_io_flush(io, i);

        return;
    }

    if (o->result.data != NULL) {
        memset(&f, 0, sizeof(pr_frame_t));
        f.type = PR_T_RESULT;
        pr_set_str(&f, text, o->result.data, o->result.len);
        pr_set_int(&f, count, o->count);

        if (o->bundle.data != NULL) {
            pr_set_str(&f, bundle, o->bundle.data, o->bundle.len);
        }

        wk_io_send(io, i, &f);
        wk_io_send_watchers(io, &f);
    }

    if (o->ename.data != NULL) {
        memset(&f, 0, sizeof(pr_frame_t));
        f.type = PR_T_ERROR;
        pr_set_str(&f, ename, o->ename.data, o->ename.len);
        pr_set_str(&f, evalue, o->evalue.data, o->evalue.len);
        f.traceback = o->traceback;
        f.has |= 1u << PR_F_traceback;
        wk_io_send(io, i, &f);
        wk_io_send_watchers(io, &f);
    }

    memset(&f, 0, sizeof(pr_frame_t));
    f.type = PR_T_COMPLETE;
    pr_set_cstr(&f, status, wk_io_status(io, o->status));
    pr_set_int(&f, count, o->count);
    pr_set_int(&f, ms, o->ms);
    f.added = o->added;
    f.modified = o->modified;
    f.removed = o->removed;
    f.has |= (1u << PR_F_added) | (1u << PR_F_modified)
             | (1u << PR_F_removed);

    if (o->tx != PY_TX_NONE) {
        pr_set_cstr(&f, tx, py_outcome_tx_names[o->tx]);
    }

    if (o->new_pid > 0) {
        pr_set_int(&f, pid, o->new_pid);
    }

    wk_io_send(io, i, &f);
    wk_io_send_watchers(io, &f);

    wk_io_flush(io, i);
}
