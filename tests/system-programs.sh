#!/usr/bin/env bash
# The programs the tests run besides Python packages: PostgreSQL's server binaries (the SQL tests
# start a throwaway server), Graphviz's dot (the causal graphs) and Chromium (the report is opened
# in a real browser). Installs the missing ones with apt-get where this machine has it and may use
# it (root, or sudo without a password); anywhere else names them in one line and exits 1.
set -euo pipefail
missing=()
{ ls /usr/lib/postgresql/*/bin/initdb || command -v initdb; } >/dev/null 2>&1 || missing+=(postgresql)
command -v dot >/dev/null || missing+=(graphviz)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
  if "${as_root[@]}" true 2>/dev/null; then
    echo "installing the tests' system programs: ${missing[*]}" >&2
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
  fi
fi
echo "error: the tests need these system packages, not installed here: ${missing[*]} (Debian and Ubuntu: apt-get install ${missing[*]})" >&2
exit 1
