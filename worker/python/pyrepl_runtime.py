"""pyrepl_runtime: the Python half of a PyREPL session process.

The session process (py_session.c) embeds this file as a C string,
executes it once at start-up into a private module and calls run_cell()
for every run.  It owns REPL semantics (the value of a final expression),
the linecache entries that let tracebacks and inspect show cell source, and
traceback formatting.  It does no I/O: output goes to fds 1 and 2, which
the C side forwards (sys.stdout and sys.stderr keeping their order,
_Ordered), and the outcome is returned as plain strings.

The C side compiles this module under the file name in _FILE; frames with
that file name are the runtime's own and are never shown to the user.  It
also hands over _exit_draining, which takes the place of os._exit and
posix._exit: the same function, except that in the session process it has
the output written so far sent before the process ends; and _input_asking
and _getpass_asking, which take the place of input and getpass.getpass:
in a run the client can answer (an SSE or WebSocket run, not a JSON one)
they send the prompt to the client and return its answer instead of
printing the prompt and reading stdin (elsewhere input() reads stdin as
usual and getpass() raises EOFError rather than open /dev/tty).
sys.stdin stays /dev/null, so sys.stdin.readline() and friends see EOF in
every run.
"""

import ast
import builtins
import collections
import fcntl
import functools
import getpass
import inspect
import io
import json
import linecache
import os
import pickle
import posix
import site
import sys
import termios
import time
import traceback
import types
import weakref

_FILE = "<pyrepl_runtime>"
_FENCE_MAX = 1.0                 # seconds a write waits for the other pipe
_CELL = "<cell "                 # cell file names: "<cell N>"
_SEEN_MAX = 10000                # elements a change fingerprint looks at
_SIZE_MAX = 10000                # objects size_bytes visits per variable

# The source of cells stays in linecache for tracebacks and inspect: every
# cell that defined a function or class still bound in the namespace (or
# a class's method), and the latest _KEEP_CELLS others, of at most
# _KEEP_BYTES together.  Past _KEEP_CELLS + _TRIM_SLACK the oldest others
# go; so a session that runs forever keeps a bounded amount of source.
_KEEP_CELLS = 200
_KEEP_BYTES = 4 * 1024 * 1024
_TRIM_SLACK = 50


def _public(name):
    return not name.startswith("__")


def _fingerprint(value):
    """What a cheap look at value's contents gives, or None.

    Lists, dicts, sets and bytearrays of up to _SEEN_MAX elements: their
    length and the identities of their elements (a bytearray: its bytes);
    bigger ones: their length.  Other objects: nothing (only rebinding a
    name to another object shows).
    """
    t = type(value)
    if t not in (list, dict, set, bytearray):
        return None
    if len(value) > _SEEN_MAX:
        return (len(value),)
    if t is dict:
        return (len(value), tuple(map(id, value)),
                tuple(map(id, value.values())))
    if t is bytearray:
        return (len(value), bytes(value))
    if t is set:
        return (len(value), frozenset(map(id, value)))
    return (len(value), tuple(map(id, value)))


def _snapshot(ns):
    """Name -> (identity, fingerprint) of ns's public names.

    Identities only, no references: a snapshot must not keep alive what
    the run deletes.  (An object freed during the run whose address a new
    object bound to the same name reuses reads as unchanged.)
    """
    return {k: (id(v), _fingerprint(v)) for k, v in ns.items() if _public(k)}


def _changes(before, ns):
    """(added, modified, removed) names between snapshot before and ns."""
    after = _snapshot(ns)
    added = sorted(k for k in after if k not in before)
    removed = sorted(k for k in before if k not in after)
    modified = sorted(k for k, v in after.items()
                      if k in before and before[k] != v)
    return added, modified, removed


_cells = collections.OrderedDict()   # cell file name -> size, oldest first
_cell_bytes = [0]


def _register(source, filename):
    """Make the cell's lines visible to linecache, traceback and inspect."""
    lines = source.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    # mtime None: linecache.checkcache() never evicts the entry
    linecache.cache[filename] = (len(source), None, lines, filename)
    _cell_bytes[0] += len(source) - _cells.pop(filename, 0)
    _cells[filename] = len(source)


def _defined_in(ns):
    """The cells that define what ns binds: functions, classes, methods."""
    found = set(_class_files.values())
    for value in list(ns.values()):
        code = getattr(value, "__code__", None)
        if isinstance(code, types.CodeType):
            found.add(code.co_filename)
        elif isinstance(value, type) and value.__module__ == "__main__":
            for attr in list(vars(value).values()):
                code = getattr(attr, "__code__", None)
                if isinstance(code, types.CodeType):
                    found.add(code.co_filename)
    return found


def _trim(ns):
    """Forget the source of old cells nothing needs (see _KEEP_CELLS)."""
    if (len(_cells) <= _KEEP_CELLS + _TRIM_SLACK
            and _cell_bytes[0] <= _KEEP_BYTES):
        return
    pinned = _defined_in(ns)
    others = [f for f in list(_cells)[:-1] if f not in pinned]   # not the
    over = max(len(others) + 1 - _KEEP_CELLS, 0)                 # newest
    for filename in others:
        if over <= 0 and _cell_bytes[0] <= _KEEP_BYTES:
            break
        _cell_bytes[0] -= _cells.pop(filename)
        linecache.cache.pop(filename, None)
        over -= 1


def _user_tb(tb):
    """Drop the runtime's own leading frames from a traceback."""
    while tb is not None and tb.tb_frame.f_code.co_filename == _FILE:
        tb = tb.tb_next
    return tb


def _failure(exc, tb):
    """Describe an exception that escaped a cell.

    Returns (status, None, ename, evalue, traceback lines); "".join() of
    the lines is what the interpreter would print for it.
    """
    exc = exc.with_traceback(tb)
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb

    try:
        evalue = str(exc)
    except BaseException:
        evalue = "<exception str() failed>"

    te = traceback.TracebackException(type(exc), exc, tb, compact=True)
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"

    return (status, None, None, type(exc).__name__, evalue,
            list(te.format()))


class _Ordered(io.RawIOBase):
    """fd 1 or 2 for sys.stdout and sys.stderr.  The two are pipes that the
    I/O thread reads apart, so what one stream wrote right after the other
    could reach the client first; a write here first waits until the I/O
    thread has read everything in the other pipe (at most _FENCE_MAX, for a
    client that takes nothing), so writes through sys.stdout and sys.stderr
    arrive in the order the code made them.  What C code or child
    processes write to fds 1 and 2 directly can still interleave."""

    def __init__(self, fd, other):
        super().__init__()
        self._fd = fd
        self._other = other
        self._unread = bytearray(4)

    def writable(self):
        return True

    def fileno(self):
        return self._fd

    def write(self, b):
        deadline = None
        while True:
            fcntl.ioctl(self._other, termios.FIONREAD, self._unread)
            if not any(self._unread):
                break
            now = time.monotonic()
            deadline = deadline or now + _FENCE_MAX
            if now > deadline:
                break
            time.sleep(0.0001)
        return os.write(self._fd, b)


def _ordered_stdio():
    for name, fd, other in (("stdout", 1, 2), ("stderr", 2, 1)):
        old = getattr(sys, name)
        new = io.TextIOWrapper(_Ordered(fd, other), encoding=old.encoding,
                               errors=old.errors, write_through=True)
        new.mode = "w"
        setattr(sys, name, new)


def start():
    """Called once, before a session serves its first request.

    HOME is the session's working directory unless the operator's
    pyrepl_env set one, and what site derived from HOME in the zygote
    (the user site directory) is derived again, as a python3 started
    there would have it.  (A pooled session learns its working directory's
    name when it is handed out: hence not in warm().)
    """
    os.environ.setdefault("HOME", os.getcwd())
    site.USER_BASE = site.USER_SITE = None
    user_site = site.getusersitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(user_site):
        site.addsitedir(user_site)


def warm():
    """Make ready for the warm-up cell.

    Called once before a session serves anyone (a pooled session does it
    while it waits in the pool): sys.stdout and sys.stderr keep their
    order (_Ordered) from now on, then the C side runs a cell that binds
    nothing in __main__, through the calls a run makes, and forget()s it.
    What every run touches is touched then, so the pages it shares with
    the zygote are its own already and the client's first run copies none
    of them (a pooled session's first 1+1 took ten times its second doing
    so).
    """
    _ordered_stdio()
    home = os.environ.get("HOME")       # start() is done again once the
    start()                             # session knows its directory
    if home is None:
        del os.environ["HOME"]
    site.USER_BASE = site.USER_SITE = None


def forget(filename):
    """Leave no trace of the cell run as filename (see warm())."""
    linecache.cache.pop(filename, None)
    _cell_bytes[0] -= _cells.pop(filename, 0)


class _Place:
    """A run's own working directory and environment variables: entered
    before the run, and the session's own back after it, however it ended.
    cwd is relative to the session's working directory (or absolute)."""

    def __init__(self, cwd, env):
        self._cwd = cwd
        self._env = env or {}
        self._back = None
        self._saved = {}

    def __enter__(self):
        if self._cwd is not None:
            self._back = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.chdir(self._cwd)
            except BaseException:
                os.close(self._back)
                raise
        for name, value in self._env.items():
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        return self

    def __exit__(self, *exc):
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self._back is not None:
            os.fchdir(self._back)
            os.close(self._back)
        return False


def settle(cwd=None, env=None):
    """A create's cwd (made if missing; relative to the session's working
    directory, or absolute) and env: the session's own from now on.
    Returns "", or what went wrong."""
    try:
        if cwd is not None:
            os.makedirs(cwd, exist_ok=True)
            os.chdir(cwd)
    except OSError as exc:
        return f"cwd {cwd[:200]!r}: {exc.strerror}"
    except Exception as exc:                   # too deep for makedirs...
        return f"cwd {cwd[:200]!r}: {type(exc).__name__}"
    os.environ.update(env or {})
    return ""


def run_cell(source, filename, ns, cwd=None, env=None):
    """Run source in the namespace ns the way an interactive prompt would,
    in cwd and with env added (for this run only) when given.

    The statements run in order; if the last one is an expression its value
    is the cell's result.  Returns a 7-tuple (status, result, bundle,
    ename, evalue, traceback, changes): status is "ok", "error" or
    "interrupted" (KeyboardInterrupt escaped); result is the text/plain of
    a final value that is not None (its repr()), else None; bundle is the
    JSON of its whole MIME bundle ({"data", "metadata"}) when it has more
    than text/plain, else None; ename, evalue and traceback are None
    unless an exception escaped; changes is (added, modified, removed),
    lists of the public names the run bound, rebound or changed
    (_fingerprint) and deleted, also when it failed half way.  Figures the
    run left open are shown (display data) before it returns.
    """
    before = _snapshot(ns)
    _running[0] = filename
    _hook_loaded()
    try:
        with _Place(cwd, env):
            outcome = _run(source, filename, ns)
            _show_figures()
    except OSError as exc:
        outcome = _failure(exc, None)          # a cwd that is not there
    except BaseException as exc:               # interrupted while showing
        outcome = _failure(exc, None)
    finally:
        _running[0] = None
    changes = _changes(before, ns)
    for name in changes[0] + changes[1]:
        _track_class(ns[name], filename)
    _trim(ns)
    return outcome + (changes,)


# Classes keep no file name of their own: inspect.getfile() looks for their
# module's __file__, which __main__ has not.  The cell that bound a class
# is recorded here, and inspect.getfile() answers with it, so that
# inspect.getsource() finds the class in that cell's lines (linecache).
# A class of __main__ not recorded yet is looked for in the running cell.
_class_files = weakref.WeakKeyDictionary()
_real_getfile = inspect.getfile
_running = [None]


def _track_class(value, filename):
    if (filename is not None and isinstance(value, type)
            and value.__module__ == "__main__"
            and value not in _class_files):
        try:
            _class_files[value] = filename
        except TypeError:
            pass


@functools.wraps(_real_getfile)
def _getfile(obj):
    if isinstance(obj, type):
        filename = _class_files.get(obj)
        if filename is None and getattr(obj, "__module__", None) == "__main__":
            filename = _running[0]
        if filename is not None:
            return filename
    return _real_getfile(obj)


def _run(source, filename, ns):
    _register(source, filename)

    try:
        tree = ast.parse(source, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = None                    # a lone expression: nothing to exec
        if tree.body:
            body = compile(tree, filename, "exec", dont_inherit=True)
        if last is not None:
            last = compile(last, filename, "eval", dont_inherit=True)
    except BaseException as exc:
        # SyntaxError and friends: the frames are all ours, the message
        # carries the user's line and caret.
        return _failure(exc, None)

    try:
        if body is not None:
            exec(body, ns)
        if last is not None:
            value = eval(last, ns)
            if value is not None:
                data, metadata = _bundle(value)
                bundle = None
                if len(data) > 1 or metadata:
                    bundle = _bundle_json(data, metadata)
                return ("ok", data["text/plain"], bundle, None, None, None)
    except BaseException as exc:
        return _failure(exc, _user_tb(exc.__traceback__))

    return ("ok", None, None, None, None, None)


# Rich output.  A value's MIME bundle is what its _repr_mimebundle_() and
# _repr_*_() methods give (IPython's protocol), text/plain always (its
# repr()); a method that raises costs its own MIME type only, as in
# IPython.  Binary data (PNG, JPEG, PDF) travels base64, JSON as JSON.
# display() sends bundles in the middle of a run (_display_sending, from
# the C side: after the output written before it); matplotlib draws with
# Agg and plt.show(), or the end of the run, shows its figures as PNG.

_MIME_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
)
_BINARY = ("image/png", "image/jpeg", "image/gif", "application/pdf")


def _method(value, name):
    """value's bound method name, or None (a class's are not its own)."""
    if isinstance(value, type):
        return None
    try:
        method = getattr(value, name, None)
    except Exception:
        return None
    return method if callable(method) else None


def _mime_value(mime, value):
    """value as JSON carries it for mime, or None when it cannot."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        if mime in _BINARY:
            import base64
            return base64.b64encode(value).decode("ascii")
        return bytes(value).decode("utf-8", "replace")
    if mime == "application/json" or mime.endswith("+json"):
        try:
            json.dumps(value, allow_nan=False)
        except Exception:
            return None
        return value
    return value if isinstance(value, str) else None


# Built-in types, which have no _repr_*_() method and take none: their
# values' bundle is their repr() alone.
_PLAIN = frozenset((int, float, complex, bool, str, bytes, list, tuple,
                    dict, set, frozenset, range))


def _bundle(value, include=None, exclude=None):
    """value's MIME bundle: (data, metadata), data["text/plain"] always."""
    if type(value) in _PLAIN:
        return {"text/plain": repr(value)}, {}
    data, metadata = {}, {}
    method = _method(value, "_repr_mimebundle_")
    if method is not None:
        try:
            got = method(include=include, exclude=exclude)
        except Exception:
            got = None
        if isinstance(got, tuple) and len(got) == 2:
            got, md = got
            if isinstance(md, dict):
                metadata.update(md)
        if isinstance(got, dict):
            data.update(got)
    for mime, name in _MIME_METHODS:
        if mime in data:
            continue
        method = _method(value, name)
        if method is None:
            continue
        try:
            got = method()
        except Exception:
            continue
        if isinstance(got, tuple) and len(got) == 2:
            got, md = got
            if md:
                metadata[mime] = md
        if got is not None:
            data[mime] = got
    out = {}
    for mime, got in data.items():
        if not isinstance(mime, str) or (include and mime not in include) \
                or (exclude and mime in exclude):
            continue
        got = _mime_value(mime, got)
        if got is not None:
            out[mime] = got
    if not isinstance(out.get("text/plain"), str):
        out["text/plain"] = repr(value)
    try:
        json.dumps(metadata, allow_nan=False)
    except Exception:
        metadata = {}
    return out, metadata


def _bundle_json(data, metadata):
    return json.dumps({"data": data, "metadata": metadata},
                      ensure_ascii=True, allow_nan=False,
                      separators=(",", ":"))


def _show(data, metadata):
    """Send a bundle to the run; where none can take it (a forked child),
    print its text/plain instead."""
    if not _display_sending(_bundle_json(data, metadata)):
        print(data.get("text/plain", ""))


def display(*objs, include=None, exclude=None, metadata=None,
            transient=None, display_id=None, raw=False, clear=False,
            **kwargs):
    """Show each object as rich output in the middle of the run (its
    whole MIME bundle: HTML, images, Markdown, ...), as Jupyter's display()
    does.  raw=True takes each object as a bundle already ({mime: data})."""
    for obj in objs:
        if raw:
            data = {k: v for k, v in dict(obj).items()
                    if _mime_value(k, v) is not None}
            data = {k: _mime_value(k, v) for k, v in data.items()}
            data.setdefault("text/plain", "")
            md = {}
        else:
            data, md = _bundle(obj, include, exclude)
        if metadata:
            md.update(metadata)
        _show(data, md)


def _show_figures():
    """matplotlib's open figures, each as display data (PNG), then closed."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None or not pyplot.get_fignums():
        return
    import base64
    for num in pyplot.get_fignums():
        figure = pyplot.figure(num)
        buf = io.BytesIO()
        figure.savefig(buf, format="png", bbox_inches="tight")
        width, height = (figure.get_size_inches() * figure.dpi)
        _show({"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
               "text/plain": repr(figure)},
              {"image/png": {"width": int(width), "height": int(height)}})
    pyplot.close("all")


def _backend_module():
    """The matplotlib backend "module://pyrepl_inline": Agg, whose show()
    shows the figures as display data."""
    from matplotlib.backend_bases import FigureManagerBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    module = types.ModuleType("pyrepl_inline")
    module.FigureCanvas = FigureCanvasAgg
    module.FigureManager = FigureManagerBase
    module.show = lambda *args, **kwargs: _show_figures()
    return module


def _matplotlib_loaded(matplotlib):
    """matplotlib draws with pyrepl_inline, whatever a matplotlibrc says
    (Debian's names TkAgg, which needs a display), unless MPLBACKEND names
    one; code that calls matplotlib.use() afterwards has its way."""
    if "MPLBACKEND" in os.environ:
        return
    if "pyrepl_inline" not in sys.modules:
        sys.modules["pyrepl_inline"] = _backend_module()
    matplotlib.rcParams["backend"] = "module://pyrepl_inline"


def _ipython_display_loaded(module):
    """IPython's display() without an IPython shell prints; ours shows."""
    if hasattr(module, "display"):
        module.display = display


_AFTER_IMPORT = {
    "matplotlib": _matplotlib_loaded,
    "IPython.core.display_functions": _ipython_display_loaded,
}
_hooked = set()


class _HookedLoader:
    """The real loader of a module, and a hook after it has executed."""

    def __init__(self, loader, hook):
        self._loader, self._hook = loader, hook

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _run_hook(module.__name__, module)


class _AfterImportFinder:
    """Finds nothing itself: lets the other finders find the modules of
    _AFTER_IMPORT and hooks their loaders."""

    def find_spec(self, name, path=None, target=None):
        if name not in _AFTER_IMPORT or name in _hooked:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and \
                        hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader,
                                                _AFTER_IMPORT[name])
                return spec
        return None


def _run_hook(name, module):
    if name in _hooked:
        return
    _hooked.add(name)
    try:
        _AFTER_IMPORT[name](module)
    except Exception:
        pass


def _hook_loaded():
    """Hook the modules of _AFTER_IMPORT that were loaded before the hooks
    could see them (the zygote's warm-up code)."""
    if len(_hooked) == len(_AFTER_IMPORT):
        return
    for name in _AFTER_IMPORT:
        module = sys.modules.get(name)
        if module is not None:
            _run_hook(name, module)


sys.meta_path.insert(0, _AfterImportFinder())
builtins.display = display


def _size(value):
    """Bytes value holds: sys.getsizeof() over what it contains, visiting
    at most _SIZE_MAX objects (shared ones once)."""
    seen, stack, total = set(), [value], 0
    while stack and len(seen) < _SIZE_MAX:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        try:
            total += sys.getsizeof(v)
        except Exception:
            continue
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
        elif hasattr(v, "__dict__") and not isinstance(v, (type,
                                                           types.ModuleType)):
            try:
                stack.append(vars(v))
            except TypeError:
                pass
    return total


class _Counter:
    """A file that only counts what is written to it."""

    def __init__(self):
        self.n = 0

    def write(self, b):
        self.n += len(b)
        return len(b)


def _pickler():
    try:
        import dill
        return dill.Pickler
    except ImportError:
        return pickle.Pickler


def _serializable(value, pickler):
    try:
        pickler(_Counter(), protocol=5).dump(value)
        return True
    except Exception:
        return False


def _defined_here(value):
    """A function or class whose source is one of this session's cells."""
    if isinstance(value, types.FunctionType):
        return value.__code__.co_filename.startswith(_CELL)
    if isinstance(value, type):
        return value in _class_files
    return False


# Introspection, for Jupyter's complete, inspect, is_complete and history
# requests: introspect() takes the request as JSON and answers the reply's
# content as JSON.  It reads the namespace.  Completion is jedi's when jedi
# is installed (and finds something), else names in scope, modules after
# import, and attributes of "a.b", which evaluates "a" (names and
# attributes only), as Python's rlcompleter does.

_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "0123456789_.")


def introspect(ns, request):
    try:
        req = json.loads(request)
        op = req.get("op")
        code = req.get("code", "")
        if not isinstance(code, str):
            raise ValueError("code must be a string")
        if op == "complete":
            reply = _complete(ns, code, _cursor(req, code))
        elif op == "inspect":
            reply = _inspect(ns, code, _cursor(req, code),
                             req.get("detail_level", 0))
        elif op == "is_complete":
            reply = _is_complete(code)
        elif op == "history":
            reply = _history(req.get("n"))
        else:
            raise ValueError(f"no such request: {op!r}")
        reply.setdefault("status", "ok")
    except Exception as exc:
        reply = {"status": "error", "ename": type(exc).__name__,
                 "evalue": str(exc), "traceback": []}
    return json.dumps(reply, ensure_ascii=True, default=repr)


def _cursor(req, code):
    pos = req.get("cursor_pos")
    if not isinstance(pos, int) or pos < 0 or pos > len(code):
        return len(code)
    return pos


def _token(code, pos):
    """The dotted name that ends at pos: (its start, the text)."""
    start = pos
    while start > 0 and code[start - 1] in _WORD:
        start -= 1
    return start, code[start:pos]


def _resolve(ns, dotted):
    """The object a dotted name of names and attributes refers to."""
    parts = dotted.split(".")
    if not parts[0].isidentifier():
        raise NameError(dotted)
    if parts[0] in ns:
        obj = ns[parts[0]]
    else:
        obj = getattr(builtins, parts[0])
    for part in parts[1:]:
        obj = getattr(obj, part)
    return obj


def _complete(ns, code, pos):
    found = _complete_jedi(ns, code, pos)
    if found is not None:
        return found
    start, text = _token(code, pos)
    words = code[:start].rsplit("\n", 1)[-1].split()
    if words[:1] == ["import"] or words == ["from"]:
        import pkgutil
        prefix = text.rpartition(".")[2]
        base = text.rpartition(".")[0]
        names = sorted({m.name for m in pkgutil.iter_modules(
            _resolve(ns, base).__path__ if base else None)})
        matches = [(base + "." if base else "") + n for n in names
                   if n.startswith(prefix)]
    elif "." in text:
        head, _, prefix = text.rpartition(".")
        try:
            obj = _resolve(ns, head)
        except Exception:
            obj = None
        matches = [] if obj is None else sorted(
            f"{head}.{n}" for n in dir(obj)
            if n.startswith(prefix) and (prefix.startswith("_")
                                         or not n.startswith("_")))
    else:
        import keyword
        names = set(ns) | set(dir(builtins)) | set(keyword.kwlist)
        matches = sorted(n for n in names if n.startswith(text)
                         and (text.startswith("_") or not n.startswith("_")))
    return {"matches": matches, "cursor_start": start, "cursor_end": pos,
            "metadata": {}}


def _complete_jedi(ns, code, pos):
    """jedi's completions (methods of literals, dict keys, arguments...)
    when jedi is installed and finds some, else None."""
    try:
        import jedi
    except ImportError:
        return None
    try:
        line = code.count("\n", 0, pos) + 1
        column = pos - (code.rfind("\n", 0, pos) + 1)
        found = jedi.Interpreter(code, [ns]).complete(line, column)
    except Exception:
        return None
    if not found:
        return None
    typed = len(found[0].name) - len(found[0].complete)
    return {"matches": [c.name for c in found], "cursor_start": pos - typed,
            "cursor_end": pos, "metadata": {}}


def _inspect(ns, code, pos, detail):
    end = pos
    while end < len(code) and code[end] in _WORD:
        end += 1
    start, text = _token(code, end)
    text = text.strip(".")
    if not text and pos > 0 and code[pos - 1] == "(":
        start, text = _token(code, pos - 1)
    try:
        obj = _resolve(ns, text)
    except Exception:
        return {"found": False, "data": {}, "metadata": {}}
    parts = [f"{text}: {type(obj).__name__}"]
    try:
        parts.append(f"Signature: {text}{inspect.signature(obj)}")
    except (TypeError, ValueError):
        pass
    doc = inspect.getdoc(obj)
    if doc:
        parts.append("Docstring:\n" + doc)
    if detail:
        try:
            parts.append("Source:\n" + inspect.getsource(obj))
        except (OSError, TypeError):
            pass
    return {"found": True, "data": {"text/plain": "\n".join(parts)},
            "metadata": {}}


def _is_complete(code):
    import codeop
    try:
        compiled = codeop.compile_command(code, "<input>", "exec")
    except (SyntaxError, OverflowError, ValueError):
        return {"status": "invalid"}
    if compiled is None:
        last = code.rstrip("\n").rsplit("\n", 1)[-1]
        indent = last[:len(last) - len(last.lstrip())]
        if last.rstrip().endswith(":"):
            indent += "    "
        return {"status": "incomplete", "indent": indent}
    return {"status": "complete"}


def _history(n):
    """The cells this session still keeps, oldest first: (session, line,
    source), as Jupyter's history_reply has them."""
    cells = []
    for filename in _cells:
        lines = linecache.cache.get(filename)
        if lines is None:
            continue
        number = int(filename[len(_CELL):-1])
        cells.append([0, number, "".join(lines[2])])
    if isinstance(n, int) and n > 0:
        cells = cells[-n:]
    return {"history": cells}


def namespace(ns):
    """The session's variables and definitions, as JSON text."""
    variables, definitions = [], []
    pickler = _pickler()
    for name, value in sorted(ns.items()):
        if not _public(name):
            continue
        if _defined_here(value) and value.__name__ == name:
            try:
                source = inspect.getsource(value)
            except (OSError, TypeError):
                source = None
            definitions.append({
                "name": name,
                "kind": "class" if isinstance(value, type) else "function",
                "source": source,
            })
            continue
        variables.append({
            "name": name,
            "type": type(value).__qualname__,
            "size_bytes": _size(value),
            "serializable": _serializable(value, pickler),
        })
    return json.dumps({"variables": variables, "definitions": definitions})


# Checkpoints ----------------------------------------------------------------
#
# A file: _CKPT_MAGIC, a header of _CKPT_HEADER bytes (JSON, space padded:
# version, the payload's size and BLAKE2b-256), then the payload: pickles
# (protocol 5; the C pickler first, and dill's, which saves functions,
# lambdas, closures and classes defined in the session by value, for what
# the C one cannot save or would save as a reference to __main__) of
#   1. the manifest: {"modules": {name: module name}, "sources": {name:
#      source of a definition dill could not save}, "cells": {file name:
#      source}, "count": execution count};
#   2. one (name, value) per saved name.
# Each value is pickled on its own first, so that one that cannot be saved
# is reported by name with the reason instead of failing the checkpoint.

_CKPT_MAGIC = b"PYREPL-CHECKPOINT\n"
_CKPT_HEADER = 256
_CKPT_VERSION = 1


class _HashingFile:
    """Writes through to f, hashing and counting, up to max_size bytes."""

    def __init__(self, f, max_size):
        import hashlib
        self.f, self.max, self.n = f, max_size, 0
        self.h = hashlib.blake2b(digest_size=32)

    def write(self, b):
        self.n += len(b)
        if self.max and self.n > self.max:
            raise _TooLarge(self.n)
        self.h.update(b)
        return self.f.write(b)


class _TooLarge(Exception):
    pass


def _error(code, message):
    return {"error": {"code": code, "message": message}}


def _fail(code, message):
    return json.dumps(_error(code, message))


def checkpoint(ns, path, max_size, count):
    """Save ns's public names to path; the answer as JSON text."""
    pickler = _pickler()
    modules, sources, values, unsaved = {}, {}, [], []
    for name, value in sorted(ns.items()):
        if not _public(name):
            continue
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
            continue
        try:
            values.append(_dumps(name, value, pickler))
            continue
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if _defined_here(value) and value.__name__ == name:
            try:
                sources[name] = inspect.getsource(value)
                continue
            except (OSError, TypeError):
                pass
        unsaved.append({"name": name, "reason": reason[:500]})

    cells = {f: "".join(e[2]) for f, e in linecache.cache.items()
             if f.startswith(_CELL) and e[1] is None}
    manifest = {"modules": modules, "sources": sources, "cells": cells,
                "count": count}
    try:
        # whatever the code left under that name (a FIFO, a link) goes
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_CKPT_MAGIC + b" " * _CKPT_HEADER)
            out = _HashingFile(f, max_size)
            pickle.Pickler(out, protocol=5).dump(manifest)
            for v in values:
                out.write(v)
            header = json.dumps({"version": _CKPT_VERSION, "size": out.n,
                                 "blake2b": out.h.hexdigest()}).encode()
            f.seek(len(_CKPT_MAGIC))
            f.write(header.ljust(_CKPT_HEADER))
    except _TooLarge as exc:
        os.unlink(path)
        return _fail("too_large", f"the checkpoint would exceed "
                     f"{max_size} bytes (pyrepl_checkpoint_max_size)")
    except OSError as exc:
        try:
            os.unlink(path)
        except OSError:
            pass
        return _fail("unavailable", f"cannot write the checkpoint: {exc}")
    return json.dumps({"size_bytes": len(_CKPT_MAGIC) + _CKPT_HEADER + out.n,
                       "saved": len(values) + len(modules) + len(sources),
                       "unsaved": unsaved})


def _dumps(name, value, pickler):
    """(name, value) pickled: by the C pickler when it saves no reference
    to __main__ (a session's own function or class, which another session
    lacks), else by dill's."""
    try:
        data = pickle.dumps((name, value), protocol=5)
        if b"__main__" not in data:
            return data
    except Exception:
        if pickler is pickle.Pickler:
            raise
    buf = _Buffer()
    pickler(buf, protocol=5).dump((name, value))
    return buf.getvalue()


class _Buffer:
    def __init__(self):
        self.parts = []

    def write(self, b):
        self.parts.append(bytes(b))
        return len(b)

    def getvalue(self):
        return b"".join(self.parts)


def restore(ns, path):
    """Load the checkpoint at path into ns.

    Returns (answer as JSON text, the checkpoint's execution count or 0).
    The session's cells go on after that count, so that the restored
    cells' lines (tracebacks, inspect) stay theirs; a cell name the
    session already has keeps its own lines.
    """
    answer = _restore(ns, path)
    return json.dumps(answer), answer.get("execution_count", 0)


def _restore(ns, path):
    import hashlib
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return _error("bad_checkpoint", f"cannot read the checkpoint: {exc}")
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    start = len(_CKPT_MAGIC) + _CKPT_HEADER
    if not data.startswith(_CKPT_MAGIC) or len(data) < start:
        return _error("bad_checkpoint", "not a PyREPL checkpoint")
    try:
        header = json.loads(data[len(_CKPT_MAGIC):start])
        payload = memoryview(data)[start:]
        ok = (header["version"] == _CKPT_VERSION
              and header["size"] == len(payload)
              and hashlib.blake2b(payload, digest_size=32).hexdigest()
              == header["blake2b"])
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        return _error("bad_checkpoint", "the checkpoint is corrupt: its "
                     "checksum or size does not match")

    import io
    stream = io.BytesIO(payload)
    unpickler = _unpickler()
    manifest = pickle.Unpickler(stream).load()
    restored, failed = [], []
    for name, module in manifest["modules"].items():
        try:
            ns[name] = __import__(module, fromlist=["_"])
            restored.append(name)
        except Exception as exc:
            failed.append({"name": name, "reason": f"{type(exc).__name__}: "
                                                    f"{exc}"[:500]})
    for filename, source in manifest["cells"].items():
        if filename not in linecache.cache:
            _register(source, filename)
    for name, source in manifest["sources"].items():
        try:
            exec(compile(source, f"<restored {name}>", "exec"), ns)
            restored.append(name)
        except Exception as exc:
            failed.append({"name": name, "reason": f"{type(exc).__name__}: "
                                                    f"{exc}"[:500]})
    while stream.tell() < len(payload):
        try:
            name, value = unpickler(stream).load()
        except Exception as exc:
            failed.append({"name": "?", "reason": f"{type(exc).__name__}: "
                                                   f"{exc}"[:500]})
            break
        ns[name] = value
        _track_class(value, _class_cell(value))
        restored.append(name)
    return {"restored": sorted(restored), "failed": failed,
            "execution_count": manifest["count"]}


def _unpickler():
    try:
        import dill
        return dill.Unpickler
    except ImportError:
        return pickle.Unpickler


def _class_cell(value):
    """The cell a restored class's methods came from, if any."""
    if isinstance(value, type):
        for attr in vars(value).values():
            code = getattr(attr, "__code__", None)
            if code is not None and code.co_filename.startswith(_CELL):
                return code.co_filename
    return None


inspect.getfile = _getfile

# Like the interactive interpreter: modules in the working directory import.
if "" not in sys.path:
    sys.path.insert(0, "")

# Output written just before os._exit() must reach the client; the C
# replacement (py_replace.c) sees to it.  posix._exit is the same object.
os._exit = posix._exit = _exit_draining  # noqa: F821 (set by the C side)
del _exit_draining

# input() and getpass() ask the client when it can answer (py_input.c).
builtins.input = _input_asking  # noqa: F821 (set by the C side)
getpass.getpass = _getpass_asking  # noqa: F821 (set by the C side)
del _input_asking, _getpass_asking
