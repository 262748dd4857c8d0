#!/usr/bin/env bash
# The README's first command: install meterchain into ./.venv and run the demo
# (simulated meters, the agent and a local replica on this machine). Extra arguments
# go to `meterchain demo`, e.g. `bash deploy/demo.sh --ledger /tmp/demo-ledger`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/dev-env.sh
. deploy/dev-env.sh
mc_dev_env replica
exec .venv/bin/meterchain demo "$@"
