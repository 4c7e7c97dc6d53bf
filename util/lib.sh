# util/lib.sh: shared by the util/ scripts (sourced, not run).
# shellcheck shell=bash

# Debian packages PyREPL builds, runs and tests with.
PYREPL_DEBS="nginx nginx-dev libmsgpack-dev libpython3-dev libseccomp-dev
libjansson-dev python3-pytest python3-requests python3-websockets
python3-msgpack python3-dill python3-yaml make gcc"

# Install whatever of PYREPL_DEBS (and of the packages named as arguments)
# is missing (needs root the first time).
pyrepl_install_deps() {
    local missing=()
    local p
    for p in $PYREPL_DEBS "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# The sanitizer build (util/build --sanitize) and the fuzz targets use
# clang: its ASan runtime carries UBSan too, so both write their reports to
# log_path (gcc's separate libubsan ignores log_path next to libasan).
# shellcheck disable=SC2034
PYREPL_SAN_DEBS=(clang libclang-rt-14-dev)
PYREPL_SAN_CC=clang
PYREPL_SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"
PYREPL_SAN_FLAGS+=" -fno-sanitize-recover=undefined"

# The directory of clang's shared ASan runtime (libclang_rt.asan-*.so),
# which the module and the worker binaries of the sanitizer build link
# (-shared-libasan) so that one runtime serves nginx and all of them.
pyrepl_san_rtdir() {
    dirname "$($PYREPL_SAN_CC -print-file-name=libclang_rt.asan-x86_64.so)"
}

# pyrepl_san_preload ROOT OUT: write OUT/preload, what Debian's nginx (not
# instrumented) needs in LD_PRELOAD to load the module of the sanitizer
# build: the ASan runtime, then util/san_unpreload.c, which takes
# LD_PRELOAD out of nginx's environment again, so that the supervisor, the
# sessions and whatever the user's code starts do not inherit it (the
# worker binaries link the runtime themselves).
pyrepl_san_preload() {
    local root=$1 out=$2 rt shim
    rt="$(pyrepl_san_rtdir)/libclang_rt.asan-x86_64.so"
    [ -f "$rt" ] || {
        echo "util: $rt is missing (apt-get install libclang-rt-14-dev)" >&2
        return 1
    }
    shim="$out/lib/pyrepl-unpreload.so"
    mkdir -p "$out/lib"
    if [ ! -f "$shim" ] || [ "$root/util/san_unpreload.c" -nt "$shim" ]; then
        $PYREPL_SAN_CC -shared -fPIC -O2 -Wall -Werror -o "$shim" \
            "$root/util/san_unpreload.c"
    fi
    echo "$rt $shim" > "$out/preload"
}
