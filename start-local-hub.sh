#!/usr/bin/env bash
# Start oggmhub's local hub on a fresh Debian/Ubuntu machine, with the distribution's own
# python3: checks the options (--help answers before anything is installed), installs the
# system packages the hub needs (as root; otherwise prints the apt-get line), installs the
# hub into its own virtualenv (.venv in this clone; created once, reinstalled only when
# setup.cfg changes) and JupyterHub's proxy (npm ci), then runs `oggmhub hub` with the
# options given (e.g. --port 8000 --data-dir ./data; see --help).
set -euo pipefail
cd "$(dirname "$0")"
me=start-local-hub.sh
venv=.venv
python=${OGGMHUB_PYTHON:-python3}   # the distribution's python3 (PEP 668 keeps pip out of it: hence the venv)
export UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}   # uv trusts the machine's CA store, as pip and apt do

command -v "$python" >/dev/null || { echo "$me: $python is missing; install it with: apt-get install -y python3 python3-venv" >&2; exit 2; }
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "$me: the hub needs Python 3.10 or newer; $python is $("$python" -V 2>&1)" >&2; exit 2; }

# options first: --help, unknown options, a port in use, a data dir we cannot write (stdlib only, no install)
for arg in "$@"; do
    case "$arg" in -h|--help) exec "$python" -m oggmhub.backends.local.hub_options "$@" ;; esac
done
"$python" -m oggmhub.backends.local.hub_options "$@" || exit $?

# system packages: venv (python3-venv), FUSE for dataset mounts, Node.js for the proxy
missing=()
[ -x "$venv/bin/python" ] || "$python" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# fuse3 brings fusermount3 and libfuse3 (mounts read 1 MiB per kernel request; libfuse2: 128 KiB)
{ command -v fusermount3 >/dev/null && compgen -G '/usr/lib/*/libfuse3.so.3' >/dev/null; } || missing+=(fuse3)
command -v npm >/dev/null || missing+=(nodejs npm)
# home quotas (the catalog's storage section) are ext4 images: mkfs.ext4, e2fsck, resize2fs
[ "$(id -u)" != 0 ] || PATH="$PATH:/usr/sbin:/sbin" command -v resize2fs >/dev/null || missing+=(e2fsprogs)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "$me: installing ${missing[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "$me: this machine lacks ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
        exit 2
    fi
fi

# the hub's own virtualenv, (re)installed only when what it installs changed
stamp="$venv/.oggmhub-installed"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
if [ ! -x "$venv/bin/python" ]; then
    echo "$me: creating the hub's virtualenv in $PWD/$venv ($("$python" -V 2>&1))"
    "$python" -m venv "$venv" || { rm -rf "$venv"; echo "$me: '$python -m venv $venv' failed (is python3-venv installed?)" >&2; exit 2; }
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "$me: installing oggmhub and JupyterHub into $venv (the first time takes a minute or two)"
    rm -f "$stamp"
    log="$venv/install.log"
    if ! { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.5" \
           && "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" -e ".[mount]"; } >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        echo "$me: installing into $venv failed (full log: $PWD/$log)" >&2
        exit 2
    fi
    echo "$want" >"$stamp"
fi
[ -x node_modules/.bin/configurable-http-proxy ] || {
    echo "$me: installing JupyterHub's proxy (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error; }
exec "$venv/bin/python" -m oggmhub hub "$@"
