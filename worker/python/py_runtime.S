/*
 * py_runtime.S: embeds pyrepl_runtime.py, the Python half of the session
 * process, as the NUL-terminated read-only C string
 * "const char pyrepl_runtime_source[]" (declared in py_session.h), so the
 * binary needs no file next to it at run time.
 */

    .section .rodata
    .global  pyrepl_runtime_source
    .type    pyrepl_runtime_source, @object
    .balign  16

pyrepl_runtime_source:
    .incbin  "pyrepl_runtime.py"
    .byte    0

    .size    pyrepl_runtime_source, . - pyrepl_runtime_source

    .section .note.GNU-stack, "", @progbits
