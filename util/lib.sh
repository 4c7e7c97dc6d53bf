# util/lib.sh: shared by the util/ scripts (sourced, not run).

# Debian packages PyREPL builds, runs and tests with.
PYREPL_DEBS="nginx nginx-dev libmsgpack-dev libpython3-dev libseccomp-dev
libjansson-dev python3-pytest python3-requests python3-websockets
python3-msgpack make gcc"

# Install whatever of PYREPL_DEBS is missing (needs root the first time).
pyrepl_install_deps() {
    local missing=()
    local p
    for p in $PYREPL_DEBS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}
