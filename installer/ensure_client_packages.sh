#!/bin/sh
# Installs the clients the proxy's tests drive (tests/integration/test_proxy_clients.py): pgjdbc
# and a JDK to run it (Debian), node-postgres (npm, into tests/clients/node). Never fatal: a
# client that cannot be installed is skipped by its test, which prints why.
set -u
cd "$(dirname "$0")/.."

missing=""
[ -f /usr/share/java/postgresql.jar ] || missing="$missing libpostgresql-jdbc-java"
if ! command -v java >/dev/null 2>&1 || ! java --list-modules 2>/dev/null | grep -q '^jdk.compiler'; then
  missing="$missing openjdk-17-jdk-headless"
fi
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"

if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing test clients:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; } ||
      echo "warning: could not install$missing; their proxy client tests will be skipped" >&2
  else
    echo "warning: not root, cannot install$missing; their proxy client tests will be skipped" >&2
  fi
fi

node_dir=tests/clients/node
if command -v npm >/dev/null 2>&1 &&
   { [ ! -d "$node_dir/node_modules/pg" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; }; then
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >/dev/null ||
    echo "warning: npm ci in $node_dir failed; the node-postgres test will be skipped" >&2
fi
exit 0
