"""pyrepl_runtime: the Python half of a PyREPL session process.

The session process (python_session.c) embeds this file as a C string,
executes it once at start-up into a private module and calls run_cell()
for every run.  It owns REPL semantics (the value of a final expression),
the linecache entries that let tracebacks and inspect show cell source, and
traceback formatting.  It does no I/O: output goes to fds 1 and 2, which
the C side forwards, and the outcome is returned as plain strings.

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
import getpass
import linecache
import os
import posix
import sys
import traceback

_FILE = "<pyrepl_runtime>"


def _register(source, filename):
    """Make the cell's lines visible to linecache, traceback and inspect."""
    lines = source.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    # mtime None: linecache.checkcache() never evicts the entry
    linecache.cache[filename] = (len(source), None, lines, filename)


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

    return (status, None, type(exc).__name__, evalue, list(te.format()))


def run_cell(source, filename, ns):
    """Run source in the namespace ns the way an interactive prompt would.

    The statements run in order; if the last one is an expression its value
    is the cell's result.  Returns a 5-tuple (status, result, ename, evalue,
    traceback): status is "ok", "error" or "interrupted" (KeyboardInterrupt
    escaped); result is repr() of a final value that is not None, else
    None; the last three are None unless an exception escaped.
    """
    _register(source, filename)

    try:
        tree = ast.parse(source, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, filename, "exec", dont_inherit=True)
        if last is not None:
            last = compile(last, filename, "eval", dont_inherit=True)
    except BaseException as exc:
        # SyntaxError and friends: the frames are all ours, the message
        # carries the user's line and caret.
        return _failure(exc, None)

    try:
        exec(body, ns)
        if last is not None:
            value = eval(last, ns)
            if value is not None:
                return ("ok", repr(value), None, None, None)
    except BaseException as exc:
        return _failure(exc, _user_tb(exc.__traceback__))

    return ("ok", None, None, None, None)


# Like the interactive interpreter: modules in the working directory import.
if "" not in sys.path:
    sys.path.insert(0, "")

# Output written just before os._exit() must reach the client; the C
# replacement (py_exec.c) sees to it.  posix._exit is the same object.
os._exit = posix._exit = _exit_draining  # noqa: F821 (set by the C side)
del _exit_draining

# input() and getpass() ask the client when it can answer (py_exec.c).
builtins.input = _input_asking  # noqa: F821 (set by the C side)
getpass.getpass = _getpass_asking  # noqa: F821 (set by the C side)
del _input_asking, _getpass_asking
