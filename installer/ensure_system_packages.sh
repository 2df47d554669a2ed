#!/bin/sh
# Installs the Debian packages the embedded test/demo cluster needs: the PostgreSQL server and
# its PL/Python, and numpy for the server's Python (the engine's vectorized path; without it the
# engine runs in pure Python). With --venv, also Python's venv module. Idempotent and quiet when
# all is there.
set -eu

bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
major=${bindir:+$(basename "$(dirname "$bindir")")}
major=${major:-15}

missing=""
[ -x "/usr/lib/postgresql/$major/bin/postgres" ] || missing="$missing postgresql-$major"
[ -f "/usr/lib/postgresql/$major/lib/plpython3.so" ] || missing="$missing postgresql-plpython3-$major"
/usr/bin/python3 -c 'import numpy' 2>/dev/null || missing="$missing python3-numpy"
if [ "${1:-}" = "--venv" ]; then missing="$missing python3-venv"; fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages:$missing" >&2
  echo "install them with: sudo apt-get install$missing" >&2
  exit 1
fi
echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
