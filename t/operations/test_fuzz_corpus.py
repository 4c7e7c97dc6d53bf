"""The committed seed corpora of the libFuzzer targets (util/fuzz/) replay
cleanly: each target is built by the normal compiler as a plain program
with util/fuzz/replay.c instead of libFuzzer (with ASan and UBSan when the
compiler can), and must get through every file of its corpus without a
crash, a broken rule or a sanitizer report.  Fuzzing itself is
util/fuzz/run; this only keeps the seeds, and the bugs they once found,
from coming back."""

import glob
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FUZZ = os.path.join(ROOT, "util", "fuzz")
CC = os.environ.get("CC", "cc")

# NAME: what util/fuzz/NAME_fuzz.c fuzzes, and its libraries (as in
# util/fuzz/run)
TARGETS = {
    "ws": (["src/codec/pyrepl_ws.c"], []),
    "proto": (["src/codec/pyrepl_proto.c"], ["-lmsgpackc"]),
    "mpjson": (["src/codec/pyrepl_mpjson.c"], ["-ljansson", "-lmsgpackc", "-lm"]),
}

SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
       "-fno-omit-frame-pointer"]

# as util/fuzz/run: an absurd msgpack container size fails like malloc
# would; reports go to stderr, whatever the sanitizer build's helpers.py set
ENV = dict(os.environ,
           ASAN_OPTIONS="allocator_may_return_null=1:"
                        "max_allocation_size_mb=64:abort_on_error=0",
           UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")

# (not ASan's warnings about the allocations it refused)
REPORT = re.compile(r"ERROR: \w*Sanitizer|runtime error:|SUMMARY: \w*Sanitizer")

SEED_FILES_MAX = 100
SEED_BYTES_MAX = 100 * 1024


@pytest.fixture(scope="module")
def san_flags(tmp_path_factory):
    """SAN if the compiler builds and runs a sanitized program, else []."""
    d = tmp_path_factory.mktemp("probe")
    (d / "p.c").write_text("int main(void) { return 0; }\n")
    p = subprocess.run([CC, *SAN, "-o", str(d / "p"), str(d / "p.c")],
                       capture_output=True)
    if p.returncode == 0 and subprocess.run([str(d / "p")],
                                            env=ENV).returncode == 0:
        return SAN
    return []


def corpus_files(name):
    d = os.path.join(FUZZ, "corpus", name)
    return [os.path.join(d, f) for f in sorted(os.listdir(d))
            if not f.startswith(".")]


def test_every_target_has_a_corpus_and_a_replay():
    names = {os.path.basename(p)[:-len("_fuzz.c")]
             for p in glob.glob(os.path.join(FUZZ, "*_fuzz.c"))}
    assert names == set(TARGETS)
    for name in names:
        assert len(corpus_files(name)) >= 10, name


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_corpus_stays_small(name):
    files = corpus_files(name)
    assert len(files) <= SEED_FILES_MAX
    assert sum(os.path.getsize(f) for f in files) <= SEED_BYTES_MAX


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_corpus_replays_clean(name, san_flags, tmp_path):
    srcs, libs = TARGETS[name]
    exe = str(tmp_path / name)
    p = subprocess.run([CC, "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra",
                        "-Werror", *san_flags, "-I", "src/codec", "-o", exe,
                        "util/fuzz/replay.c", f"util/fuzz/{name}_fuzz.c",
                        *srcs, *libs],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr

    p = subprocess.run([exe, os.path.join(FUZZ, "corpus", name)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    tail = "\n".join(p.stderr.splitlines()[-60:])
    assert p.returncode == 0, tail
    assert f"replay: {len(corpus_files(name))} inputs, no crash" in p.stdout
    bad = [l for l in p.stderr.splitlines() if REPORT.search(l)]
    assert not bad, tail
