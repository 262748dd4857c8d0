#!/usr/bin/env bash
# Set up a fresh machine and run every test (the README's second command; .ci/run calls it).
# Creates .venv (system pip on Debian/Raspberry Pi OS refuses global installs), installs
# meterchain with its test and replica extras, installs the system tools the tests use
# (PostgreSQL server binaries, shellcheck, systemd-analyze) where missing, then
# runs pytest over the whole suite, slow fault and crash tests included.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  echo "installing system packages: ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# shellcheck source=deploy/dev-env.sh
. deploy/dev-env.sh
mc_dev_env test,replica

.venv/bin/ruff check ledger keyfiles drivers agent replica settlement meterchain tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
