#!/usr/bin/env bash
# The README's first command: install meterchain into ./.venv and run the demo
# (simulated meters, the agent and a local replica on this machine). Extra arguments
# go to `meterchain demo`, e.g. `bash deploy/demo.sh --ledger /tmp/demo-ledger`.
# Needs Python 3.11+ and nothing else (no system package beyond python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/dev-env.sh
. deploy/dev-env.sh
mc_dev_env replica || exit 1
echo "running the demo (Ctrl-C stops it early)"
rc=0
.venv/bin/meterchain demo "$@" || rc=$?
echo
echo "meterchain is installed in $PWD/.venv (not on your PATH). Next:"
echo "  $PWD/.venv/bin/meterchain --help"
echo "  . $PWD/.venv/bin/activate    # then just: meterchain drivers, meterchain sim, ..."
exit "$rc"
