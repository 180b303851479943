#!/usr/bin/env bash
# Start oggmhub's local hub on a fresh machine: installs what it needs, then runs
# `oggmhub hub` with any options given (e.g. --port 8000 --data-dir ./data; see --help).
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "Node.js and npm are needed for JupyterHub's proxy: apt-get install -y nodejs npm" >&2; exit 2; }
python3 -m pip install --quiet --disable-pip-version-check -e .
[ -x node_modules/.bin/configurable-http-proxy ] || npm ci --no-audit --no-fund --loglevel=error
exec python3 -m oggmhub hub "$@"
